"""Model manager: LRU eviction within a (simulated) VRAM budget, RAM offload, pinning, OOM retry, shared loads."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.models.manager import (
    GiB,
    MiB,
    ModelDoesNotFit,
    ModelManager,
    ModelPinned,
    ModelSpec,
)
from engine.models.spec import estimate_module_bytes

GB = 10**9


class FakeModel:
    """A stand-in model object that records where it is; calling it may raise a CUDA-style OOM once."""

    def __init__(self, model_id: str, device: str, fail_first_call: bool = False) -> None:
        self.id = model_id
        self.device = device
        self.calls = 0
        self.fail_first_call = fail_first_call

    def __call__(self) -> str:
        self.calls += 1
        if self.fail_first_call and self.calls == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 10.00 GiB total capacity)")
        return f"{self.id} ran on {self.device}"


class Recorder:
    """Builds specs whose load / to_device calls are logged as (event, id, device)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.loads: dict[str, int] = {}

    def spec(self, model_id: str, size: int, movable: bool = True, inference: int = 0, device: str | None = None,
             kind: str = "test", load_delay: float = 0.0, fail_first_call: bool = False) -> ModelSpec:
        def load(dev: str) -> FakeModel:
            if load_delay:
                time.sleep(load_delay)
            self.loads[model_id] = self.loads.get(model_id, 0) + 1
            self.events.append(("load", model_id, dev))
            return FakeModel(model_id, dev, fail_first_call)

        def to_device(model: FakeModel, dev: str) -> FakeModel:
            self.events.append(("move", model_id, dev))
            model.device = dev
            return model

        return ModelSpec(id=model_id, kind=kind, size_bytes=size, load=load,
                         to_device=to_device if movable else None, inference_bytes=inference, device=device)


def where(mm: ModelManager) -> dict[str, str]:
    return {info.id: info.device for info in mm.loaded()}


def sim_manager(rec: Recorder, *specs: ModelSpec, ram: int = 4 * GiB, vram: int = 10 * GiB) -> ModelManager:
    mm = ModelManager(vram_budget_bytes=vram, ram_budget_bytes=ram, device="cuda-sim")
    for spec in specs:
        mm.register(spec)
    return mm


def test_lru_eviction_offloads_to_ram_then_drops_when_ram_is_full() -> None:
    rec = Recorder()
    # 3 GiB each: 3.3 GiB resident (×1.1); a load needs 3.3 + 0.4 reserve = 3.7 GiB; 10 GiB holds two of them
    # plus change. RAM budget 4 GiB holds one offloaded copy.
    mm = sim_manager(rec, *(rec.spec(m, 3 * GiB) for m in "abcd"))
    mm.get("a")
    mm.get("b")
    assert where(mm) == {"a": "cuda-sim", "b": "cuda-sim"}
    assert rec.events == [("load", "a", "cpu"), ("load", "b", "cpu")]  # simulated GPU: models stay on the CPU
    rec.events.clear()

    mm.get("c")  # 6.6 used, 3.4 free < 3.7: evict the LRU model (a) to RAM
    assert where(mm) == {"c": "cuda-sim", "b": "cuda-sim", "a": "cpu"}
    assert rec.events == [("move", "a", "cpu"), ("load", "c", "cpu")]
    rec.events.clear()

    mm.get("d")  # evicts b to RAM; RAM holds only one copy, so the older offloaded copy (a) is dropped
    assert where(mm) == {"d": "cuda-sim", "c": "cuda-sim", "b": "cpu"}
    assert rec.events == [("move", "b", "cpu"), ("load", "d", "cpu")]
    assert mm.used() == 2 * int(3 * GiB * 1.1) + 2 and mm.used("cpu") == int(3 * GiB * 1.1) + 1
    rec.events.clear()

    mm.get("b")  # offloaded: moved back instead of reloaded; c is the LRU on the device and goes to RAM
    assert rec.events == [("move", "c", "cpu"), ("move", "b", "cpu")]
    assert where(mm) == {"b": "cuda-sim", "d": "cuda-sim", "c": "cpu"}
    assert rec.loads == {"a": 1, "b": 1, "c": 1, "d": 1}

    mm.get("a")  # dropped earlier: loaded again from scratch
    assert rec.loads["a"] == 2
    assert where(mm) == {"a": "cuda-sim", "b": "cuda-sim", "d": "cpu"}


def test_models_without_to_device_are_unloaded_not_offloaded() -> None:
    rec = Recorder()
    mm = sim_manager(rec, *(rec.spec(m, 4 * GiB, movable=False) for m in "abc"))
    mm.get("a")
    mm.get("b")
    mm.get("c")
    assert where(mm) == {"c": "cuda-sim", "b": "cuda-sim"}
    assert ("move", "a", "cpu") not in rec.events
    mm.get("a")
    assert rec.loads["a"] == 2


def test_using_a_model_refreshes_its_lru_position() -> None:
    rec = Recorder()
    mm = sim_manager(rec, *(rec.spec(m, 3 * GiB) for m in "abc"), ram=0)
    first_a = mm.get("a")
    mm.get("b")
    assert mm.get("a") is first_a  # a is now the most recently used
    assert [info.id for info in mm.loaded()] == ["a", "b"]
    mm.get("c")  # RAM budget 0: the LRU model (b) is unloaded, a survives
    assert where(mm) == {"c": "cuda-sim", "a": "cuda-sim"}
    assert rec.loads == {"a": 1, "b": 1, "c": 1}


def test_cpu_only_manager_schedules_ram() -> None:
    rec = Recorder()
    mm = ModelManager(ram_budget_bytes=4 * GiB, reserve_bytes=0, device="cpu")
    for m in "abc":
        mm.register(rec.spec(m, int(1.5 * GiB)))
    for m in "abc":
        mm.get(m)
    assert mm.device == "cpu"
    assert where(mm) == {"c": "cpu", "b": "cpu"}  # nowhere to offload to: a was dropped
    assert ("move", "a", "cpu") not in rec.events


def test_pinned_models_survive_and_a_model_that_cannot_fit_names_the_budget() -> None:
    rec = Recorder()
    mm = sim_manager(rec, *(rec.spec(m, 3 * GiB) for m in "abc"), rec.spec("small", 512 * MiB))
    mm.pin("a", "session-1")
    mm.pin("b", "session-2")
    mm.get("a")
    mm.get("b")
    with pytest.raises(ModelDoesNotFit) as err:
        mm.get("c")
    text = str(err.value)
    assert "'c'" in text and "3.00 GiB" in text and "10.00 GiB" in text
    assert "a (3.30 GiB, pinned by session-1)" in text and "session-2" in text
    assert where(mm) == {"a": "cuda-sim", "b": "cuda-sim"}  # nothing was evicted or half-loaded
    assert "c" not in rec.loads

    mm.get("small")  # still fits next to the pinned ones
    assert mm.unpin_all("session-2") == ["b"]
    mm.get("c")  # b is the least recently used unpinned model: it goes to RAM; pinned a stays
    assert where(mm) == {"c": "cuda-sim", "small": "cuda-sim", "a": "cuda-sim", "b": "cpu"}
    with pytest.raises(ModelPinned, match="session-1"):
        mm.unload("a")
    assert [i.pinned_by for i in mm.loaded() if i.id == "a"] == [("session-1",)]


def test_model_larger_than_the_whole_budget_raises_without_evicting() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("a", 1 * GiB), rec.spec("huge", 12 * GiB))
    mm.get("a")
    with pytest.raises(ModelDoesNotFit, match="nothing is pinned"):
        mm.get("huge")
    assert where(mm) == {"a": "cuda-sim"}


def test_pinned_context_manager_keeps_outer_pins() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("a", GiB), rec.spec("b", GiB))
    mm.pin("a", "s")
    with mm.pinned("s", "a", "b"):
        mm.get("a")
        mm.get("b")
        assert {i.id: i.pinned_by for i in mm.loaded()} == {"a": ("s",), "b": ("s",)}
    assert {i.id: i.pinned_by for i in mm.loaded()} == {"a": ("s",), "b": ()}
    with pytest.raises(KeyError, match="not registered"):
        with mm.pinned("s", "nope"):
            pass


def test_oom_retry_evicts_unpinned_models() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("big", 2 * GiB, fail_first_call=True), rec.spec("other", 2 * GiB),
                     rec.spec("idle", 1 * GiB), rec.spec("live", 1 * GiB))
    for m in ("idle", "other", "live"):
        mm.get(m)
    mm.pin("live", "session-1")
    model = mm.get("big")

    # What the executor does around a node's run:
    try:
        model()
        raise AssertionError("the fake model should have run out of memory")
    except RuntimeError as exc:
        assert ModelManager.is_oom(exc)
        message = mm.oom_message(exc, ["big"])
        evicted = mm.evict_for_retry(keep={"big"})
    assert sorted(evicted) == ["idle", "other"]
    assert where(mm) == {"big": "cuda-sim", "live": "cuda-sim"}
    assert model() == "big ran on cpu"  # the retry succeeds
    assert "big (2.00 GiB)" in message and "10.00 GiB" in message
    assert "--vram-budget" in message and "live sessions" in message and "smaller model" in message
    assert "live (by session-1)" in message
    assert mm.evict_for_retry() == ["big"]  # no keep: everything unpinned goes


def test_is_oom_classification() -> None:
    assert ModelManager.is_oom(MemoryError())
    assert ModelManager.is_oom(RuntimeError("CUDA error: out of memory"))
    assert not ModelManager.is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not ModelManager.is_oom(ValueError("out of range"))
    try:
        try:
            raise MemoryError
        except MemoryError as inner:
            raise ValueError("node 7 failed") from inner
    except ValueError as outer:
        assert ModelManager.is_oom(outer)


async def test_concurrent_aget_of_one_id_loads_once() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("slow", GiB, load_delay=0.2))
    models = await asyncio.gather(*(mm.aget("slow") for _ in range(6)))
    assert rec.loads == {"slow": 1}
    assert all(m is models[0] for m in models)


def test_concurrent_get_from_threads_loads_once_and_shares_errors() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("slow", GiB, load_delay=0.2))
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: mm.get("slow"), range(8)))
    assert rec.loads == {"slow": 1} and all(m is models[0] for m in models)

    started = threading.Event()
    attempts = []

    def broken_load(dev: str) -> Any:
        attempts.append(dev)
        started.set()
        time.sleep(0.2)
        raise OSError("checkpoint models/face/x.pth is missing")

    mm.register(ModelSpec(id="broken", kind="face", size_bytes=GiB, load=broken_load))
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(mm.get, "broken") for _ in range(3)]
        errors = []
        for f in futures:
            with pytest.raises(OSError, match="missing"):
                f.result()
            errors.append(True)
    assert len(attempts) == 1 and len(errors) == 3
    assert where(mm) == {"slow": "cuda-sim"}
    assert mm.used() == int(GiB * 1.1) + 1  # nothing stays reserved for the failed load


def test_a_load_function_may_get_another_model() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("detector", 2 * GiB), rec.spec("old", 3 * GiB))
    mm.get("old")

    def load_pipeline(dev: str) -> tuple[str, Any]:
        return ("pipeline", mm.get("detector"))  # needs room: "old" is evicted, the pipeline being loaded is not

    mm.register(ModelSpec(id="pipeline", kind="face", size_bytes=4 * GiB, load=load_pipeline))
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(mm.get("pipeline")), daemon=True)
    worker.start()
    worker.join(timeout=10)  # a deadlock fails the test instead of hanging the run
    assert not worker.is_alive(), "get() inside a load function deadlocked"
    (pipeline,) = result
    assert pipeline[1].id == "detector"
    assert where(mm) == {"pipeline": "cuda-sim", "detector": "cuda-sim", "old": "cpu"}

    mm.unload("detector")
    mm.unload("pipeline")
    mm.get("old")
    mm.pin("old", "s")  # now the only other model on the device is the one being loaded: it must not be evicted
    with pytest.raises(ModelDoesNotFit, match=r"pipeline \(4\.40 GiB, being loaded\)"):
        mm.get("pipeline")
    assert where(mm) == {"old": "cuda-sim"}


def test_avatar_models_fit_together_in_10_gb() -> None:
    """SadTalker + Wav2Lip + XTTS-v2 + Whisper base on a 10 GB GPU, the LLM in RAM, all pinned by one session."""
    rec = Recorder()
    specs = [
        rec.spec("sadtalker", int(1.4 * GB), kind="talking_head", inference=int(1.5 * GB)),  # incl. face renderer
        rec.spec("wav2lip", int(0.15 * GB), kind="lipsync", inference=int(0.5 * GB)),
        rec.spec("xtts-v2", int(1.9 * GB), kind="tts", inference=int(0.8 * GB)),  # 468 M params, fp32
        rec.spec("whisper-base", int(0.15 * GB), kind="asr", inference=int(0.3 * GB)),  # fp16
        rec.spec("qwen2.5-1.5b-q4", 1_117_320_768, kind="llm", device="cpu", movable=False),  # GGUF in RAM
    ]
    mm = ModelManager(vram_budget_bytes=10 * GB, ram_budget_bytes=8 * GB, device="cuda-sim")
    for spec in specs:
        mm.register(spec)
    ids = [s.id for s in specs]
    with mm.pinned("session-1", *ids):
        for model_id in ids:
            mm.get(model_id)
        assert where(mm) == {"sadtalker": "cuda-sim", "wav2lip": "cuda-sim", "xtts-v2": "cuda-sim",
                             "whisper-base": "cuda-sim", "qwen2.5-1.5b-q4": "cpu"}
        assert not any(e[0] == "move" for e in rec.events)  # nothing was evicted on the way
        assert mm.used() < 4.2 * GB  # 3.6 GB × 1.1
        for model_id in ids:  # a second turn of the conversation loads nothing
            mm.get(model_id)
        assert sum(rec.loads.values()) == 5

    # The same session on a 5 GB card: with XTTS pinned, SadTalker (weights + working memory) no longer fits.
    small = ModelManager(vram_budget_bytes=5 * GB, ram_budget_bytes=8 * GB, device="cuda-sim")
    for spec in specs:
        small.register(spec)
    with small.pinned("session-1", *ids):
        small.get("xtts-v2")
        with pytest.raises(ModelDoesNotFit, match=r"'sadtalker'.*4\.66 GiB.*xtts-v2 .*pinned by session-1"):
            small.get("sadtalker")
    small.get("sadtalker")  # session over: XTTS is evicted to RAM to make room
    assert where(small) == {"sadtalker": "cuda-sim", "xtts-v2": "cpu"}


def test_stats_shape_and_numbers() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("a", 2 * GiB), rec.spec("llm", GiB, device="cpu"))
    mm.get("a")
    mm.get("llm")
    mm.pin("a", "s")
    stats = mm.stats()
    assert set(stats) == {"devices", "loaded", "budget"}
    (device,) = stats["devices"]
    assert set(device) == {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"}
    assert device["type"] == "cuda-sim" and device["vram_total"] == 10 * GiB
    assert device["vram_free"] == 10 * GiB - mm.used()
    assert [entry["id"] for entry in stats["loaded"]] == ["llm", "a"]
    assert stats["loaded"][1] == {"id": "a", "kind": "test", "device": "cuda-sim", "size_bytes": 2 * GiB,
                                  "pinned_by": ("s",), "last_used": stats["loaded"][1]["last_used"]}
    budget = stats["budget"]
    assert budget["vram_budget"] == 10 * GiB and budget["ram_budget"] == 4 * GiB
    assert budget["ram_used"] == int(GiB * 1.1) + 1 and budget["simulated"] is True
    assert budget["ram_total"] > 0 and 0 < budget["ram_free"] <= budget["ram_total"]

    cpu = ModelManager(device="cpu").stats()
    assert cpu["devices"][0]["type"] == "cpu" and cpu["devices"][0]["vram_total"] > 0
    assert 0 < cpu["budget"]["ram_budget"] < cpu["budget"]["ram_total"]  # default: 80 % of available RAM


def test_register_rules() -> None:
    rec = Recorder()
    mm = sim_manager(rec, rec.spec("a", GiB))
    assert "a" in mm and "b" not in mm
    with pytest.raises(KeyError, match="not registered"):
        mm.get("b")
    mm.get("a")
    with pytest.raises(ValueError, match="unload it"):
        mm.register(rec.spec("a", 2 * GiB))
    assert mm.unload("a") is True and mm.unload("a") is False
    mm.register(rec.spec("a", 2 * GiB))
    with pytest.raises(ValueError, match="vram_budget_bytes"):
        ModelManager(device="cuda-sim")


def test_real_torch_module_moves_and_is_freed() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    def build(dev: str) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 16)).to(dev)

    size = estimate_module_bytes(build("cpu"))
    assert size == (256 * 256 + 256 + 256 * 16 + 16) * 4
    moves: list[str] = []

    def to_device(module: nn.Module, dev: str) -> nn.Module:
        moves.append(dev)
        return module.to(dev)

    auto = ModelManager(vram_budget_bytes=5 * size, ram_budget_bytes=10 * size, reserve_bytes=0)
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cuda-sim")
    mm = ModelManager(vram_budget_bytes=int(2.5 * size), ram_budget_bytes=10 * size, reserve_bytes=0,
                      device="cuda-sim")
    for name in ("m1", "m2", "m3"):
        mm.register(ModelSpec(id=name, kind="test", size_bytes=size, load=build, to_device=to_device))
    x = torch.randn(4, 256)
    m1 = mm.get("m1")
    expected = m1(x)
    mm.get("m2")
    mm.get("m3")  # m1 is offloaded through the real nn.Module.to
    assert where(mm) == {"m3": "cuda-sim", "m2": "cuda-sim", "m1": "cpu"} and moves == ["cpu"]
    assert mm.get("m1") is m1 and moves == ["cpu", "cpu", "cpu"]  # m2 offloaded, m1 moved back
    assert torch.equal(m1(x), expected)

    ref = weakref.ref(m1)
    del m1, expected
    assert "m1" in mm.evict_for_retry()
    gc.collect()
    assert ref() is None  # the manager held the last reference: the weights are really freed
    assert ModelManager.is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_real_cuda_device() -> None:  # runs only where torch sees a GPU
    import torch
    from torch import nn

    mm = ModelManager(vram_budget_bytes=256 * MiB, reserve_bytes=0)
    assert mm.device == "cuda"
    size = 48 * MiB
    for name in ("a", "b", "c", "d", "e"):
        mm.register(ModelSpec(id=name, kind="test", size_bytes=size,
                              load=lambda dev: nn.Linear(3072, 4096, bias=False).to(dev),
                              to_device=lambda m, dev: m.to(dev)))
    for name in "abcde":
        model = mm.get(name)
        assert next(model.parameters()).device.type == "cuda"
    placed = where(mm)
    assert placed["e"] == "cuda" and list(placed.values()).count("cpu") >= 1
    offloaded = next(i.id for i in mm.loaded() if i.device == "cpu")
    assert next(mm.get(offloaded).parameters()).device.type == "cuda"
    stats = mm.stats()
    device = stats["devices"][0]
    assert device["type"] == "cuda" and device["vram_total"] > 0 and device["torch_vram_total"] >= 4 * size
    del model
    mm.evict_for_retry()
    assert torch.cuda.memory_allocated() < size
