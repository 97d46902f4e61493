"""Live sessions: a long-lived graph per user session.

A session keeps its node instances (models loaded, photo and voice preprocessed) across turns, owns the
live input channels (the browser mic) and the media sink (frames + PCM back to the browser), and can be
interrupted at any moment: every running node is cancelled, stream buffers are flushed, and the session
stays usable for the next turn (barge-in).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.graph.context import DialogStore
from engine.graph.events import Event, EventSink, discard
from engine.graph.executor import Execution, ExecutionResult, Executor
from engine.graph.prompt import Prompt

log = logging.getLogger(__name__)

MediaSink = Callable[[Any], Awaitable[None]]


class InputChannel:
    """Bounded queue of live input chunks (e.g. PCM16 mic frames); one consumer at a time.

    It remembers the last ``history`` chunks it handed out, so that after a barge-in restart the new
    consumer can hear the start of the utterance that caused it (``rewind``).
    """

    def __init__(self, name: str, maxsize: int, history: int = 64):
        self.name = name
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize)
        self._recent: deque[bytes] = deque(maxlen=history)
        self._replay: deque[bytes] = deque()
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Chunks fed but not yet read by the graph."""
        return self._queue.qsize() + len(self._replay)

    def rewind(self, chunks: int | None = None) -> int:
        """Hand the last ``chunks`` delivered chunks (all remembered ones by default) out again, first."""
        recent = list(self._recent)[-chunks:] if chunks else list(self._recent)
        self._replay.extendleft(reversed(recent))
        self._recent.clear()
        return len(recent)

    def put_nowait(self, data: bytes) -> None:
        """Live audio must not stall the socket reader: when the consumer lags, the oldest chunk goes."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(data)

    def close(self) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def flush(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            if self._replay:
                item: bytes | None = self._replay.popleft()
            else:
                item = await self._queue.get()
            if item is None:
                return
            self._recent.append(item)
            yield item


@dataclass
class InterruptReport:
    requested_at: float
    stopped_at: float
    nodes_cancelled: list[str]

    @property
    def latency_s(self) -> float:
        return self.stopped_at - self.requested_at


class Session:
    def __init__(self, session_id: str, executor: Executor, prompt: Prompt | dict[str, Any],
                 store: DialogStore | None = None, on_event: EventSink = discard, on_media: MediaSink | None = None,
                 input_buffer: int = 256):
        self.session_id = session_id
        self.executor = executor.fork()
        self.prompt = prompt if isinstance(prompt, Prompt) else Prompt.from_api(prompt)
        self.store = store
        self.on_event = on_event
        self.on_media = on_media
        self.input_buffer = input_buffer
        self.state: dict[str, Any] = {}
        self.turns = 0
        self.closed = False
        self._inputs: dict[str, InputChannel] = {}
        self._execution: Execution | None = None
        self._task: asyncio.Task[ExecutionResult] | None = None
        self._lock = asyncio.Lock()

    # Live I/O used by nodes -----------------------------------------------------------------------------
    def channel(self, name: str) -> InputChannel:
        chan = self._inputs.get(name)
        if chan is None:
            chan = self._inputs[name] = InputChannel(name, self.input_buffer)
        return chan

    def input_stream(self, name: str) -> AsyncIterator[bytes]:
        """What MicInput reads: live chunks fed by the server (``feed``)."""
        return aiter(self.channel(name))

    def feed(self, name: str, data: bytes) -> None:
        self.channel(name).put_nowait(data)

    def emit_event(self, type_: str, data: dict[str, Any] | None = None) -> None:
        """Session-level events (speech_start, transcript, latency marks) for the client."""
        payload = {"session_id": self.session_id, "t": time.time(), **(data or {})}
        try:
            self.on_event(Event(type_, payload))
        except Exception:
            log.exception("session %s: event listener failed on %s", self.session_id, type_)

    async def send_media(self, item: Any) -> None:
        """Frames and PCM on their way to the client; a session without a sink drops them."""
        if self.on_media is not None:
            await self.on_media(item)

    # Running ----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, overrides: dict[tuple[str, str], Any] | None = None) -> ExecutionResult:
        """Run the session graph once (one turn, or the whole live loop); one run at a time."""
        if self.closed:
            raise RuntimeError(f"session {self.session_id} is closed")
        async with self._lock:
            prompt = self.prompt
            if overrides:
                prompt = prompt.copy()
                for (node_id, name), value in overrides.items():
                    prompt.set_input(node_id, name, value)
            self.turns += 1
            self._execution = self.executor.start(prompt, f"{self.session_id}:{self.turns}",
                                                  on_event=self.on_event, session=self)
            self._task = asyncio.create_task(self._execution.run())
            try:
                return await asyncio.shield(self._task)
            finally:
                self._execution = None

    def start(self, overrides: dict[tuple[str, str], Any] | None = None) -> asyncio.Task[ExecutionResult]:
        """Run in the background (a live loop); returns the task."""
        return asyncio.create_task(self.run(overrides))

    async def interrupt(self) -> InterruptReport:
        """Cancel every running node of this session, flush its buffers, and wait until they have stopped."""
        requested = time.perf_counter()
        execution, task = self._execution, self._task
        cancelled: list[str] = []
        if execution is not None and task is not None and not task.done():
            cancelled = [t.get_name().removeprefix("node-") for t in execution._tasks if not t.done()]
            execution.interrupt()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                log.warning("session %s: nodes still stopping after 5 s", self.session_id)
        report = InterruptReport(requested, time.perf_counter(), cancelled)
        self.emit_event("interrupted", {"latency_ms": round(report.latency_s * 1000, 1), "nodes": cancelled})
        return report

    async def close(self) -> None:
        if self.closed:
            return
        await self.interrupt()
        self.closed = True
        for chan in self._inputs.values():
            chan.close()
        if self.executor.models is not None and hasattr(self.executor.models, "unpin_all"):
            self.executor.models.unpin_all(self.session_id)
        self.executor.prune_instances(())  # node instances go, with the threads they kept
