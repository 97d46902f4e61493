"""Run a validated prompt: only the sub-graph the output nodes need, in topological order, independent
branches overlapping, cached results reused, streaming outputs flowing while their producers run.

State is small and explicit: one ``Execution`` per prompt run holds the futures, streams and results of
that run; the ``Executor`` holds what outlives a run (registry, output cache, node instances, models).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from engine import types as T
from engine.comfy_compat import HiddenValues
from engine.cache import CacheKey, OutputCache, make_key, unique_key
from engine.context import Interrupted, NodeContext
from engine.events import Event, EventSink, discard
from engine.model_manager import model_user
from engine.node import Node, NodeInputError, NodeResult
from engine.prompt import Link, Prompt
from engine.registry import NodeRegistry
from engine.streams import DEFAULT_BUFFER, Stream, StreamClosed, Subscription
from engine.validation import PromptInvalid, validate

if TYPE_CHECKING:
    from engine.model_manager import ModelManager
    from engine.session import Session

log = logging.getLogger(__name__)

# Events that go into a prompt's history (ComfyUI keeps these in status.messages).
_HISTORY_EVENTS = frozenset({"execution_start", "execution_cached", "execution_success", "execution_error",
                             "execution_interrupted"})


@dataclass
class ExecutionResult:
    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> UI dict (history outputs)
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # node id -> raw outputs (not streams)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # node id -> seconds; "total" for the prompt
    messages: list[list[Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "success"


class NodeFailed(Exception):
    def __init__(self, node_id: str, class_type: str, message: str):
        super().__init__(message)
        self.node_id = node_id
        self.class_type = class_type


class Executor:
    """Executes prompts against a registry; keeps the output cache and node instances between runs."""

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None,
                 models: ModelManager | None = None, stream_buffer: int = DEFAULT_BUFFER):
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.models = models
        self.stream_buffer = stream_buffer
        self.instances: dict[tuple[str, str], Node] = {}
        self.node_state: dict[tuple[str, str], dict[str, Any]] = {}
        self.current: Execution | None = None

    def fork(self) -> Executor:
        """An executor sharing registry, cache and models but with its own node instances (a session's)."""
        return Executor(self.registry, self.cache, self.models, self.stream_buffer)

    def start(self, prompt: Prompt | dict[str, Any], prompt_id: str | None = None,
              targets: Iterable[str] | None = None, on_event: EventSink = discard,
              session: Session | None = None, extra_data: dict[str, Any] | None = None) -> Execution:
        """Validate and prepare a run; ``await execution.run()`` executes it, ``interrupt()`` stops it."""
        if not isinstance(prompt, Prompt):
            prompt = Prompt.from_api(prompt)
        report = validate(prompt, self.registry, targets)
        if not report.ok:
            raise PromptInvalid(report)
        execution = Execution(self, prompt, prompt_id or str(uuid.uuid4()), report.outputs, report.values,
                              on_event, session, report.graph)
        execution.extra_data = extra_data or {}
        return execution

    async def execute(self, prompt: Prompt | dict[str, Any], prompt_id: str | None = None,
                      targets: Iterable[str] | None = None, on_event: EventSink = discard,
                      session: Session | None = None, extra_data: dict[str, Any] | None = None) -> ExecutionResult:
        execution = self.start(prompt, prompt_id, targets, on_event, session, extra_data)
        return await execution.run()

    def interrupt(self) -> None:
        if self.current is not None:
            self.current.interrupt()

    def instance(self, node_id: str, cls: type[Node]) -> tuple[Node, dict[str, Any]]:
        key = (node_id, cls.TYPE)
        node = self.instances.get(key)
        if node is None:
            node = self.instances[key] = cls(node_id)
            self.node_state[key] = {}
        return node, self.node_state[key]

    def prune_instances(self, keep: Iterable[tuple[str, str]]) -> None:
        keep = set(keep)
        for key in [k for k in self.instances if k not in keep]:
            del self.instances[key]
            self.node_state.pop(key, None)


class Execution:
    """One run of one prompt."""

    def __init__(self, executor: Executor, prompt: Prompt, prompt_id: str, outputs: list[str],
                 values: dict[str, dict[str, Any]], on_event: EventSink, session: Session | None,
                 graph: nx.DiGraph | None = None):
        self.executor = executor
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.output_ids = outputs
        self.values = values
        self.on_event = on_event
        self.session = session
        self.graph = graph if graph is not None else prompt.graph()
        self.interrupted = threading.Event()
        self.result = ExecutionResult(prompt_id, "running")
        self.extra_data: dict[str, Any] = {}
        self._api_prompt: dict[str, Any] | None = None
        self._classes = {nid: executor.registry.get(n.class_type) for nid, n in prompt.nodes.items()}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: dict[str, asyncio.Future[NodeResult]] = {}
        self._cached: dict[str, NodeResult] = {}
        self._streams: dict[tuple[str, int], Stream] = {}
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._keys: dict[str, CacheKey] = {}
        self._running_node: str | None = None

    # Events -------------------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if event.type in _HISTORY_EVENTS:
            self.result.messages.append([event.type, event.data])
        try:
            self.on_event(event)
        except Exception:  # a broken listener must not break execution
            log.exception("event listener failed on %s", event.type)

    def _event(self, type_: str, **data: Any) -> None:
        data.setdefault("prompt_id", self.prompt_id)
        self.emit(Event(type_, data))

    # Control ------------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Cancel every running node of this run; safe from any thread; returns at once."""
        self.interrupted.set()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._cancel_all()
        else:
            loop.call_soon_threadsafe(self._cancel_all)

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        for stream in self._streams.values():
            stream.finish(Interrupted("interrupted"))

    # Planning -----------------------------------------------------------------------------------------
    def _plan(self) -> list[str]:
        """Topological order of the needed sub-graph; fills keys and cached results; returns nodes to run."""
        nodes = self.prompt.nodes
        needed: set[str] = set()
        stack = list(self.output_ids)
        while stack:
            nid = stack.pop()
            if nid in needed:
                continue
            needed.add(nid)
            stack.extend(link.node_id for _, link in nodes[nid].links())
        order = [nid for nid in nx.topological_sort(self.graph) if nid in needed]

        cache = self.executor.cache
        for nid in order:
            cls = self._classes[nid]
            if not cls.DETERMINISTIC or cls.has_streams():
                self._keys[nid] = unique_key()
                continue
            parents = {name: (self._keys[link.node_id], link.output) for name, link in nodes[nid].links()}
            try:
                fingerprint = cls.fingerprint(self.values[nid])
            except Exception as exc:  # as in ComfyUI: a failing fingerprint means "always changed"
                log.debug("fingerprint of node %s failed (%s): re-running it", nid, exc)
                fingerprint = unique_key()
            self._keys[nid] = key = make_key(cls.TYPE, self.values[nid], parents, fingerprint)
            hit = cache.get(key)
            if hit is not None:
                self._cached[nid] = hit

        to_run: set[str] = set()
        stack = list(self.output_ids)
        while stack:
            nid = stack.pop()
            if nid in to_run or nid in self._cached:
                continue
            to_run.add(nid)
            stack.extend(link.node_id for _, link in nodes[nid].links())
        return [nid for nid in order if nid in to_run]

    def _wire_streams(self, run_order: list[str]) -> None:
        """Create a Stream per streaming output and subscribe every consumer before anything runs."""
        buffer = self.executor.stream_buffer
        for nid in run_order:
            for name, link in self.prompt.nodes[nid].links():
                src_cls = self._classes[link.node_id]
                if not T.is_stream(src_cls.OUTPUTS[link.output].type):
                    continue
                key = (link.node_id, link.output)
                stream = self._streams.get(key)
                if stream is None:
                    stream = self._streams[key] = Stream(buffer, f"{link.node_id}:{link.output}")
                self._subs[(nid, name)] = stream.subscribe()
        for nid in run_order:  # outputs nobody consumes still get a stream (drained by the pump)
            for index, out in enumerate(self._classes[nid].OUTPUTS):
                if T.is_stream(out.type) and (nid, index) not in self._streams:
                    self._streams[(nid, index)] = Stream(buffer, f"{nid}:{index}")

    # Running ------------------------------------------------------------------------------------------
    async def run(self) -> ExecutionResult:
        start = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        self.executor.current = self
        self._event("execution_start", timestamp=int(time.time() * 1000))
        result = self.result
        try:
            run_order = self._plan()
            result.cached = [nid for nid in self._cached]
            self._event("execution_cached", nodes=list(result.cached), timestamp=int(time.time() * 1000))
            for nid, cached in self._cached.items():
                if cached.ui and nid in self.output_ids:  # ComfyUI re-sends cached UI outputs
                    result.outputs[nid] = cached.ui
                    self._event("executed", node=nid, display_node=nid, output=cached.ui)
            self._wire_streams(run_order)
            self._ready = {nid: self._loop.create_future() for nid in run_order}
            self._tasks = [asyncio.create_task(self._run_node(nid), name=f"node-{nid}") for nid in run_order]
            if self.interrupted.is_set():
                self._cancel_all()
            await self._wait_all()
        finally:
            if self.executor.current is self:
                self.executor.current = None
            for sub in self._subs.values():
                sub.close()
            result.timings["total"] = time.perf_counter() - start
        return result

    async def _wait_all(self) -> None:
        result = self.result
        pending: set[asyncio.Task[None]] = set(self._tasks)
        failure: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is not None and failure is None:
                    failure = exc
            if failure is not None or self.interrupted.is_set():
                self._cancel_all()
                await asyncio.gather(*pending, return_exceptions=True)
                break
        if self.interrupted.is_set() and not isinstance(failure, NodeFailed):
            result.status = "interrupted"
            node = self._running_node
            self._event("execution_interrupted", node_id=node,
                        node_type=self._classes[node].TYPE if node else None, executed=list(result.executed))
        elif failure is not None:
            result.status = "error"
            result.error = self._error_info(failure)
            self._event("execution_error", **result.error)
        else:
            result.status = "success"
            self._event("executing", node=None, display_node=None)
            self._event("execution_success", timestamp=int(time.time() * 1000))

    async def _gather_inputs(self, nid: str) -> dict[str, Any]:
        inputs = dict(self.values[nid])
        for name, link in self.prompt.nodes[nid].links():
            sub = self._subs.get((nid, name))
            if sub is not None:
                await self._ready[link.node_id]  # the producer has started: stream chunks will follow
                inputs[name] = sub
                continue
            source = self._cached.get(link.node_id)
            if source is None:
                source = await self._ready[link.node_id]
            value = source.outputs[link.output]
            if isinstance(value, asyncio.Future):  # a deferred output: known once the producer's streams end
                value = await value
            inputs[name] = value
        return inputs

    async def _run_node(self, nid: str) -> None:
        cls = self._classes[nid]
        ready = self._ready[nid]
        try:
            inputs = await self._gather_inputs(nid)
            node, state = self.executor.instance(nid, cls)
            model_user.set(cls.TYPE)  # this node's task (and its worker threads) only
            self._running_node = nid
            self._event("executing", node=nid, display_node=nid)
            ctx = NodeContext(nid, cls.TYPE, self.prompt_id, self._loop, self.emit, self.interrupted,  # type: ignore[arg-type]
                              self.executor.models, self.session, state)
            if any(spec.hidden for spec in cls.INPUTS):
                ctx.hidden = self._hidden_values(nid)
            began = time.perf_counter()
            try:
                produced = await self._call(node, ctx, inputs)
            except BaseException:
                ctx.release_models()
                raise
            outputs = list(produced.outputs)
            if len(outputs) != len(cls.OUTPUTS):
                raise NodeFailed(nid, cls.TYPE, f"{cls.TYPE} (node {nid}) returned {len(outputs)} output(s) but "
                                                f"declares {len(cls.OUTPUTS)}: this is a bug in the node")
            pumps = []
            for index, out in enumerate(cls.OUTPUTS):
                if T.is_stream(out.type):
                    stream = self._streams[(nid, index)]
                    pumps.append(asyncio.create_task(stream.pump(outputs[index]), name=f"pump-{nid}:{index}"))
                    outputs[index] = stream
            final = NodeResult(tuple(outputs), produced.ui)
            ready.set_result(final)
            try:
                if pumps:
                    await asyncio.gather(*pumps)
                final = await self._resolve_deferred(nid, cls, final)
            finally:
                ctx.release_models()
            self._release_inputs(nid)
            self.result.timings[nid] = time.perf_counter() - began
            self.result.executed.append(nid)
            if not pumps:
                self.result.values[nid] = final.outputs
            if final.ui:
                if nid in self.output_ids:
                    self.result.outputs[nid] = final.ui
                self._event("executed", node=nid, display_node=nid, output=final.ui)
            self._event("node_done", node=nid, seconds=self.result.timings[nid])
            if not (cls.has_streams() or not cls.DETERMINISTIC):
                self.executor.cache.put(self._keys[nid], final)
        except asyncio.CancelledError:
            self._fail_streams(nid, Interrupted(f"node {nid} was interrupted"))
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:
            self._fail_streams(nid, exc)
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, NodeFailed) else NodeFailed(nid, cls.TYPE, str(exc)))
                ready.exception()  # mark retrieved: consumers are cancelled anyway
            if isinstance(exc, StreamClosed | Interrupted) and self.interrupted.is_set():
                raise asyncio.CancelledError from exc
            if not isinstance(exc, NodeFailed):
                exc.node_id = nid  # type: ignore[attr-defined]
            raise

    async def _call(self, node: Node, ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
        """Run the node; on an out-of-memory error evict unpinned models and retry once."""
        models = self.executor.models
        try:
            return await node.execute(ctx, inputs)
        except Exception as exc:
            if models is None or not models.is_oom(exc):
                raise
            freed = models.evict_for_retry()
            log.warning("node %s ran out of memory; evicted %s and retrying once", ctx.node_id, freed)
        try:
            return await node.execute(ctx, inputs)
        except Exception as exc:
            if not models.is_oom(exc):
                raise
            loaded = [m.id for m in models.loaded()]
            raise NodeFailed(ctx.node_id, ctx.class_type, models.oom_message(exc, loaded)) from exc

    async def _resolve_deferred(self, nid: str, cls: type[Node], result: NodeResult) -> NodeResult:
        """Replace deferred (future) outputs by their values once the node's streams have ended."""
        if not any(isinstance(v, asyncio.Future) for v in result.outputs):
            return result
        values = []
        for index, value in enumerate(result.outputs):
            if isinstance(value, asyncio.Future):
                if not value.done():
                    value.cancel()
                    raise NodeFailed(nid, cls.TYPE, f"{cls.TYPE} (node {nid}) never produced its output "
                                                    f"'{cls.OUTPUTS[index].name}': this is a bug in the node")
                value = value.result()
            values.append(value)
        return NodeResult(tuple(values), result.ui)

    def _hidden_values(self, nid: str) -> HiddenValues:
        if self._api_prompt is None:
            self._api_prompt = self.prompt.to_api()
        return HiddenValues(unique_id=nid, prompt=self._api_prompt,
                            extra_pnginfo=self.extra_data.get("extra_pnginfo"))

    def _release_inputs(self, nid: str) -> None:
        for (consumer, name), sub in self._subs.items():
            if consumer == nid:
                sub.close()

    def _fail_streams(self, nid: str, exc: BaseException) -> None:
        for (producer, _), stream in self._streams.items():
            if producer == nid:
                stream.finish(exc)
        self._release_inputs(nid)

    def _error_info(self, exc: BaseException) -> dict[str, Any]:
        nid = getattr(exc, "node_id", None) or self._running_node
        cls = self._classes.get(nid) if nid else None
        cause = exc.__cause__ if isinstance(exc, NodeFailed) and exc.__cause__ else exc
        message = str(exc)
        if isinstance(cause, NodeInputError):
            message = f"input '{cause.input_name}': {cause}"
        node_inputs = self.prompt.nodes[nid].inputs if nid in self.prompt.nodes else {}
        return {
            "prompt_id": self.prompt_id,
            "node_id": nid,
            "node_type": cls.TYPE if cls else None,
            "executed": list(self.result.executed),
            "exception_message": f"{cls.TYPE if cls else 'node'} (node {nid}) failed: {message}",
            "exception_type": f"{type(cause).__module__}.{type(cause).__name__}",
            "traceback": traceback.format_exception(cause),
            "current_inputs": {k: [v.node_id, v.output] if isinstance(v, Link) else repr(v)[:200]
                               for k, v in node_inputs.items()},
            "current_outputs": [],
        }
