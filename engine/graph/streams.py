"""Streaming ports: a node's streaming output is an async iterable of chunks; the engine pumps it into a
``Stream`` whose bounded per-consumer buffers give back-pressure (a slow consumer pauses the producer,
so memory stays bounded) and whose consumers start on the first chunk.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

DEFAULT_BUFFER = 8


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None):
        self.error = error


class StreamClosed(Exception):
    """The producer stopped (interrupted or failed) before the stream ended normally."""


class Subscription(AsyncIterator[Any]):
    """One consumer's view of a stream: async-iterate it to get the chunks in order."""

    def __init__(self, stream: Stream, maxsize: int):
        self._stream = stream
        self._maxsize = maxsize
        self._buffer: deque[Any] = deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._end: _End | None = None
        self.closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        while not self._buffer:
            if self.closed:
                raise StopAsyncIteration
            if self._end is not None:
                self.closed = True
                if self._end.error is not None:
                    raise StreamClosed(f"upstream stream failed: {self._end.error!r}") from self._end.error
                raise StopAsyncIteration
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._buffer.popleft()
        self._not_full.set()
        return item

    async def _put(self, chunk: Any) -> None:
        while len(self._buffer) >= self._maxsize and not self.closed:
            self._not_full.clear()
            await self._not_full.wait()
        if not self.closed:
            self._buffer.append(chunk)
            self._not_empty.set()

    def _finish(self, error: BaseException | None) -> None:
        self._end = _End(error)
        if error is not None:  # on failure or interrupt, drop what is buffered: flush
            self._buffer.clear()
        self._not_empty.set()

    def close(self) -> None:
        """The consumer is done; the producer no longer waits for it. Buffered chunks are dropped."""
        if not self.closed:
            self.closed = True
            self._buffer.clear()
            self._stream._drop(self)
            self._not_full.set()
            self._not_empty.set()

    @property
    def buffered(self) -> int:
        return len(self._buffer)


class Stream:
    """Fan-out channel with a bounded buffer per subscriber."""

    def __init__(self, maxsize: int = DEFAULT_BUFFER, name: str = ""):
        if maxsize < 1:
            raise ValueError("a stream buffer holds at least one chunk")
        self.maxsize = maxsize
        self.name = name
        self._subs: list[Subscription] = []
        self.chunks = 0
        self.finished = False

    def subscribe(self) -> Subscription:
        if self.chunks:
            raise RuntimeError(f"stream {self.name}: subscribe before the first chunk")
        sub = Subscription(self, self.maxsize)
        self._subs.append(sub)
        return sub

    @property
    def active(self) -> bool:
        return any(not s.closed for s in self._subs)

    def _drop(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def put(self, chunk: Any) -> None:
        self.chunks += 1
        for sub in list(self._subs):
            await sub._put(chunk)

    def finish(self, error: BaseException | None = None) -> None:
        """End the stream for every consumer; never blocks."""
        if self.finished:
            return
        self.finished = True
        for sub in self._subs:
            sub._finish(error)

    async def pump(self, source: AsyncIterable[Any] | Any) -> None:
        """Copy ``source`` into the stream; stops early when every consumer has gone."""
        iterator = aiter(source) if hasattr(source, "__aiter__") else _sync_iter(source)
        had_consumers = bool(self._subs)
        try:
            async for chunk in iterator:
                await self.put(chunk)
                if had_consumers and not self.active:
                    break
        except BaseException as exc:
            self.finish(exc)
            raise
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        self.finish()


async def _sync_iter(source: Any) -> AsyncIterator[Any]:
    for chunk in source:
        yield chunk


async def collect(stream: AsyncIterable[Any]) -> list[Any]:
    """Gather every chunk (for tests and nodes that need the whole thing)."""
    return [chunk async for chunk in stream]
