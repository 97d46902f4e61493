"""Incremental transcription of one turn while it is being spoken.

The VAD offers the audio of a turn in progress (``SpeechAudio`` / ``AudioChunk(final=False)``) about every
second and at once when a pause begins. Each offer starts a pass over the whole buffer so far, unless a pass is
running, in which case one more pass follows it. When the turn ends, the final result is the pass that covered
everything offered (the turn's remaining audio is only trailing silence), awaited if still running; only when the
turn holds audio no pass has seen is there a final pass. Since a pause starts a pass at once and the VAD waits
``min_silence_ms`` before ending the turn, the final text is usually ready when the turn ends or soon after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from nodes.listen.backends import SAMPLE_RATE, Transcript

logger = logging.getLogger(__name__)

TRAILING_TOLERANCE_S = 0.5  # audio beyond the offered part that the final chunk may add (the VAD's trailing pad)

PassFn = Callable[[np.ndarray], Awaitable[Transcript]]


@dataclass(frozen=True)
class TurnResult:
    transcript: Transcript
    reused: bool  # the final text came from an incremental pass (no final pass was needed)
    passes: int  # transcription passes run for this turn, the final one included
    wait_seconds: float  # from ``finish`` being called to the final text


class IncrementalTurn:
    """Transcribes one turn as its audio is offered. Use from one event loop."""

    def __init__(self, run_pass: PassFn, on_partial: Callable[[Transcript], None] | None = None,
                 final_pass: PassFn | None = None) -> None:
        """``run_pass`` transcribes the turn so far while it is spoken; ``final_pass`` (default: the same) the
        whole turn when no incremental pass covered it."""
        self._run_pass = run_pass
        self._final_pass = final_pass or run_pass
        self._on_partial = on_partial
        self._chunks: list[np.ndarray] = []
        self._offered = 0  # samples offered so far
        self._task: asyncio.Task[Transcript] | None = None
        self._task_covers = 0
        self._best: tuple[int, Transcript] | None = None  # (samples covered, result) of the latest finished pass
        self._again = False
        self.passes = 0

    @property
    def offered(self) -> int:
        return self._offered

    def offer(self, samples: np.ndarray, transcribe: bool = True) -> None:
        """More audio of the turn in progress: transcribe the buffer now, or right after the running pass.

        With ``transcribe=False`` the audio is only kept (for a stream that ends without a final chunk).
        """
        if len(samples) == 0:
            return
        self._chunks.append(np.asarray(samples, dtype=np.float32))
        if not transcribe:
            return
        self._offered += len(samples)
        if self._task is None:
            self._start()
        else:
            self._again = True

    def _start(self) -> None:
        audio = np.concatenate(self._chunks)
        self._chunks = [audio]
        self._task_covers = len(audio)
        self._again = False
        self.passes += 1
        self._task = asyncio.ensure_future(self._run_pass(audio))
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Transcript]) -> None:
        if task is not self._task:
            return
        self._task = None
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.warning("incremental pass failed: %s", task.exception())
            return
        result = task.result()
        if self._best is None or self._task_covers >= self._best[0]:
            self._best = (self._task_covers, result)
            if self._on_partial is not None:
                self._on_partial(result)
        if self._again and self._offered > self._task_covers:
            self._start()

    async def finish(self, turn: np.ndarray | None = None) -> TurnResult:
        """The final transcript of the turn; ``turn`` is the whole turn's audio (default: everything offered)."""
        t0 = time.perf_counter()
        if turn is None:
            turn = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        extra = len(turn) - self._offered
        covers_all = self._offered > 0 and 0 <= extra <= TRAILING_TOLERANCE_S * SAMPLE_RATE
        self._again = False  # no more periodic passes: the turn is over
        if covers_all and self._task is not None and self._task_covers == self._offered:
            try:
                result = await asyncio.shield(self._task)
                return TurnResult(result, True, self.passes, time.perf_counter() - t0)
            except Exception:  # the pass failed: fall through to a final pass
                pass
        if covers_all and self._best is not None and self._best[0] == self._offered:
            return TurnResult(self._best[1], True, self.passes, time.perf_counter() - t0)
        if self._task is not None:  # a pass over older audio is running: it would only delay the final pass
            try:
                await asyncio.shield(self._task)
            except Exception:
                pass
        self.passes += 1
        result = await self._final_pass(turn)
        return TurnResult(result, False, self.passes, time.perf_counter() - t0)

    def latest(self) -> TurnResult | None:
        """The most recent finished incremental transcript (None when no pass has finished yet)."""
        if self._best is None:
            return None
        return TurnResult(self._best[1], True, self.passes, 0.0)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
