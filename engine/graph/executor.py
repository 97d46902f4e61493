"""Run a validated prompt: only what the output nodes need, each node as soon as its inputs are ready,
independent branches overlapping, cached results reused, streaming outputs flowing while their producers run.

Nodes run on demand: the output nodes are demanded first, and a node demands the producers of its inputs.
So a **lazy** input (``Input(lazy=True)``) is only computed when its node asks for it
(``Node.needed_inputs``), an **expansion** (a node returning ``NodeResult(expand=...)``) adds its sub-graph
to the running graph and its nodes run when the result refers to them, a **raw link** input receives the
link itself, and an ``ExecutionBlocker`` arriving on an input stops the node, which passes the blocker on.
Nodes waiting on each other in a circle (possible only through lazy inputs or expansions; the submitted
graph is checked for cycles before it runs) fail with a ``DependencyCycleError`` on the node shown in the
editor. State is small and explicit: one ``Execution`` per prompt run holds the futures, streams and
results of that run; the ``Executor`` holds what outlives a run (registry, output cache, node instances).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from engine.graph import types as T
from engine.graph.cache import CacheKey, OutputCache, make_key, unique_key
from engine.graph.context import Interrupted, LiveSession, NodeContext, RunFacts, release_state
from engine.graph.dynamic import RunningGraph, closure
from engine.graph.events import Event, EventSink, discard
from engine.graph.expansion import add_subgraph, referenced_links, resolve_links, topological_order
from engine.graph.flow import DependencyCycleError, ExecutionBlocker, first_blocker
from engine.graph.node import Node, NodeInputError, NodeResult
from engine.graph.prompt import Link, Prompt
from engine.graph.registry import NodeRegistry
from engine.graph.streams import DEFAULT_BUFFER, Stream, StreamClosed, Subscription
from engine.graph.validation import PromptInvalid, validate
from engine.models.manager import model_user

if TYPE_CHECKING:
    from engine.models.manager import ModelManager

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
              session: LiveSession | None = None, extra_data: dict[str, Any] | None = None) -> Execution:
        """Validate and prepare a run; ``await execution.run()`` executes it, ``interrupt()`` stops it.

        Output nodes that fail validation are left out (and reported in ``report.issues``) as long as one
        output can run; with none, ``PromptInvalid`` is raised."""
        if not isinstance(prompt, Prompt):
            prompt = Prompt.from_api(prompt)
        report = validate(prompt, self.registry, targets)
        if not report.runnable:
            raise PromptInvalid(report)
        return Execution(self, prompt, prompt_id or str(uuid.uuid4()), report.outputs, report.values,
                         on_event, session, report.graph, extra_data)

    async def execute(self, prompt: Prompt | dict[str, Any], prompt_id: str | None = None,
                      targets: Iterable[str] | None = None, on_event: EventSink = discard,
                      session: LiveSession | None = None, extra_data: dict[str, Any] | None = None) -> ExecutionResult:
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
        kept_ids = {k[0] for k in keep}  # expanded nodes (ids "<creator>.<...>") stay with their creator
        for key in [k for k in self.instances if k not in keep and k[0].split(".", 1)[0] not in kept_ids]:
            del self.instances[key]
            release_state(self.node_state.pop(key, {}))


class Execution:
    """One run of one prompt."""

    def __init__(self, executor: Executor, prompt: Prompt, prompt_id: str, outputs: list[str],
                 values: dict[str, dict[str, Any]], on_event: EventSink, session: LiveSession | None,
                 graph: nx.DiGraph | None = None, extra_data: dict[str, Any] | None = None):
        self.executor = executor
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.output_ids = outputs
        self.values = values
        self.on_event = on_event
        self.session = session
        self.graph = graph if graph is not None else prompt.graph()
        self.running = RunningGraph(prompt)
        self.interrupted = threading.Event()
        self.result = ExecutionResult(prompt_id, "running")
        self.extra_data: dict[str, Any] = extra_data or {}
        self._api_prompt: dict[str, Any] | None = None
        self._run_facts = RunFacts(self._api_form, self.extra_data, self.running)
        self._classes = {nid: executor.registry.get(n.class_type) for nid, n in prompt.nodes.items()}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: dict[str, asyncio.Future[NodeResult]] = {}
        self._cached: dict[str, NodeResult] = {}
        self._streams: dict[tuple[str, int], Stream] = {}
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._keys: dict[str, CacheKey] = {}
        self._waiting: dict[str, set[str]] = {}  # node -> producers it is waiting on now (cycle detection)
        self._watched: set[str] = set()  # nodes whose waits are checked for cycles (see _enter_wait)
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
        """Fill cache keys and cached results for everything the outputs may need (lazy inputs included);
        returns the nodes that will run for sure (reached through plain links), in topological order."""
        nodes = self.prompt.nodes
        needed = closure(self.output_ids, lambda nid: (link.node_id for _, link in nodes[nid].links()))
        order = [nid for nid in nx.topological_sort(self.graph) if nid in needed]
        for nid in order:
            self._key_node(nid)
        strong = closure(self.output_ids, lambda nid: () if nid in self._cached else
                          (link.node_id for name, link in nodes[nid].links() if self._strong(nid, name)))
        return [nid for nid in order if nid in strong and nid not in self._cached]

    def _key_node(self, nid: str) -> None:
        """The node's cache key from its parents' keys (a fresh one when it cannot be cached)."""
        cls = self._classes[nid]
        keys = self._keys
        parents = {name: (keys.get(link.node_id), link.output) for name, link in self.running.nodes[nid].links()}
        if not cls.DETERMINISTIC or cls.has_streams() or any(k is None for k, _ in parents.values()):
            keys[nid] = unique_key()
            return
        values = self.values[nid]
        fingerprint = None
        if _has_fingerprint(cls):
            try:
                fingerprint = cls.fingerprint({**values, **{name: None for name in parents}})
            except Exception as exc:  # as in ComfyUI: a failing fingerprint means "always changed"
                log.debug("fingerprint of node %s failed (%s): re-running it", nid, exc)
                fingerprint = unique_key()
        if cls.KEYED_BY_NODE_ID:
            values = {**values, "\x00node": nid}
        keys[nid] = key = make_key(cls.TYPE, values, parents, fingerprint)  # type: ignore[arg-type]
        hit = self.executor.cache.get(key)
        if hit is not None:
            self._cached[nid] = hit

    def _strong(self, nid: str, name: str) -> bool:
        """Whether input ``name`` of ``nid`` is computed before the node runs (not lazy, not a raw link)."""
        lazy, raw = _deferred(self._classes[nid])
        return name not in lazy and name not in raw

    def _wire_streams(self, run_order: list[str]) -> None:
        """Create a Stream per streaming output and subscribe every consumer before anything runs."""
        buffer = self.executor.stream_buffer
        for nid in run_order:
            for name, link in self.prompt.nodes[nid].links():
                src_cls = self._classes[link.node_id]
                if not T.is_stream(src_cls.OUTPUTS[link.output].type) or not self._strong(nid, name):
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
        cache = self.executor.cache
        cache.begin_run()
        try:
            run_order = self._plan()
            result.cached = [nid for nid in self._cached]
            self._event("execution_cached", nodes=list(result.cached), timestamp=int(time.time() * 1000))
            for nid, cached in self._cached.items():
                if cached.ui and nid in self.output_ids:  # ComfyUI re-sends cached UI outputs
                    result.outputs[nid] = cached.ui
                    self._event("executed", node=nid, display_node=nid, output=cached.ui)
            self._wire_streams(run_order)
            for nid in run_order:  # what runs for sure starts now, in topological order
                self._demand(nid)
            for nid in self.output_ids:
                self._demand(nid)
            if self.interrupted.is_set():
                self._cancel_all()
            await self._wait_all()
        finally:
            cache.end_run()
            if self.executor.current is self:
                self.executor.current = None
            for sub in self._subs.values():
                sub.close()
            result.timings["total"] = time.perf_counter() - start
        return result

    def _demand(self, nid: str) -> None:
        """Start ``nid`` unless it is cached, started already, or the run is being cancelled."""
        if nid in self._cached or nid in self._ready:
            return
        assert self._loop is not None
        self._ready[nid] = self._loop.create_future()
        task = asyncio.create_task(self._run_node(nid), name=f"node-{nid}")
        self._tasks.append(task)
        if self.interrupted.is_set():
            task.cancel()

    async def _wait_all(self) -> None:
        result = self.result
        failure: BaseException | None = None
        while pending := [t for t in self._tasks if not t.done()]:  # nodes demanded meanwhile count too
            await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            failure = next((t.exception() for t in self._tasks
                            if t.done() and not t.cancelled() and t.exception() is not None), None)
            if failure is not None or self.interrupted.is_set():
                self._cancel_all()
                await asyncio.gather(*self._tasks, return_exceptions=True)
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

    async def _value(self, consumer: str, name: str, link: Link) -> Any:
        """The value on ``link`` for input ``name`` of ``consumer``, running its producer if needed."""
        sub = self._subs.get((consumer, name))
        if sub is not None:
            await self._ready[link.node_id]  # the producer has started: stream chunks will follow
            return sub
        source = self._cached.get(link.node_id)
        if source is None:
            self._demand(link.node_id)
            self._enter_wait(consumer, link.node_id)
            try:
                source = await self._ready[link.node_id]
            finally:
                self._waiting[consumer].discard(link.node_id)
        value = source.outputs[link.output]
        if isinstance(value, asyncio.Future):  # a deferred output: known once the producer's streams end
            value = await value
        return value

    def _enter_wait(self, consumer: str, producer: str) -> None:
        """Record that ``consumer`` waits on ``producer``; a circle of waits is a dependency cycle.

        The submitted graph has no cycle (validation), so a circle needs an expanded node. Waits that touch
        one are checked by walking the waits from the producer, and every node reached is marked: later waits
        of marked nodes are checked too, so the wait that closes a circle is always checked. Waits between
        submitted nodes (all of them, in a plain workflow) cost nothing."""
        waits = self._waiting.setdefault(consumer, set())
        running = self.running
        if consumer in self._watched or running.is_ephemeral(consumer) or running.is_ephemeral(producer):
            seen: set[str] = set()
            stack = [producer]
            while stack:
                nid = stack.pop()
                if nid == consumer:
                    raise DependencyCycleError(f"node {consumer} and node {producer} wait on each other's outputs")
                if nid not in seen:
                    seen.add(nid)
                    stack.extend(self._waiting.get(nid, ()))
            self._watched |= seen
        waits.add(producer)

    async def _gather(self, nid: str, links: Iterable[tuple[str, Link]]) -> dict[str, Any]:
        """The values on ``links``: every producer is started first, so they run side by side."""
        pairs = list(links)
        for _, link in pairs:
            if link.node_id not in self._cached:
                self._demand(link.node_id)
        return {name: await self._value(nid, name, link) for name, link in pairs}

    async def _run_node(self, nid: str) -> None:
        cls = self._classes[nid]
        ready = self._ready[nid]
        node_def = self.running.nodes[nid]
        try:
            inputs = dict(self.values[nid])
            later: dict[str, Link] = {}
            now: list[tuple[str, Link]] = []
            lazy, raw = _deferred(cls)
            for name, link in node_def.links():
                if name in raw:
                    inputs[name] = [link.node_id, link.output]
                elif name in lazy and (nid, name) not in self._subs:
                    later[name] = link
                else:
                    now.append((name, link))
            inputs.update(await self._gather(nid, now))
            node, state = self.executor.instance(nid, cls)
            model_user.set(cls.TYPE)  # this node's task (and its worker threads) only
            self._running_node = nid
            display = self.running.display_id(nid)
            self._event("executing", node=nid, display_node=display)
            ctx = NodeContext(nid, cls.TYPE, self.prompt_id, self._loop, self.emit, self.interrupted,  # type: ignore[arg-type]
                              self.executor.models, self.session, state, self._run_facts)
            began = time.perf_counter()
            blocker = first_blocker(inputs.values())
            if blocker is None and later:
                inputs = await self._lazy_inputs(nid, node, ctx, inputs, later)
                blocker = first_blocker(inputs.values())
            if blocker is not None:
                produced = self._blocked(nid, cls, blocker)
            else:
                try:
                    produced = await self._call(node, ctx, inputs)
                except BaseException:
                    ctx.release_models()
                    raise
            if produced.expand:
                produced = await self._expand(nid, produced)
            outputs = list(produced.outputs)
            if len(outputs) != len(cls.OUTPUTS):
                raise NodeFailed(nid, cls.TYPE, f"{cls.TYPE} (node {nid}) returned {len(outputs)} output(s) but "
                                                f"declares {len(cls.OUTPUTS)}: this is a bug in the node")
            pumps = []
            for index, out in enumerate(cls.OUTPUTS):
                if T.is_stream(out.type) and not isinstance(outputs[index], ExecutionBlocker):
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
                if nid in self.output_ids or (self.running.is_ephemeral(nid) and cls.OUTPUT_NODE):
                    self.result.outputs[nid] = final.ui
                self._event("executed", node=nid, display_node=display, output=final.ui)
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
            if isinstance(exc, DependencyCycleError):  # blamed on the node the editor shows
                shown = self._cycle_blame(nid)
                exc = NodeFailed(shown, self._classes[shown].TYPE, f"dependency cycle: {exc}")
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, NodeFailed) else NodeFailed(nid, cls.TYPE, str(exc)))
                ready.exception()  # mark retrieved: consumers are cancelled anyway
            if isinstance(exc, StreamClosed | Interrupted) and self.interrupted.is_set():
                raise asyncio.CancelledError from exc
            if isinstance(exc, NodeFailed):
                raise exc
            exc.node_id = nid  # type: ignore[attr-defined]
            raise

    async def _lazy_inputs(self, nid: str, node: Node, ctx: NodeContext, inputs: dict[str, Any],
                           later: dict[str, Link]) -> dict[str, Any]:
        """Ask the node which lazy inputs it needs, compute those, and ask again until it needs no more;
        lazy inputs it never asks for are passed as None."""
        while later:
            view = {**inputs, **{name: None for name in later}}
            wanted = [n for n in await node.needed_inputs(ctx, view) if n in later]
            if not wanted:
                break
            inputs.update(await self._gather(nid, ((n, later.pop(n)) for n in dict.fromkeys(wanted))))
        return {**inputs, **{name: None for name in later}}

    def _blocked(self, nid: str, cls: type[Node], blocker: ExecutionBlocker) -> NodeResult:
        """A node whose input is a blocker does not run: every output passes the blocker on."""
        if blocker.message is not None:  # reported once, on the first node it stops (as ComfyUI does)
            self._event("execution_error", node_id=nid, node_type=cls.TYPE, executed=list(self.result.executed),
                        exception_message=f"Execution Blocked: {blocker.message}", exception_type="ExecutionBlocked",
                        traceback=[], current_inputs={}, current_outputs=[])
            blocker = ExecutionBlocker(None)
        return NodeResult(tuple(blocker for _ in cls.OUTPUTS))

    async def _expand(self, nid: str, produced: NodeResult) -> NodeResult:
        """Add the node's sub-graph to the running graph and replace the links in its result by the
        values they point at (the sub-graph's nodes run as they are needed)."""
        try:
            added = add_subgraph(self.running, self.executor.registry, nid, produced.expand or {})
        except ValueError as exc:
            raise NodeFailed(nid, self._classes[nid].TYPE, str(exc)) from exc
        for new_id, (cls, values) in added.items():
            self._classes[new_id] = cls
            self.values[new_id] = values
        for new_id in topological_order(self.running, added):
            self._key_node(new_id)
        for new_id, (cls, _) in added.items():
            if cls.OUTPUT_NODE or cls.has_streams():
                if cls.has_streams():
                    raise NodeFailed(nid, self._classes[nid].TYPE, f"the expansion adds streaming node "
                                                                   f"{new_id} ({cls.TYPE}); streams cannot join a running graph")
                self._demand(new_id)
        links = referenced_links(produced.outputs)
        values = await asyncio.gather(*(self._value(nid, f"expansion output {i}", link)
                                        for i, link in enumerate(links)))
        return NodeResult(resolve_links(produced.outputs, dict(zip(links, values))), produced.ui)

    def _cycle_blame(self, nid: str) -> str:
        """The node a dependency cycle is reported on: the displayed node of an expanded node in it."""
        shown = [self.running.display_id(m) for m in (nid, *self._waiting.get(nid, ())) if self.running.is_ephemeral(m)]
        return shown[0] if shown else self.running.real_id(nid)

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

    def _api_form(self) -> dict[str, Any]:
        self._api_prompt = self._api_prompt if self._api_prompt is not None else self.prompt.to_api()
        return self._api_prompt

    def _release_inputs(self, nid: str) -> None:
        for sub in [sub for (consumer, _), sub in self._subs.items() if consumer == nid]:
            sub.close()

    def _fail_streams(self, nid: str, exc: BaseException) -> None:
        for (producer, _), stream in self._streams.items():
            if producer == nid:
                stream.finish(exc)
        self._release_inputs(nid)

    def _error_info(self, exc: BaseException) -> dict[str, Any]:
        nid = getattr(exc, "node_id", None) or self._running_node
        if nid is not None:
            nid = self.running.real_id(nid)  # an expanded node's error shows on the node that was submitted
        cls = self._classes.get(nid) if nid else None
        cause = exc.__cause__ if isinstance(exc, NodeFailed) and exc.__cause__ else exc
        message = str(exc)
        if isinstance(cause, NodeInputError):
            message = f"input '{cause.input_name}': {cause}"
        node_def = self.running.get(nid) if nid else None
        node_inputs = node_def.inputs if node_def is not None else {}
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


@functools.cache
def _deferred(cls: type[Node]) -> tuple[frozenset[str], frozenset[str]]:
    """(lazy inputs, raw-link inputs) of a node class."""
    return (frozenset(i.name for i in cls.INPUTS if i.lazy), frozenset(i.name for i in cls.INPUTS if i.raw_link))


@functools.cache
def _has_fingerprint(cls: type[Node]) -> bool:  # the hook is overridden: call it
    return getattr(cls.fingerprint, "__func__", None) is not Node.fingerprint.__func__
