"""Live-session plumbing: the user's turns (speech transcripts merged with typed messages) and latency marks.

These nodes only make sense inside a live session (``ctx.session``): they number the turns of the
conversation, tell the session's client what was said, and mark when each stage of a reply first produced
something, so that the Talk page and the latency traces can show where the time goes.

Session events they emit (``ctx.session.emit_event``):

* ``user_turn``   ``{turn_id, text, source: "voice" | "text"}`` - a complete user turn went to the persona;
* ``user_partial`` ``{text}`` - a partial transcript of the turn in progress;
* ``turn_mark``   ``{turn_id, stage}`` - the first output of ``stage`` for that turn
  (``llm_first_sentence``, ``tts_first_chunk``);
* ``avatar_sentence`` ``{turn_id, text, final}`` - a sentence of the avatar's reply, as it is spoken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

from engine.graph import types as T
from engine.graph.node import Input, Node, NodeInputError, Output
from nodes.io.media import AudioChunk, TextChunk

log = logging.getLogger(__name__)

TEXT_CHANNEL = "text"  # the session input channel typed messages arrive on (UTF-8 bytes)
TURN_COUNTER = "live.turn"  # key in session.state: the last turn id handed out (survives graph restarts)


def next_turn_id(session: Any) -> int:
    """A new turn id, unique within the session across graph restarts (barge-in)."""
    state = session.state
    state[TURN_COUNTER] = int(state.get(TURN_COUNTER, 0)) + 1
    return state[TURN_COUNTER]


def _emit(ctx: Any, type_: str, data: dict[str, Any]) -> None:
    emit = getattr(ctx.session, "emit_event", None) if ctx.session is not None else None
    if emit is not None:
        emit(type_, {"node": ctx.node_id, **data})


class UserTurns(Node):
    CATEGORY = "avatar/live"
    DISPLAY_NAME = "User Turns"
    DESCRIPTION = ("The user's side of a live conversation: final speech transcripts and messages typed on the Talk "
                   "page, merged in arrival order into one stream of numbered turns for the persona. Partial "
                   "transcripts are shown to the user but not answered.")
    DETERMINISTIC = False
    INPUTS = (
        Input.socket("transcripts", T.TEXT_STREAM, required=False,
                     tooltip="speech recognition output (e.g. Whisper's text_stream)"),
        Input.boolean("typed_text", default=True, tooltip="also take messages typed in the session's client"),
    )
    OUTPUTS = (Output("turns", T.TEXT_STREAM),)

    async def run(self, ctx: Any, transcripts: Any = None, typed_text: bool = True) -> tuple[AsyncIterator[TextChunk]]:
        session = ctx.session
        if session is None:
            raise NodeInputError("typed_text", f"node {self.node_id}: User Turns runs inside a live session (the "
                                               "Talk page); for a one-shot prompt connect the text directly")
        if transcripts is None and not typed_text:
            raise NodeInputError("transcripts", f"node {self.node_id}: connect transcripts or enable typed_text")
        return (self._merge(ctx, session, transcripts, typed_text),)

    async def _merge(self, ctx: Any, session: Any, transcripts: Any, typed_text: bool) -> AsyncIterator[TextChunk]:
        queue: asyncio.Queue[tuple[str, str] | Exception | None] = asyncio.Queue()
        sources = 0

        async def read_transcripts() -> None:
            async for chunk in transcripts:
                text = chunk.text if isinstance(chunk, TextChunk) else str(chunk)
                if isinstance(chunk, TextChunk) and getattr(chunk, "partial", False):
                    _emit(ctx, "user_partial", {"text": text})
                    continue
                await queue.put(("voice", text))

        async def read_typed() -> None:
            async for data in session.input_stream(TEXT_CHANNEL):
                text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else str(data)
                await queue.put(("text", text))

        async def guarded(reader: Any) -> None:
            try:
                await reader()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failing source (e.g. the ASR node broke) fails this node
                await queue.put(exc)
                return
            await queue.put(None)

        readers = []
        if transcripts is not None:
            readers.append(asyncio.create_task(guarded(read_transcripts), name=f"turns-asr-{ctx.node_id}"))
            sources += 1
        if typed_text:
            readers.append(asyncio.create_task(guarded(read_typed), name=f"turns-typed-{ctx.node_id}"))
            sources += 1
        try:
            ended = 0
            while ended < sources:
                item = await queue.get()
                if item is None:
                    ended += 1
                    continue
                if isinstance(item, Exception):
                    raise item
                source, text = item
                text = " ".join(text.split())
                if not text:
                    continue
                turn_id = next_turn_id(session)
                _emit(ctx, "user_turn", {"turn_id": turn_id, "text": text, "source": source})
                yield TextChunk(text, "neutral", True, turn_id)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


class ReplyMarks(Node):
    CATEGORY = "avatar/live"
    DISPLAY_NAME = "Reply Marks"
    DESCRIPTION = ("Pass the persona's sentences through unchanged, telling the live session's client each sentence "
                   "(the avatar's transcript) and when the first sentence of each turn was ready (latency trace).")
    DETERMINISTIC = False
    INPUTS = (Input.socket("sentences", T.TEXT_STREAM,
                           tooltip="the persona's reply, sentence by sentence (LLM Persona's text stream)"),)
    OUTPUTS = (Output("sentences", T.TEXT_STREAM),)

    async def run(self, ctx: Any, sentences: Any) -> tuple[AsyncIterator[Any]]:
        return (self._pass(ctx, sentences),)

    async def _pass(self, ctx: Any, sentences: Any) -> AsyncIterator[Any]:
        seen: set[int] = set()
        async for chunk in sentences:
            turn_id = int(getattr(chunk, "turn_id", 0) or 0)
            text = chunk.text if isinstance(chunk, TextChunk) else str(chunk)
            if turn_id not in seen and text.strip():
                seen.add(turn_id)
                _emit(ctx, "turn_mark", {"turn_id": turn_id, "stage": "llm_first_sentence"})
            if text.strip() or getattr(chunk, "final", False):
                _emit(ctx, "avatar_sentence", {"turn_id": turn_id, "text": text,
                                               "final": bool(getattr(chunk, "final", False))})
            yield chunk


def split_chunk(chunk: AudioChunk, max_seconds: float) -> list[AudioChunk]:
    """``chunk`` as pieces of at most ``max_seconds``; each keeps the utterance-relative phoneme timings and its own
    ``start``, and only the last keeps ``final`` (so a consumer sees the same speech, sooner)."""
    size = max(1, int(round(max_seconds * chunk.sample_rate)))
    if max_seconds <= 0 or len(chunk.samples) <= size:
        return [chunk]
    pieces = []
    for offset in range(0, len(chunk.samples), size):
        last = offset + size >= len(chunk.samples)
        pieces.append(dataclasses.replace(chunk, samples=chunk.samples[offset:offset + size],
                                          start=chunk.start + offset / chunk.sample_rate,
                                          final=chunk.final and last))
    return pieces


class SpeechMarks(Node):
    CATEGORY = "avatar/live"
    DISPLAY_NAME = "Speech Marks"
    DESCRIPTION = ("Pass speech audio through, telling the live session when the first audio of each turn was "
                   "synthesised (latency trace). Long chunks (a TTS often gives a whole sentence at once) are cut "
                   "into pieces of at most max_chunk_ms, so the face animator can start on the first piece.")
    DETERMINISTIC = False
    INPUTS = (Input.socket("audio_stream", T.AUDIO_STREAM,
                           tooltip="the reply's speech as it is synthesised (TTS's audio stream)"),
              Input.integer("max_chunk_ms", default=200, min=0, max=10000, step=20,
                            tooltip="0: pass chunks as they are"))
    OUTPUTS = (Output("audio_stream", T.AUDIO_STREAM),)

    async def run(self, ctx: Any, audio_stream: Any, max_chunk_ms: int = 200) -> tuple[AsyncIterator[AudioChunk]]:
        return (self._pass(ctx, audio_stream, max_chunk_ms / 1000),)

    async def _pass(self, ctx: Any, audio_stream: Any, max_seconds: float) -> AsyncIterator[AudioChunk]:
        seen: set[int] = set()
        async for chunk in audio_stream:
            turn_id = int(getattr(chunk, "turn_id", 0) or 0)
            if turn_id not in seen and len(getattr(chunk, "samples", ())):
                seen.add(turn_id)
                _emit(ctx, "turn_mark", {"turn_id": turn_id, "stage": "tts_first_chunk"})
            if isinstance(chunk, AudioChunk):
                for piece in split_chunk(chunk, max_seconds):
                    yield piece
            else:
                yield chunk
