"""GPU-memory-aware model scheduling: load on demand, evict least-recently-used, pin for live sessions.

Modelled on ComfyUI's ``comfy/model_management.py`` (``load_models_gpu`` / ``free_memory``), small and explicit:

* Every model is described by a ``ModelSpec`` (its size estimate and how to load / move it) and registered once.
* ``get(model_id)`` returns the model on its device, loading it first if needed. Loading needs
  ``size × 1.1 + inference_bytes + reserve`` free in the device's budget. When that is short, unpinned models are
  evicted from the device, least recently used first: offloaded to CPU RAM when the spec can move models
  (``to_device``) and the RAM budget allows, otherwise unloaded. Offloaded copies are a RAM cache: when RAM is short
  the least recently used ones are dropped. A model that cannot fit even after evicting every unpinned model raises
  ``ModelDoesNotFit``.
* Live sessions ``pin`` the models they use; pinned models are never evicted.
* The executor uses ``is_oom`` / ``evict_for_retry`` / ``oom_message`` to retry a node once after an out-of-memory
  error with the device emptied.

Devices: ``"cuda"`` when torch sees a GPU (budget from ``torch.cuda.mem_get_info``); on a CPU-only machine a
``vram_budget_bytes`` gives a *simulated* GPU ``"cuda-sim"`` whose budget is scheduled exactly like a real one while
the models stay on the CPU (so the whole policy is testable without a GPU); with neither, the device is ``"cpu"`` and
the RAM budget is what is scheduled.

Accounting (a budget, like ComfyUI's ``--reserve-vram``) starts from the size a spec declares; once a model is
loaded, what it measurably takes replaces it: on a CUDA device the allocation its load added
(``torch.cuda.memory_allocated`` before and after), elsewhere the bytes of its tensors. On a real GPU the free memory
torch reports is also respected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.models.devices import (allocated_bytes, cuda_free, gpu_driver_present, is_out_of_memory,
                                   measured_bytes, torch_or_none)
from engine.models.spec import LoadedInfo, ModelDoesNotFit, ModelPinned, ModelSpec

logger = logging.getLogger(__name__)
# The node class asking for models in this task/thread (set by the executor around each node): models remember
# their users, and a cluster worker advertises the classes whose models it has loaded (placement).
model_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("model_user", default=None)

MiB = 2**20
GiB = 2**30
DEFAULT_RESERVE_BYTES = 400 * MiB  # ComfyUI's EXTRA_RESERVED_VRAM on Linux
WEIGHT_OVERHEAD = 1.1  # ComfyUI's free_memory(required × 1.1 + extra)
DEFAULT_RAM_FRACTION = 0.8
CPU = "cpu"
SIMULATED_GPU = "cuda-sim"


@dataclass
class _Entry:
    spec: ModelSpec
    home: str  # the device the model runs on
    model: Any = None
    where: str | None = None  # whose budget holds the weights now (home, or CPU when offloaded); None = not loaded
    loading: bool = False  # memory reserved, load or move in progress
    use_seq: int = 0  # LRU order
    last_used: float = 0.0
    pinned_by: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)  # node classes that asked for it (placement in a cluster)
    measured: int | None = None  # bytes measured after the last load (CUDA: allocation added; else tensor bytes)

    @property
    def weight_bytes(self) -> int:
        """What the budget counts: the measured size once loaded, the declared size (+ overhead) before."""
        return self.measured if self.measured is not None else math.ceil(self.spec.size_bytes * WEIGHT_OVERHEAD)

    @property
    def offloaded(self) -> bool:
        return self.where == CPU and self.home != CPU

    @property
    def resident(self) -> bool:
        return self.model is not None and self.where == self.home and not self.loading


@dataclass
class _Step:
    """One action of a load plan, executed outside the state lock."""

    action: str  # "offload" | "drop" | "load" | "move"
    entry: _Entry
    model: Any = None
    origin: str = ""  # where the model was when planned (for the log)


def _gib(n: int | float) -> str:
    return f"{n / GiB:.2f} GiB"


class ModelManager:
    """Loads registered models on demand within the device's memory budget. Thread-safe."""

    def __init__(self, vram_budget_bytes: int | None = None, ram_budget_bytes: int | None = None,
                 reserve_bytes: int = DEFAULT_RESERVE_BYTES, device: str | None = None) -> None:
        import psutil

        self.reserve_bytes = reserve_bytes
        self.device = self._pick_device(device, vram_budget_bytes)
        self._cuda = self.device.startswith("cuda") and self.device != SIMULATED_GPU
        if ram_budget_bytes is None:
            ram_budget_bytes = int(psutil.virtual_memory().available * DEFAULT_RAM_FRACTION)
        self._budgets: dict[str, int] = {CPU: ram_budget_bytes}
        if self.device == SIMULATED_GPU:
            if vram_budget_bytes is None:
                raise ValueError("device 'cuda-sim' needs vram_budget_bytes (the simulated GPU's memory)")
            self._budgets[self.device] = vram_budget_bytes
        elif self._cuda:
            torch = torch_or_none()
            total = torch.cuda.mem_get_info(torch.device(self.device))[1]
            self._budgets[self.device] = total if vram_budget_bytes is None else min(vram_budget_bytes, total)
        elif vram_budget_bytes is not None:
            logger.warning("device is cpu: the VRAM budget %s is ignored, the RAM budget %s is scheduled",
                           _gib(vram_budget_bytes), _gib(ram_budget_bytes))
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, concurrent.futures.Future[Any]] = {}
        self._state_lock = threading.Lock()  # guards the bookkeeping; held only briefly
        # Serialises loads, moves and evictions (one at a time per manager). Re-entrant so that a spec's load
        # function may itself get() another model (the model being loaded is never chosen for eviction).
        self._load_lock = threading.RLock()
        self._seq = 0
        logger.info("model manager: device %s, budget %s, RAM budget %s, reserve %s", self.device,
                    _gib(self._budgets.get(self.device, ram_budget_bytes)), _gib(ram_budget_bytes),
                    _gib(reserve_bytes))

    @staticmethod
    def _pick_device(device: str | None, vram_budget_bytes: int | None) -> str:
        if device is not None:
            if device.startswith("cuda") and device != SIMULATED_GPU:
                torch = torch_or_none()
                if torch is None or not torch.cuda.is_available():
                    raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU; "
                                     f"use 'cpu', or '{SIMULATED_GPU}' with a VRAM budget")
            elif device not in (CPU, SIMULATED_GPU):
                raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or '{SIMULATED_GPU}'")
            return device
        if gpu_driver_present():  # importing torch costs seconds: only when a GPU could be there
            torch = torch_or_none()
            if torch is not None and torch.cuda.is_available():
                return "cuda"
        return SIMULATED_GPU if vram_budget_bytes is not None else CPU

    # ---------------------------------------------------------------- registration and queries

    def register(self, spec: ModelSpec) -> None:
        """Register (or replace, while it is not loaded) a model spec."""
        if spec.size_bytes < 0 or spec.inference_bytes < 0:
            raise ValueError(f"model {spec.id!r}: size_bytes and inference_bytes must be >= 0")
        home = self._home_of(spec)
        with self._state_lock:
            old = self._entries.get(spec.id)
            if old is not None:
                if old.spec is spec:
                    return
                if old.where is not None or spec.id in self._inflight:
                    raise ValueError(f"model {spec.id!r} is already registered and loaded; unload it before "
                                     f"registering a different spec under the same id")
                pins = old.pinned_by
            else:
                pins = set()
            self._entries[spec.id] = _Entry(spec=spec, home=home, pinned_by=pins)

    def __contains__(self, model_id: object) -> bool:
        with self._state_lock:
            return model_id in self._entries

    def _home_of(self, spec: ModelSpec) -> str:
        if spec.device is None:
            return self.device
        if spec.device == CPU:
            return CPU
        if self.device == CPU:
            logger.warning("model %r asks for device %r but this machine has no GPU; it runs on cpu",
                           spec.id, spec.device)
            return CPU
        return self.device

    def loaded(self) -> list[LoadedInfo]:
        """Models in memory (on their device or offloaded to RAM), most recently used first."""
        with self._state_lock:
            entries = [e for e in self._entries.values() if e.model is not None and e.where is not None]
            entries.sort(key=lambda e: e.use_seq, reverse=True)
            return [self._info(e) for e in entries]

    def _info(self, e: _Entry) -> LoadedInfo:
        return LoadedInfo(id=e.spec.id, kind=e.spec.kind, device=e.where or CPU,
                          size_bytes=e.measured or e.spec.size_bytes,
                          pinned_by=tuple(sorted(e.pinned_by)), last_used=e.last_used)

    def budget(self, device: str | None = None) -> int:
        """The budget in bytes of ``device`` (default: the manager's device)."""
        return self._budgets[device or self.device]

    def used(self, device: str | None = None) -> int:
        """Bytes the manager accounts as used on ``device`` (default: the manager's device)."""
        with self._state_lock:
            return self._used(device or self.device)

    def _used(self, device: str) -> int:
        return sum(e.weight_bytes for e in self._entries.values() if e.where == device)

    # ---------------------------------------------------------------- getting models

    def get(self, model_id: str) -> Any:
        """Return the model on its device, loading it (and evicting others) if needed; marks it most recently used."""
        while True:
            with self._state_lock:
                entry = self._entry(model_id)
                user = model_user.get()
                if user is not None:
                    entry.users.add(user)
                if entry.resident:
                    self._touch(entry)
                    return entry.model
                future = self._inflight.get(model_id)
                owner = future is None
                if owner:
                    future = concurrent.futures.Future()
                    self._inflight[model_id] = future
            if not owner:
                future.result()  # another caller is loading this id: share its load (and its error)
                continue  # re-check: it may have been evicted again meanwhile
            try:
                model = self._load_serialised(model_id)
            except BaseException as exc:
                future.set_exception(exc)
                raise
            else:
                future.set_result(None)
                return model
            finally:
                with self._state_lock:
                    self._inflight.pop(model_id, None)

    async def aget(self, model_id: str) -> Any:
        """``get`` for the event loop: loads in a worker thread; concurrent callers of one id share one load."""
        while True:
            with self._state_lock:
                entry = self._entry(model_id)
                if entry.resident:
                    self._touch(entry)
                    return entry.model
                future = self._inflight.get(model_id)
            if future is None:
                return await asyncio.to_thread(self.get, model_id)
            await asyncio.wrap_future(future)  # another caller is loading it: share that load (and its error)

    def _entry(self, model_id: str) -> _Entry:
        entry = self._entries.get(model_id)
        if entry is None:
            raise KeyError(f"model {model_id!r} is not registered; register a ModelSpec for it first")
        return entry

    def _touch(self, entry: _Entry) -> None:
        self._seq += 1
        entry.use_seq = self._seq
        entry.last_used = time.time()

    def _load_serialised(self, model_id: str) -> Any:
        with self._load_lock:
            with self._state_lock:
                entry = self._entries[model_id]
                if entry.resident:  # loaded by an unload/reload race before we got the load lock
                    self._touch(entry)
                    return entry.model
                steps = self._plan_load(entry)
            return self._execute(entry, steps)

    # ---------------------------------------------------------------- planning (under the state lock)

    def _plan_load(self, target: _Entry) -> list[_Step]:
        """Decide evictions so ``target`` fits its home device; update the bookkeeping; return the steps to run."""
        device = target.home
        required = target.weight_bytes + target.spec.inference_bytes + self.reserve_bytes
        budget = self._budgets[device]
        others = [e for e in self._entries.values() if e is not target and e.where == device]
        victims = self._eviction_order(device, [e for e in others if not e.pinned_by and not e.loading])
        kept = [e for e in others if e.pinned_by or e.loading]
        reachable = budget - sum(e.weight_bytes for e in kept)
        if required > reachable:
            raise ModelDoesNotFit(self._does_not_fit_message(target, device, required, kept))
        free = self._free(device)
        if free + sum(e.weight_bytes for e in victims) < required:  # a real GPU with memory used by others
            raise ModelDoesNotFit(self._does_not_fit_message(target, device, required, kept, real_free=free))
        # From here on the plan cannot fail: reserve the target first, so its RAM copy (if any) is not
        # counted in, or chosen for, the RAM room made for offloads below.
        final: list[_Step] = []
        if target.offloaded and target.spec.to_device is not None and target.model is not None:
            final.append(_Step("move", target, target.model, origin=CPU))
        else:
            if target.model is not None:  # an offloaded copy that cannot be moved: drop it and load afresh
                final.append(_Step("drop", target, target.model, origin=target.where or CPU))
                target.model = None
            final.append(_Step("load", target))
        target.where = device
        target.loading = True
        self._touch(target)
        steps: list[_Step] = []
        for victim in victims:
            if free >= required:
                break
            free += victim.weight_bytes
            steps.extend(self._plan_evict(victim))
        return steps + final

    def _eviction_order(self, device: str, candidates: list[_Entry]) -> list[_Entry]:
        """Least recently used first; in RAM, offloaded copies (a cache) go before models that run on the CPU."""
        if device == CPU:
            return sorted(candidates, key=lambda e: (not e.offloaded, e.use_seq))
        return sorted(candidates, key=lambda e: e.use_seq)

    def _free(self, device: str) -> int:
        free = self._budgets[device] - self._used(device)
        if self._cuda and device == self.device:
            free = min(free, cuda_free(self.device)[0])
        return free

    def _plan_evict(self, victim: _Entry) -> list[_Step]:
        """Evict ``victim`` from its current device: offload it to RAM when possible, else drop it."""
        model = victim.model
        if victim.where != CPU and victim.spec.to_device is not None and model is not None:
            room_steps = self._plan_ram_room(victim)
            if room_steps is not None:
                origin, victim.where = victim.where, CPU
                return [*room_steps, _Step("offload", victim, model, origin=origin or CPU)]
        origin = victim.where or CPU
        victim.where = None
        victim.model = None
        return [_Step("drop", victim, model, origin=origin)]

    def _plan_ram_room(self, incoming: _Entry) -> list[_Step] | None:
        """Make RAM room for offloading ``incoming`` by dropping older offloaded copies; None = it should go itself."""
        free = self._free(CPU)
        need = incoming.weight_bytes
        if free >= need:
            return []
        older = sorted((e for e in self._entries.values()
                        if e.offloaded and not e.pinned_by and not e.loading and e.use_seq < incoming.use_seq),
                       key=lambda e: e.use_seq)
        dropping: list[_Entry] = []
        for e in older:
            if free >= need:
                break
            dropping.append(e)
            free += e.weight_bytes
        if free < need:
            return None
        steps = []
        for e in dropping:
            steps.append(_Step("drop", e, e.model, origin=CPU))
            e.where = None
            e.model = None
        return steps

    def _does_not_fit_message(self, target: _Entry, device: str, required: int, kept: list[_Entry],
                              real_free: int | None = None) -> str:
        spec = target.spec
        where = "RAM" if device == CPU else "VRAM"
        msg = (f"model {spec.id!r} ({spec.kind}, {_gib(spec.size_bytes)} weights) needs {_gib(required)} "
               f"(weights × {WEIGHT_OVERHEAD} + {_gib(spec.inference_bytes)} inference memory + "
               f"{_gib(self.reserve_bytes)} reserve) but the {where} budget of {device} is "
               f"{_gib(self._budgets[device])}")
        if kept:
            pinned = ", ".join(f"{e.spec.id} ({_gib(e.weight_bytes)}, "
                               + (f"pinned by {', '.join(sorted(e.pinned_by))})" if e.pinned_by else "being loaded)")
                               for e in kept)
            msg += f" and {_gib(sum(e.weight_bytes for e in kept))} of it is pinned: {pinned}"
        else:
            msg += "; nothing is pinned"
        if real_free is not None:
            msg += f"; the GPU reports only {_gib(real_free)} free (other processes use it)"
        return msg + ". Close a live session, raise the budget (--vram-budget), or use a smaller model."

    # ---------------------------------------------------------------- executing (outside the state lock)

    def _execute(self, target: _Entry, steps: list[_Step]) -> Any:
        for step in steps:
            if step.action == "offload":
                self._run_offload(step)
            elif step.action == "drop":
                logger.info("unloaded model %s (%s) from %s", step.entry.spec.id, _gib(step.entry.spec.size_bytes),
                            step.origin)
                step.model = None
        spec = target.spec
        action = steps[-1].action
        started = time.perf_counter()
        before = allocated_bytes(target.home) if action != "move" else None
        measured = target.measured
        try:
            if action == "move":
                model = spec.to_device(steps[-1].model, self._torch_device(target.home))  # type: ignore[misc]
            else:
                model = spec.load(self._torch_device(target.home))
                measured = measured_bytes(model, target.home, before)
        except BaseException:
            with self._state_lock:
                target.where = None
                target.model = None
                target.loading = False
            logger.exception("loading model %s (%s) on %s failed", spec.id, spec.kind, target.home)
            raise
        finally:
            steps.clear()
        with self._state_lock:
            target.model = model
            target.measured = measured
            target.loading = False
        logger.info("%s model %s (%s, %s) %s %s in %.2f s", "moved" if action == "move" else "loaded", spec.id,
                    spec.kind, _gib(spec.size_bytes), "to" if action == "move" else "on", target.home,
                    time.perf_counter() - started)
        return model

    def _run_offload(self, step: _Step) -> None:
        entry = step.entry
        try:
            moved = entry.spec.to_device(step.model, CPU)  # type: ignore[misc]
        except Exception:
            logger.warning("offloading model %s to RAM failed; unloading it instead", entry.spec.id, exc_info=True)
            with self._state_lock:
                entry.where = None
                entry.model = None
        else:
            with self._state_lock:
                entry.model = moved
            logger.info("offloaded model %s (%s) from %s to RAM", entry.spec.id, _gib(entry.spec.size_bytes),
                        step.origin)
        step.model = None

    def _torch_device(self, device: str) -> str:
        return CPU if device == SIMULATED_GPU else device

    # ---------------------------------------------------------------- unloading

    def unload(self, model_id: str) -> bool:
        """Unload a model completely (from its device or RAM). Returns False when it was not loaded."""
        with self._load_lock, self._state_lock:
            entry = self._entry(model_id)
            if entry.pinned_by:
                raise ModelPinned(f"model {model_id!r} is pinned by {', '.join(sorted(entry.pinned_by))}; "
                                  f"end those sessions (or unpin) before unloading it")
            was_loaded = entry.where is not None
            model, entry.model, entry.where = entry.model, None, None
        del model
        if was_loaded:
            logger.info("unloaded model %s", model_id)
        return was_loaded

    def evict_for_retry(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """After an out-of-memory error: unload every unpinned model not in ``keep``, collect garbage, empty the
        CUDA cache. Returns the ids unloaded."""
        with self._load_lock:
            with self._state_lock:
                victims = [e for e in self._entries.values()
                           if e.where is not None and not e.pinned_by and e.spec.id not in keep]
                refs = []
                for e in victims:
                    refs.append(_weak(e.model))
                    e.model = None
                    e.where = None
            gc.collect()
            if self._cuda:
                torch = torch_or_none()
                torch.cuda.empty_cache()
        for e, ref in zip(victims, refs):
            if ref is not None and ref() is not None:
                logger.warning("potential memory leak: model %s is still referenced after it was unloaded",
                               e.spec.id)
        ids = [e.spec.id for e in victims]
        if ids:
            logger.info("evicted for retry: %s", ", ".join(ids))
        return ids

    def warm_users(self) -> set[str]:
        """The node classes whose models are in memory now: a prompt made of them runs here without loading."""
        with self._state_lock:
            return {u for e in self._entries.values() if e.model is not None and e.where is not None
                    for u in e.users}

    # ---------------------------------------------------------------- pinning

    def pin(self, model_id: str, owner: str) -> None:
        """Keep a model from being evicted while ``owner`` (a live session) uses it. Pinning does not load it."""
        with self._state_lock:
            self._entry(model_id).pinned_by.add(owner)

    def unpin(self, model_id: str, owner: str) -> None:
        with self._state_lock:
            self._entry(model_id).pinned_by.discard(owner)

    def unpin_all(self, owner: str) -> list[str]:
        """Drop every pin of ``owner``; returns the ids it had pinned."""
        with self._state_lock:
            ids = [e.spec.id for e in self._entries.values() if owner in e.pinned_by]
            for model_id in ids:
                self._entries[model_id].pinned_by.discard(owner)
            return ids

    @contextlib.contextmanager
    def pinned(self, owner: str, *model_ids: str) -> Iterator[None]:
        """Pin ``model_ids`` for ``owner`` inside the block (pins the owner already held are kept afterwards)."""
        added: list[str] = []
        try:
            with self._state_lock:
                entries = [self._entry(model_id) for model_id in model_ids]
                for e in entries:
                    if owner not in e.pinned_by:
                        e.pinned_by.add(owner)
                        added.append(e.spec.id)
            yield
        finally:
            with self._state_lock:
                for model_id in added:
                    self._entries[model_id].pinned_by.discard(owner)

    # ---------------------------------------------------------------- out of memory

    is_oom = staticmethod(is_out_of_memory)

    def oom_message(self, exc: BaseException, model_ids: list[str] | tuple[str, ...] | set[str]) -> str:
        """A message for the user after an out-of-memory error while ``model_ids`` were in use."""
        with self._state_lock:
            models = []
            for model_id in model_ids:
                e = self._entries.get(model_id)
                models.append(f"{model_id} ({_gib(e.spec.size_bytes)})" if e else model_id)
            pinned = [f"{e.spec.id} (by {', '.join(sorted(e.pinned_by))})"
                      for e in self._entries.values() if e.pinned_by and e.where is not None]
            used = self._used(self.device)
        where = "RAM" if self.device == CPU else "VRAM"
        msg = (f"out of memory on {self.device} while running {', '.join(models) or 'no managed model'}: "
               f"{type(exc).__name__}: {exc}. The {where} budget is {_gib(self._budgets[self.device])}, "
               f"{_gib(used)} of it held by loaded models")
        if pinned:
            msg += f"; pinned by live sessions: {', '.join(pinned)}"
        return msg + (". What to do: lower --vram-budget so fewer models share the device, close live sessions "
                      "that keep models pinned, or use a smaller model (or a lower resolution / shorter input).")

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        """Numbers for the server's /system_stats: devices (as ComfyUI reports them), loaded models, budgets."""
        import psutil

        ram = psutil.virtual_memory()
        with self._state_lock:
            used = {device: self._used(device) for device in self._budgets}
            loaded = sorted((e for e in self._entries.values() if e.model is not None and e.where is not None),
                            key=lambda e: e.use_seq, reverse=True)
            loaded_info = [asdict(self._info(e)) for e in loaded]
        if self._cuda:
            torch = torch_or_none()
            free, total, reserved, cached_free = cuda_free(self.device)
            index = torch.device(self.device).index or 0
            device = {"name": f"{self.device} {torch.cuda.get_device_name(index)}", "type": "cuda", "index": index,
                      "vram_total": total, "vram_free": free, "torch_vram_total": reserved,
                      "torch_vram_free": cached_free}
        elif self.device == SIMULATED_GPU:
            budget = self._budgets[SIMULATED_GPU]
            device = {"name": f"{SIMULATED_GPU} (simulated {_gib(budget)} GPU on the CPU)", "type": SIMULATED_GPU,
                      "index": 0, "vram_total": budget, "vram_free": budget - used[SIMULATED_GPU],
                      "torch_vram_total": used[SIMULATED_GPU], "torch_vram_free": 0}
        else:
            device = {"name": CPU, "type": CPU, "index": None, "vram_total": ram.total, "vram_free": ram.available,
                      "torch_vram_total": ram.total, "torch_vram_free": ram.available}
        budget_info: dict[str, Any] = {
            "device": self.device,
            "simulated": self.device == SIMULATED_GPU,
            "reserve": self.reserve_bytes,
            "ram_budget": self._budgets[CPU],
            "ram_used": used[CPU],
            "ram_total": ram.total,
            "ram_free": ram.available,
        }
        if self.device != CPU:
            budget_info["vram_budget"] = self._budgets[self.device]
            budget_info["vram_used"] = used[self.device]
        return {"devices": [device], "loaded": loaded_info, "budget": budget_info}


def _weak(obj: Any) -> Any:
    import weakref

    try:
        return weakref.ref(obj)
    except TypeError:
        return None
