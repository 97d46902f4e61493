"""Hearing the user (node classes of ``nodes.listen``): microphone input, voice activity detection and Whisper
speech recognition.

* ``MicInput``: the live session's microphone (PCM16 LE mono 16 kHz frames from ``ctx.session.input_stream("mic")``)
  or an audio file, as 16 kHz mono AUDIO and an AUDIO_STREAM of ~20 ms chunks.
* ``VAD``: Silero VAD cuts an AUDIO_STREAM into user turns. Its output stream carries, per turn, partial chunks
  (``final=False``: new audio of the turn in progress, offered about every second and when a pause begins) and
  then one chunk with the whole turn (``final=True``). Consumers that want whole turns only take ``final`` chunks.
  In a live session it calls ``ctx.session.emit_event("speech_start", {...})`` when speech begins (for barge-in)
  and ``"speech_end"`` when a turn ends.
* ``Whisper``: speech to text with faster-whisper or openai-whisper; AUDIO -> TEXT, or turns -> one TextChunk per
  turn, transcribed incrementally while the user speaks. Its ``language`` is the session's choice (the Talk page's
  auto / Русский / English): a fixed language is the only one decoded; in ``auto`` the first turn's language is
  taken from the detector only with a clear margin, later turns use the conversation's language as the prior, and
  an improbable transcript is decoded again in the other language (``language.choose_transcript``). Every turn
  the VAD closes gets its final transcript within ``FINAL_DEADLINE_S`` (the best incremental transcript when the
  final pass is late). Whisper and the VAD run on threads of their own, so other nodes' blocking work (LLM, TTS,
  face) can never starve them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.graph import types as T
from engine.files.folders import AUDIO_EXTENSIONS, folders
from engine.graph.node import Input, Node, NodeInputError, Output
from nodes.listen import weights
from nodes.common.audio import (AudioDecodeError, StreamResampler, iter_audio, load_audio, pcm16_to_float,
                                probe_duration, resample)
from nodes.io.media import Audio, AudioChunk, TextChunk

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MIC_CHANNEL = "mic"
FILE_CHUNK_MS = 20
MAX_WHOLE_FILE_S = 1800.0  # longer files are only streamed (their AUDIO output would not fit comfortably)
LANGUAGES = ("auto", "ru", "en", "uk", "de", "fr", "es", "it", "pt", "pl", "tr", "nl", "zh", "ja", "ko", "ar")
FINAL_DEADLINE_S = 1.8  # a closed turn's final transcript is never later than this after the VAD closed it
CONVERSATION_LANGUAGE = "listen.language"  # key in session.state: the conversation's language (survives restarts)


def _emit(ctx: Any, event: str, data: dict[str, Any]) -> None:
    if ctx.session is not None:
        ctx.session.emit_event(event, {"node": ctx.node_id, **data})


def _own_thread(ctx: Any, name: str) -> concurrent.futures.ThreadPoolExecutor:
    """A single worker thread kept for this node instance (across runs)."""
    pool = ctx.state.get(f"_thread_{name}")
    if pool is None:
        pool = ctx.state[f"_thread_{name}"] = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"{name}-{ctx.node_id}")
    return pool


async def _on(pool: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Any:
    """``ctx.run_blocking`` on this node's own thread (context variables travel along, as there)."""
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(pool, call)


# --------------------------------------------------------------------------------------------------------------
class MicInput(Node):
    CATEGORY = "avatar/listen"
    DISPLAY_NAME = "Mic Input"
    DESCRIPTION = ("Audio from the live session's microphone (PCM16 16 kHz) or from a file (WAV, MP3, OGG, FLAC; any "
                   "rate and channels), as 16 kHz mono: AUDIO (whole file; not for the live mic or files over 30 "
                   "min) and an AUDIO_STREAM of 20 ms chunks (paced in real time when 'realtime' is on).")
    DETERMINISTIC = False
    INPUTS = (
        Input.combo("source", ["session", "file"], default="session",
                    tooltip="session: the Talk page's microphone; file: an audio file from the input folder"),
        Input.file("file", "audio", lambda: folders.files("input", AUDIO_EXTENSIONS), required=False,
                   tooltip="the audio file to hear (source 'file')"),
        Input.boolean("realtime", default=False, tooltip="file source: deliver the stream at playback speed"),
    )
    OUTPUTS = (Output("audio", T.AUDIO), Output("audio_stream", T.AUDIO_STREAM))

    async def run(self, ctx: Any, source: str = "session", file: str | None = None,
                  realtime: bool = False) -> tuple[Audio | None, AsyncIterator[AudioChunk]]:
        if source == "session":
            if ctx.session is None:
                raise NodeInputError("source", f"MicInput (node {ctx.node_id}): source 'session' needs a live "
                                               "session (open the talk page); for a one-shot run choose source 'file'")
            return None, self._session_stream(ctx)
        if not file:
            raise NodeInputError("file", f"MicInput (node {ctx.node_id}): choose an audio file (source 'file')")
        try:
            path = folders.resolve("input", file)
        except ValueError as exc:
            raise NodeInputError("file", f"MicInput (node {ctx.node_id}): {exc}") from exc
        duration = await ctx.run_blocking(probe_duration, path)
        audio: Audio | None = None
        if duration is None or duration <= MAX_WHOLE_FILE_S:
            try:
                audio = await ctx.run_blocking(load_audio, path, SAMPLE_RATE)
            except AudioDecodeError as exc:
                raise NodeInputError("file", f"MicInput (node {ctx.node_id}): {exc}") from exc
        else:
            logger.info("MicInput %s: %s lasts %.0f s; only the audio_stream output is produced", ctx.node_id,
                        file, duration)
        return audio, self._file_stream(ctx, path, audio, realtime)

    async def _session_stream(self, ctx: Any) -> AsyncIterator[AudioChunk]:
        carry = b""
        position = 0
        async for data in ctx.session.input_stream(MIC_CHANNEL):
            data = carry + bytes(data)
            usable = len(data) - len(data) % 2
            carry = data[usable:]
            if not usable:
                continue
            samples = pcm16_to_float(data[:usable])
            yield AudioChunk(samples=samples, sample_rate=SAMPLE_RATE, start=position / SAMPLE_RATE)
            position += len(samples)

    async def _file_stream(self, ctx: Any, path: Path, audio: Audio | None,
                           realtime: bool) -> AsyncIterator[AudioChunk]:
        step = SAMPLE_RATE * FILE_CHUNK_MS // 1000
        blocks = iter_audio(path, SAMPLE_RATE, chunk_seconds=1.0) if audio is None else None
        position = 0
        began = time.monotonic()
        while True:
            if blocks is not None:
                try:
                    block = await ctx.run_blocking(next, blocks, None)
                except AudioDecodeError as exc:
                    raise NodeInputError("file", f"MicInput (node {ctx.node_id}): {exc}") from exc
                if block is None:
                    return
            else:
                block = audio.samples[position:position + SAMPLE_RATE]
                if not len(block):
                    return
            for i in range(0, len(block), step):
                piece = block[i:i + step]
                if realtime:
                    delay = began + position / SAMPLE_RATE - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                ctx.check_interrupted()
                yield AudioChunk(samples=piece, sample_rate=SAMPLE_RATE, start=position / SAMPLE_RATE,
                                 final=False)
                position += len(piece)


# --------------------------------------------------------------------------------------------------------------
class VAD(Node):
    CATEGORY = "avatar/listen"
    DISPLAY_NAME = "Voice Activity (Silero VAD)"
    DESCRIPTION = ("Cuts an audio stream into user turns with Silero VAD. Per turn: partial chunks (final=False) "
                   "while the user speaks, then one chunk holding the whole turn (final=True). In a live session "
                   "it emits 'speech_start' and 'speech_end' session events.")
    DETERMINISTIC = False
    INPUTS = (
        Input.socket("audio_stream", T.AUDIO_STREAM, tooltip="audio to cut into turns (e.g. Mic Input's stream)"),
        Input.integer("end_silence_ms", default=500, min=100, max=5000, step=50,
                      tooltip="silence that ends a turn"),
        Input.integer("min_speech_ms", default=250, min=30, max=5000, step=10,
                      tooltip="shorter bursts are ignored; speech_start fires once speech lasts this long"),
        Input.number("threshold", default=0.5, min=0.05, max=0.95, step=0.05, tooltip="speech probability"),
        Input.integer("speech_pad_ms", default=200, min=0, max=1000, step=10,
                      tooltip="audio kept before and after the speech of a turn"),
        Input.integer("partial_ms", default=1000, min=0, max=10000, step=100,
                      tooltip="offer the turn in progress this often (0: only final turns)"),
        Input.number("max_turn_s", default=30.0, min=2.0, max=600.0, step=1.0, tooltip="longer turns are split"),
    )
    OUTPUTS = (Output("turns", T.AUDIO_STREAM),)

    async def run(self, ctx: Any, audio_stream: AsyncIterator[AudioChunk], end_silence_ms: int = 500,
                  min_speech_ms: int = 250, threshold: float = 0.5, speech_pad_ms: int = 200,
                  partial_ms: int = 1000, max_turn_s: float = 30.0) -> tuple[AsyncIterator[AudioChunk]]:
        from nodes.listen.vad import SileroVAD, VADConfig, VoiceActivityDetector

        try:
            config = VADConfig(threshold=threshold, min_silence_ms=end_silence_ms, min_speech_ms=min_speech_ms,
                               speech_pad_ms=speech_pad_ms, partial_interval_ms=partial_ms or 1e12,
                               max_turn_s=max_turn_s)
        except ValueError as exc:
            raise NodeInputError("threshold", f"VAD (node {ctx.node_id}): {exc}") from exc
        model = ctx.state.get("silero")
        if model is None:
            model = ctx.state["silero"] = await _on(_own_thread(ctx, "vad"), SileroVAD)
        detector = VoiceActivityDetector(config, model)
        return (self._turns(ctx, audio_stream, detector, partials=partial_ms > 0),)

    async def _turns(self, ctx: Any, stream: AsyncIterator[AudioChunk], detector: Any,
                     partials: bool) -> AsyncIterator[AudioChunk]:
        from nodes.listen.vad import SpeechAudio, SpeechStarted, TurnEnded

        base = ctx.state.get("next_turn", 0)
        resampler = StreamResampler(SAMPLE_RATE)

        def to_16k(chunk: AudioChunk) -> np.ndarray:
            return resampler(chunk.samples, chunk.sample_rate)

        def convert(events: list[Any]) -> list[AudioChunk]:
            out: list[AudioChunk] = []
            for ev in events:
                turn_id = base + ev.turn_id
                ctx.state["next_turn"] = max(ctx.state.get("next_turn", 0), turn_id + 1)
                if isinstance(ev, SpeechStarted):
                    _emit(ctx, "speech_start", {"turn_id": turn_id, "time": ev.time})
                elif isinstance(ev, SpeechAudio):
                    if partials:
                        out.append(AudioChunk(ev.samples, SAMPLE_RATE, start=ev.offset, final=False,
                                              turn_id=turn_id))
                elif isinstance(ev, TurnEnded):
                    _emit(ctx, "speech_end", {"turn_id": turn_id, "start": ev.start, "end": ev.end,
                                              "duration": ev.end - ev.start})
                    out.append(AudioChunk(ev.samples, SAMPLE_RATE, start=0.0, final=True, turn_id=turn_id))
            return out

        async for chunk in stream:
            samples = to_16k(chunk)
            if len(samples) == 0:
                continue
            for item in convert(await _on(_own_thread(ctx, "vad"), detector.push, samples)):
                yield item
        for item in convert(await _on(_own_thread(ctx, "vad"), detector.flush)):
            yield item


# --------------------------------------------------------------------------------------------------------------
def _parse_languages(language: str, detect_among: str) -> tuple[str, ...]:
    if language != "auto":
        return (language,)
    codes = tuple(dict.fromkeys(c.strip().lower() for c in detect_among.replace(";", ",").split(",") if c.strip()))
    return codes


def _backend_spec(backend: str, model: str) -> Any:
    from engine.models.manager import ModelSpec
    from nodes.listen.backends import FasterWhisperBackend, OpenAIWhisperBackend
    from nodes.listen.convert_ct2 import ensure_openai_checkpoint

    found = weights.locate(model)
    if backend == "faster-whisper":
        if not found.has_ct2:
            raise weights.WhisperWeightsMissing(f"Whisper model {model!r} in {found.path} has no CTranslate2 "
                                                f"model.bin; use backend 'openai-whisper' for a .pt checkpoint")
        size = found.ct2_model.stat().st_size

        def load(device: str) -> Any:
            return FasterWhisperBackend(found.path, device=device)
        return ModelSpec(id=f"whisper/{model}/faster-whisper", kind="whisper", size_bytes=size // 2, load=load,
                         inference_bytes=200 * 2**20)

    pts = sorted(found.path.glob("*.pt"))
    size = (found.ct2_model.stat().st_size if found.has_ct2 else pts[0].stat().st_size) * 2

    def load_openai(device: str) -> Any:
        checkpoint = ensure_openai_checkpoint(found.path) if found.has_ct2 or not pts else pts[0]
        return OpenAIWhisperBackend(checkpoint, device=device)
    return ModelSpec(id=f"whisper/{model}/openai-whisper", kind="whisper", size_bytes=size, load=load_openai,
                     inference_bytes=300 * 2**20)


class Whisper(Node):
    CATEGORY = "avatar/listen"
    DISPLAY_NAME = "Whisper Speech To Text"
    DESCRIPTION = ("Speech recognition with Whisper (faster-whisper or openai-whisper). AUDIO -> TEXT; a stream of "
                   "turns (from VAD) -> one TextChunk per turn, transcribed incrementally while the user speaks. "
                   "Language: the session's choice, fixed, or 'auto' = detected among 'detect_among' with the "
                   "conversation's language as the prior; an improbable transcript is re-decoded in the other "
                   "language.")
    DETERMINISTIC = True
    INPUTS = (
        Input.socket("audio", T.AUDIO, required=False, tooltip="a whole recording to transcribe"),
        Input.socket("audio_stream", T.AUDIO_STREAM, required=False,
                     tooltip="turns from the VAD: one transcript per turn"),
        Input.combo("backend", ["faster-whisper", "openai-whisper"], default="faster-whisper",
                    tooltip="faster-whisper (CTranslate2, int8) is faster on a CPU"),
        Input.combo("model", weights.available_models, default=weights.DEFAULT_MODEL,
                    tooltip="a Whisper model folder under models/whisper/"),
        Input.combo("language", list(LANGUAGES), default="auto",
                    tooltip="the session's language (the Talk page sets it): a fixed language is the only one "
                            "heard; auto detects it per turn, keeping the conversation's language unless the "
                            "speech is clearly another"),
        Input.string("detect_among", default="ru,en", tooltip="with language 'auto': the languages to choose from"),
        Input.boolean("incremental", default=True, tooltip="transcribe turns while they are spoken"),
        Input.boolean("short_window", default=True,
                      tooltip="encode only the audio (plus 3 s) instead of Whisper's fixed 30 s window: faster"),
    )
    OUTPUTS = (Output("text", T.TEXT), Output("text_stream", T.TEXT_STREAM))

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        langs = _parse_languages(str(inputs.get("language", "auto")), str(inputs.get("detect_among", "ru,en")))
        if not langs:
            problems.append(("detect_among", "name at least one language code, e.g. 'ru,en'"))
        bad = [c for c in langs if not (2 <= len(c) <= 3 and c.isalpha())]
        if bad:
            problems.append(("detect_among", f"not language codes: {', '.join(bad)} (use e.g. 'ru,en')"))
        return problems

    async def run(self, ctx: Any, audio: Audio | None = None, audio_stream: AsyncIterator[AudioChunk] | None = None,
                  backend: str = "faster-whisper", model: str = weights.DEFAULT_MODEL, language: str = "auto",
                  detect_among: str = "ru,en", incremental: bool = True,
                  short_window: bool = True) -> tuple[str | None, AsyncIterator[TextChunk]]:
        if audio is None and audio_stream is None:
            raise NodeInputError("audio", f"Whisper (node {ctx.node_id}): connect 'audio' (a recording) or "
                                          "'audio_stream' (turns from VAD)")
        languages = _parse_languages(language, detect_among)
        if not languages:
            raise NodeInputError("detect_among", f"Whisper (node {ctx.node_id}): name the languages to detect "
                                                 "among, e.g. 'ru,en'")
        pool = _own_thread(ctx, "whisper")  # passes are serial anyway (the backend's lock)
        try:  # on its own thread too: after a barge-in the restarted graph must hear at once
            spec = await _on(pool, _backend_spec, backend, model)
            engine = await _on(pool, ctx.model, spec)
        except weights.WhisperWeightsMissing as exc:
            raise NodeInputError("model", f"Whisper (node {ctx.node_id}): {exc}") from exc
        conversation = self._conversation(ctx)

        async def run_pass(samples: np.ndarray, quick: bool = False) -> Any:
            prior = conversation.language if conversation.language in languages else None
            return await _on(pool, engine.transcribe, samples, languages, short_window, prior, quick)

        async def quick_pass(samples: np.ndarray) -> Any:  # while the turn is spoken: never a 30 s re-encode
            return await run_pass(samples, True)

        if audio is not None:
            text = await self._one_shot(ctx, audio, run_pass)
            return text, _single(TextChunk(text=text, final=True))
        return None, self._turns(ctx, audio_stream, (quick_pass, run_pass), incremental, conversation)

    @staticmethod
    def _conversation(ctx: Any) -> Any:
        """The conversation's language so far: in the live session's state (it survives graph restarts after a
        barge-in), else in this node's state."""
        from nodes.listen.language import ConversationLanguage

        state = ctx.session.state if ctx.session is not None else ctx.state
        found = state.get(CONVERSATION_LANGUAGE)
        if not isinstance(found, ConversationLanguage):
            found = state[CONVERSATION_LANGUAGE] = ConversationLanguage()
        return found

    async def _one_shot(self, ctx: Any, audio: Audio, run_pass: Any) -> str:
        from nodes.listen.vad import SileroVAD, VoiceActivityDetector

        samples = resample(audio.samples, audio.sample_rate, SAMPLE_RATE)
        if len(samples) == 0:
            return ""
        model = ctx.state.get("silero")
        if model is None:
            model = ctx.state["silero"] = await ctx.run_blocking(SileroVAD)

        def has_speech() -> bool:
            detector = VoiceActivityDetector(model=model)
            for start in range(0, len(samples), SAMPLE_RATE * 10):
                if detector.push(samples[start:start + SAMPLE_RATE * 10]):  # SpeechStarted after min_speech_ms
                    return True
            return bool(detector.flush())

        if not await ctx.run_blocking(has_speech):  # Whisper invents words for silence and noise: skip it
            logger.info("Whisper %s: no speech in %.1f s of audio", ctx.node_id, len(samples) / SAMPLE_RATE)
            return ""
        result = await run_pass(samples)
        return result.text

    async def _turns(self, ctx: Any, stream: AsyncIterator[AudioChunk], passes: tuple[Any, Any],
                     incremental: bool, conversation: Any) -> AsyncIterator[TextChunk]:
        from nodes.listen.incremental import IncrementalTurn

        turns: dict[int, IncrementalTurn] = {}

        def partial_event(turn_id: int) -> Any:
            return lambda r: _emit(ctx, "transcript_partial", {"turn_id": turn_id, "text": r.text,
                                                               "language": r.language})

        async for chunk in stream:
            samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
            if chunk.sample_rate != SAMPLE_RATE:
                samples = resample(samples, chunk.sample_rate, SAMPLE_RATE)
            turn = turns.get(chunk.turn_id)
            if turn is None:
                turn = turns[chunk.turn_id] = IncrementalTurn(passes[0], partial_event(chunk.turn_id),
                                                              final_pass=passes[1])
            if not chunk.final:
                turn.offer(samples, transcribe=incremental)
                continue
            done = await self._final(ctx, turns.pop(chunk.turn_id), samples)
            item = self._emit_turn(ctx, chunk.turn_id, done, conversation)
            if item is not None:
                yield item
        for turn_id, turn in list(turns.items()):  # a stream that ended without a final chunk: its audio is a turn
            done = await self._final(ctx, turn, None)
            item = self._emit_turn(ctx, turn_id, done, conversation)
            if item is not None:
                yield item

    @staticmethod
    async def _final(ctx: Any, turn: Any, samples: np.ndarray | None) -> Any:
        """The turn's final transcript; when the final pass is not done within ``FINAL_DEADLINE_S``, the latest
        incremental transcript (the pass goes on in the background and is dropped)."""
        task = asyncio.ensure_future(turn.finish(samples))
        try:
            return await asyncio.wait_for(asyncio.shield(task), FINAL_DEADLINE_S)
        except asyncio.TimeoutError:
            late = turn.latest()
            if late is None:  # nothing heard yet: the pass is all there is (its decode is bounded)
                logger.warning("Whisper %s: final pass late and no partial transcript; waiting", ctx.node_id)
                return await task
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            logger.warning("Whisper %s: final pass later than %.1f s; using the last partial transcript",
                           ctx.node_id, FINAL_DEADLINE_S)
            return late

    @staticmethod
    def _emit_turn(ctx: Any, turn_id: int, done: Any, conversation: Any) -> TextChunk | None:
        result = done.transcript
        _emit(ctx, "transcript", {"turn_id": turn_id, "text": result.text, "language": result.language,
                                  "language_reason": result.reason, "decodes": result.decodes,
                                  "wait_s": round(done.wait_seconds, 3), "passes": done.passes})
        if not result.text:
            logger.info("Whisper %s: turn %d had no words", ctx.node_id, turn_id)
            return None
        if result.plausible:  # gibberish in every language says nothing about the conversation's language
            conversation.heard(result.language)
        return TextChunk(text=result.text, final=True, turn_id=turn_id)


async def _single(item: Any) -> AsyncIterator[Any]:
    yield item
