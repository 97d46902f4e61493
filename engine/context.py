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
    from engine.model_manager import ModelManager
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

    def _emit_threadsafe(self, event: Event) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.emit(event)
        else:
            self.loop.call_soon_threadsafe(self.emit, event)
