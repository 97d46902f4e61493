"""What a running node sees of the engine: progress, interruption, worker threads, models, its live session
and the facts of the run it belongs to."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from engine.graph.events import Event

if TYPE_CHECKING:
    from engine.models.manager import ModelManager, ModelSpec

R = TypeVar("R")


def release_state(state: dict[str, Any]) -> None:
    """A node instance's kept state is let go: thread pools it made for itself (``ctx.state``) are shut down."""
    for value in state.values():
        if isinstance(value, concurrent.futures.Executor):
            value.shutdown(wait=False, cancel_futures=True)


class Interrupted(Exception):
    """Raised inside a node when its prompt or session was interrupted."""


class DialogStore(Protocol):
    """Where a live session keeps its dialog turns (``engine.queue.sqlite_sessions.SessionTables``)."""

    def add_turn(self, session_id: str, role: str, text: str, tokens: int,
                 meta: dict[str, Any] | None = None) -> int: ...

    def turns(self, session_id: str, limit: int | None = None) -> list[Any]: ...

    def replace_turns(self, session_id: str, turn_ids: Iterable[int], summary_text: str, tokens: int,
                      role: str = "system", meta: dict[str, Any] | None = None) -> int: ...

    def clear_turns(self, session_id: str) -> int: ...


class LiveSession(Protocol):
    """What a node running inside a live session (``engine.live.session.Session``) may use of it."""

    session_id: str
    state: dict[str, Any]
    store: DialogStore | None

    def input_stream(self, name: str) -> AsyncIterator[bytes]:
        """The named input channel (e.g. the microphone), as an async iterator of chunks."""
        ...

    def emit_event(self, type_: str, data: dict[str, Any] | None = None) -> None:
        """Send an event to the session's client (transcript, reply text, latency stamps)."""
        ...

    async def send_media(self, item: Any) -> None:
        """Send a media item (audio chunk, video frame) to the session's client."""
        ...


@dataclass
class RunFacts:
    """Plain facts about the prompt run a node belongs to, for adapters that hand them to foreign node APIs
    (ComfyUI's hidden inputs are built from these by ``engine.comfy``)."""

    prompt: Callable[[], dict[str, Any]]  # the API-format prompt being run (computed on first use)
    extra_data: dict[str, Any] = field(default_factory=dict)
    graph: Any = None  # the running graph (engine.graph.dynamic.RunningGraph): submitted + expanded nodes


@dataclass
class NodeContext:
    node_id: str
    class_type: str
    prompt_id: str
    loop: asyncio.AbstractEventLoop
    emit: Callable[[Event], None]
    interrupted: threading.Event
    models: ModelManager | None = None
    session: LiveSession | None = None
    state: dict[str, Any] = field(default_factory=dict)  # per node instance, survives across runs
    run: RunFacts | None = None

    def progress(self, value: float, maximum: float) -> None:
        """Report progress; safe to call from a worker thread."""
        self._emit_threadsafe(Event("progress", {"value": value, "max": maximum, "node": self.node_id,
                                                 "prompt_id": self.prompt_id}))

    def preview(self, kind: str, payload: bytes) -> None:
        """Send a binary preview (``kind`` 'jpeg' or 'png') the way ComfyUI sends latent previews."""
        self._emit_threadsafe(Event("preview", {"node": self.node_id, "prompt_id": self.prompt_id,
                                                "format": kind, "data": payload}))

    def event(self, type_: str, data: dict[str, Any]) -> None:
        """Send an event for this node's prompt (e.g. an adapter reporting ComfyUI's blocked branch); thread-safe."""
        self._emit_threadsafe(Event(type_, {"prompt_id": self.prompt_id, "node_id": self.node_id, **data}))

    def check_interrupted(self) -> None:
        """Long-running blocking code calls this between steps; raises ``Interrupted``."""
        if self.interrupted.is_set():
            raise Interrupted(f"node {self.node_id} ({self.class_type}) was interrupted")

    async def run_blocking(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run blocking work (model inference, file I/O) in a worker thread, off the event loop."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await self.loop.run_in_executor(None, call)

    @property
    def owner(self) -> str:
        """The pin owner for models this node uses while it runs."""
        return f"{self.prompt_id}/{self.node_id}"

    def model(self, spec: ModelSpec) -> Any:
        """Load (or reuse) a model through the manager and keep it loaded while this node runs.

        Blocking: call it from ``run_blocking`` work or a plain ``run``. Without a manager (unit tests),
        the model is loaded once per node instance.
        """
        if self.models is None:
            cache = self.state.setdefault("_models", {})
            if spec.id not in cache:
                cache[spec.id] = spec.load("cpu")
            return cache[spec.id]
        if spec.id not in self.models:
            self.models.register(spec)
        self.models.pin(spec.id, self.owner)
        return self.models.get(spec.id)

    async def amodel(self, spec: ModelSpec) -> Any:
        """``model`` for async nodes: the load runs in a worker thread."""
        return await self.run_blocking(self.model, spec)

    def release_models(self) -> None:
        """Drop this node's pins (the executor calls it when the node has finished)."""
        if self.models is not None:
            self.models.unpin_all(self.owner)

    def _emit_threadsafe(self, event: Event) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.emit(event)
        else:
            self.loop.call_soon_threadsafe(self.emit, event)
