"""Giving the memory closed Talk sessions freed back to the OS, once however many close together."""

from __future__ import annotations

import asyncio


class MemoryRelease:
    """Hands the memory closed sessions freed back to the OS once, ``delay_s`` after a close, however many
    sessions close together: ``gc.collect`` holds the GIL for tens of ms on a heap with models loaded, so one
    per closing session stalled the server for seconds when 20 pages closed at once."""

    def __init__(self, delay_s: float = 2.0):
        self.delay_s = delay_s
        self._task: asyncio.Task[None] | None = None

    def request(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._release(), name="talk-memory-release")

    async def _release(self) -> None:
        await asyncio.sleep(self.delay_s)
        await asyncio.to_thread(release_free_memory)


def release_free_memory() -> None:
    """Give the memory a closed session freed back to the OS (glibc keeps freed heap pages otherwise, and a
    long-running server's RSS creeps up session after session). A no-op where there is no glibc."""
    from engine.app.malloc import release_free_memory as release

    release()
