"""What a running node sees of the engine: progress, interruption, worker threads, models, folders."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from engine.events import Event

if TYPE_CHECKING:
    from engine.model_manager import ModelManager, ModelSpec
    from engine.session import Session

R = TypeVar("R")


class Interrupted(Exception):
    """Raised inside a node when its prompt or session was interrupted."""


@dataclass
class NodeContext:
    node_id: str
    class_type: str
    prompt_id: str
    loop: asyncio.AbstractEventLoop
    emit: Callable[[Event], None]
    interrupted: threading.Event
    models: ModelManager | None = None
    session: Session | None = None
    state: dict[str, Any] = field(default_factory=dict)  # per node instance, survives across runs
    hidden: Any = None  # what ComfyUI's hidden inputs ask for (engine.comfy_compat.HiddenValues)

    def progress(self, value: float, maximum: float) -> None:
        """Report progress; safe to call from a worker thread."""
        self._emit_threadsafe(Event("progress", {"value": value, "max": maximum, "node": self.node_id,
                                                 "prompt_id": self.prompt_id}))

    def preview(self, kind: str, payload: bytes) -> None:
        """Send a binary preview (``kind`` 'jpeg' or 'png') the way ComfyUI sends latent previews."""
        self._emit_threadsafe(Event("preview", {"node": self.node_id, "prompt_id": self.prompt_id,
                                                "format": kind, "data": payload}))

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
