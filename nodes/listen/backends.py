"""Whisper backends behind one interface: faster-whisper (CTranslate2) and openai-whisper (PyTorch).

``backend.transcribe(samples, languages, prior=...)`` transcribes 16 kHz mono float32 audio. ``languages`` is one
code (fixed language) or several: the language is then chosen by ``language.choose_transcript`` from the detector's
probabilities of the same encoder pass, the conversation's language so far (``prior``) and the plausibility of the
decoded text, re-decoding in the other language when the first transcript is improbable.
Audio up to 30 s is one window: with ``fit_window`` the encoder sees only the audio plus a margin instead
of Whisper's fixed 30 s, which makes a short turn several times cheaper (CTranslate2 and our openai-whisper encoder
call both accept shorter inputs). Longer audio goes through the library's own long-form transcription.
A backend runs one transcription at a time (a lock), so incremental passes and final passes never overlap.
Passes decode with beam search (``BEAM``; incremental passes too: in live use the pass that ran at the turn's
closing pause usually *is* the final transcript); a noisy turn is cleaned by ``denoise.suppress_noise`` first
(clean turns pass through untouched).
"""

from __future__ import annotations

import copy
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from nodes.listen.language import Decoded, choose_transcript

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160  # samples per mel frame
WINDOW_SECONDS = 30
MAX_FRAMES = WINDOW_SECONDS * SAMPLE_RATE // HOP  # 3000
FIT_MARGIN_FRAMES = 300  # three seconds of padding after the audio (less makes the decoder loop)
FIT_STEP_FRAMES = 200  # window sizes are rounded up to 2 s steps
NO_SPEECH_PROB = 0.6  # Whisper's own no-speech rule: no_speech_prob above this ...
LOGPROB_FLOOR = -1.0  # ... and an average log-probability below this means "no speech"
MAX_COMPRESSION = 2.4  # Whisper's own test for repetitive output (gzip ratio of the text)
FIT_TOKENS_PER_SECOND = 15  # a fitted window may emit at most this many tokens per second of audio (+ 20)
BACKENDS = ("faster-whisper", "openai-whisper")
BEAM = 5  # beam width of every pass: Russian in noise 22 -> 14 % WER; ~17 % more CPU per pass than greedy


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_prob: float  # probability of ``language`` within the allowed set (1.0 when fixed)
    no_speech_prob: float
    avg_logprob: float
    audio_seconds: float
    compute_seconds: float
    decodes: int = 1  # languages decoded to choose this transcript
    reason: str = ""  # how the language was chosen (see ``language.choose_transcript``)
    plausible: bool = True  # the text is plausible in its language (see ``language.plausibility``)


class WhisperBackend(Protocol):
    name: str

    def transcribe(self, samples: np.ndarray, languages: Sequence[str], fit_window: bool = True,
                   prior: str | None = None, quick: bool = False) -> Transcript: ...


def window_frames(n_samples: int, fit_window: bool) -> int:
    """Mel frames the encoder sees for ``n_samples`` of audio (even, at most 3000)."""
    if not fit_window:
        return MAX_FRAMES
    frames = n_samples // HOP + FIT_MARGIN_FRAMES
    return min(MAX_FRAMES, int(math.ceil(frames / FIT_STEP_FRAMES) * FIT_STEP_FRAMES))


def _pick_language(probs: dict[str, float], languages: Sequence[str],
                   prior: str | None = None) -> tuple[str, float]:
    """For long-form audio (one detection, no re-decoding): the conversation's language unless the detector is
    nearly sure of another."""
    allowed = {lang: probs.get(lang, 0.0) for lang in languages}
    total = sum(allowed.values())
    best = max(allowed, key=allowed.__getitem__)
    if prior in allowed and total > 0 and allowed[best] / total < 0.9:
        best = prior
    return best, (allowed[best] / total if total > 0 else 1.0 / len(allowed))


def compression_ratio(text: str) -> float:
    import zlib

    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _fit_token_budget(n_samples: int) -> int:
    return min(224, int(FIT_TOKENS_PER_SECOND * n_samples / SAMPLE_RATE) + 20)


def _looped(text: str, n_tokens: int, budget: int) -> bool:
    """A fitted window's decode that hit its token budget or repeats itself: redo it on the full 30 s window."""
    return n_tokens >= budget or compression_ratio(text) > MAX_COMPRESSION


def _word_key(word: str) -> str:
    return "".join(ch for ch in word.lower().replace("ё", "е") if ch.isalnum())


def cut_trailing_loop(text: str, min_words: int = 3) -> str | None:
    """When ``text`` ends by repeating a phrase of at least ``min_words`` words back to back ("X. X. X"), the text
    up to the end of its first occurrence; None when there is no such loop.

    A short decoder window sometimes makes Whisper start over after the last word; real speech almost never
    repeats a whole phrase immediately and to the very end.
    """
    words = text.split()
    keys = [_word_key(w) for w in words]
    n = len(keys)
    for period in range(min_words, n // 2 + 1):
        for start in range(0, n - 2 * period + 1):
            if keys[start:start + period] != keys[start + period:start + 2 * period]:
                continue
            tail = keys[start + period:]
            block = keys[start:start + period]
            if all(k == block[i % period] for i, k in enumerate(tail)):  # the loop runs to the end
                return " ".join(words[:start + period])
    return None


_SENTENCE = re.compile(r"[^.!?…]+[.!?…]*")


def cut_repeated_sentence(text: str) -> str | None:
    """When ``text`` is one short sentence said over again ("Hi there. Hi there."), that sentence once; None
    otherwise. A short decoder window makes Whisper do this on short turns (too short a phrase for
    ``cut_trailing_loop``), and the LLM then reads the person's greeting twice."""
    sentences = [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]
    if len(sentences) < 2:
        return _doubled_phrase(text)
    keys = [" ".join(_word_key(w) for w in s.split()) for s in sentences]
    if keys[0] and all(k == keys[0] for k in keys):
        return sentences[0]
    return None


def _doubled_phrase(text: str, min_words: int = 2) -> str | None:
    """The same without punctuation between the copies: "Good evening Good evening" (beam search does this on a
    one-second greeting) -> "Good evening"; phrases of ``min_words`` or more only ("bye bye" stays)."""
    words = text.split()
    keys = [_word_key(w) for w in words]
    for period in range(min_words, len(words) // 2 + 1):
        if len(words) % period == 0 and all(k == keys[i % period] for i, k in enumerate(keys)) and keys[0]:
            return " ".join(words[:period]).rstrip(",;:")
    return None


MAX_WORDS_PER_SECOND = 6.0  # faster than any real speech: the decoder is looping


def _repeats_phrase(text: str, min_words: int = 3) -> bool:
    """True when some phrase of ``min_words`` or more words is immediately repeated ("X Y Z X Y Z")."""
    keys = [_word_key(w) for w in text.split()]
    n = len(keys)
    return any(keys[i:i + p] == keys[i + p:i + 2 * p]
               for p in range(min_words, n // 2 + 1) for i in range(0, n - 2 * p + 1))


def check_fitted(text: str, n_tokens: int, budget: int, seconds: float) -> str | None:
    """The text of a short-window decode, with a trailing loop cut off; None when it must be redone on the full
    30 s window (it hit its token budget, repeats a phrase back to back, or is faster than speech can be)."""
    cut = cut_trailing_loop(text)
    if cut is not None:
        return cut
    once = cut_repeated_sentence(text)
    if once is not None:
        return once
    too_fast = len(text.split()) > MAX_WORDS_PER_SECOND * max(seconds, 1.0)
    if _looped(text, n_tokens, budget) or _repeats_phrase(text) or too_fast:
        return None
    return text


def _is_no_speech(no_speech_prob: float, avg_logprob: float) -> bool:
    return no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR


def _check(samples: np.ndarray, languages: Sequence[str]) -> np.ndarray:
    if not languages:
        raise ValueError("at least one language is needed (a fixed code such as 'en', or a set to detect within)")
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(samples)):
        raise ValueError("audio contains NaN or infinite samples")
    return samples


def _transcript(choice: object) -> Transcript:
    d: Decoded = choice.decoded  # type: ignore[attr-defined]
    text = "" if _is_no_speech(d.no_speech_prob, d.avg_logprob) else (cut_repeated_sentence(d.text) or d.text)
    return Transcript(text, d.language, choice.language_prob, d.no_speech_prob, d.avg_logprob,  # type: ignore
                      0.0, 0.0, choice.decodes, choice.reason, choice.plausible)  # type: ignore[attr-defined]


def _cleaned(samples: np.ndarray, denoise: bool) -> np.ndarray:
    if not denoise:
        return samples
    from nodes.listen.denoise import suppress_noise

    return suppress_noise(samples, SAMPLE_RATE)


def _empty(languages: Sequence[str]) -> Transcript:
    return Transcript("", languages[0], 1.0 if len(languages) == 1 else 0.0, 1.0, 0.0, 0.0, 0.0)


class FasterWhisperBackend:
    """faster-whisper / CTranslate2: int8 on CPU, float16 on CUDA."""

    name = "faster-whisper"

    def __init__(self, model_dir: Path, device: str = "cpu", compute_type: str | None = None,
                 cpu_threads: int = 0, beam_size: int = BEAM, denoise: bool = True) -> None:
        """``beam_size``: 1 decodes greedily; ``denoise``: suppress the noise of noisy turns before the encoder
        (``denoise.suppress_noise``)."""
        from faster_whisper import WhisperModel

        self.device = "cuda" if device.startswith("cuda") and device != "cuda-sim" else "cpu"
        self.compute_type = compute_type or ("float16" if self.device == "cuda" else "int8")
        self.beam_size = beam_size
        self.denoise = denoise
        self.model = WhisperModel(str(model_dir), device=self.device, compute_type=self.compute_type,
                                  cpu_threads=cpu_threads, local_files_only=True)
        self._lock = threading.Lock()
        self._tokenizers: dict[str, object] = {}

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        tok = self._tokenizers.get(language)
        if tok is None:
            tok = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe",
                            language=language)
            self._tokenizers[language] = tok
        return tok

    def transcribe(self, samples: np.ndarray, languages: Sequence[str], fit_window: bool = True,
                   prior: str | None = None, quick: bool = False) -> Transcript:
        """``quick`` (incremental passes): a short-window decode that loops is cut, never redone on the full
        30 s window (which costs a whole encoder pass); only the favourite language's final decode may be."""
        samples = _check(samples, languages)
        if len(samples) < HOP:
            return _empty(languages)
        with self._lock:
            t0 = time.perf_counter()
            samples = _cleaned(samples, self.denoise)
            if len(samples) > MAX_FRAMES * HOP:
                result = self._long_form(samples, languages, prior)
            else:
                result = self._one_window(samples, languages, fit_window, prior, quick)
            return replace(result, audio_seconds=len(samples) / SAMPLE_RATE, compute_seconds=time.perf_counter() - t0)

    def _encode(self, samples: np.ndarray, frames: int):
        import ctranslate2

        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[:min(len(samples), len(padded))] = samples[:len(padded)]
        features = self.model.feature_extractor(padded, padding=0)[:, :frames]
        if features.shape[1] < frames:
            features = np.pad(features, ((0, 0), (0, frames - features.shape[1])), mode="edge")
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        return self.model.model.encode(storage, to_cpu=False)

    def _probs(self, encoded) -> dict[str, float]:
        pairs = self.model.model.detect_language(encoded)[0]
        return {token[2:-2]: prob for token, prob in pairs}

    def _detect(self, encoded, languages: Sequence[str], prior: str | None = None) -> tuple[str, float]:
        if len(languages) == 1:
            return languages[0], 1.0
        return _pick_language(self._probs(encoded), languages, prior)

    def _one_window(self, samples: np.ndarray, languages: Sequence[str], fit_window: bool,
                    prior: str | None = None, quick: bool = False) -> Transcript:
        frames = window_frames(len(samples), fit_window)
        encoded = self._encode(samples, frames)
        probs = self._probs(encoded) if len(languages) > 1 else None
        full: list[object] = []  # the full-window encoding, made once if the first decode loops
        calls: list[str] = []

        def decode(language: str) -> Decoded:
            calls.append(language)
            first = len(calls) == 1 and not quick
            return self._decode(samples, encoded, frames, language, full if first else None)
        return _transcript(choose_transcript(languages, probs, decode, prior))

    def _decode(self, samples: np.ndarray, encoded, frames: int, language: str,
                full: list[object] | None) -> Decoded:
        from faster_whisper.transcribe import get_suppressed_tokens

        budget = _fit_token_budget(len(samples)) if frames < MAX_FRAMES else 224
        tok = self._tokenizer(language)
        result = self.model.model.generate(
            encoded, [list(tok.sot_sequence) + [tok.no_timestamps]], beam_size=self.beam_size,
            max_length=budget, return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tok, [-1]))[0]
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        text = tok.decode(tokens).strip()
        if frames < MAX_FRAMES:
            checked = check_fitted(text, len(tokens), budget, len(samples) / SAMPLE_RATE)
            if checked is None and full is not None:
                logger.debug("short window looped (%r): redoing on the full window", text[:80])
                if not full:
                    full.append(self._encode(samples, MAX_FRAMES))
                return self._decode(samples, full[0], MAX_FRAMES, language, full)
            text = checked if checked is not None else text  # looped and not redone: judged implausible
        else:  # the full window repeats a short turn too ("Hi there! Hi there!", measured on the Talk benchmark)
            text = cut_repeated_sentence(text) or text
        avg_logprob = float(result.scores[0]) if result.scores else 0.0
        return Decoded(text, language, avg_logprob, float(result.no_speech_prob), len(tokens))

    def _long_form(self, samples: np.ndarray, languages: Sequence[str], prior: str | None = None) -> Transcript:
        language, lang_prob = self._detect(self._encode(samples[:MAX_FRAMES * HOP], MAX_FRAMES), languages, prior)
        segments, _ = self.model.transcribe(samples, language=language, beam_size=self.beam_size,
                                            condition_on_previous_text=False, vad_filter=True)
        parts = [seg for seg in segments]
        text = " ".join(seg.text.strip() for seg in parts if seg.text.strip())
        avg = float(np.mean([seg.avg_logprob for seg in parts])) if parts else 0.0
        nsp = float(np.mean([seg.no_speech_prob for seg in parts])) if parts else 1.0
        return Transcript(text, language, lang_prob, nsp, avg, 0.0, 0.0)


class OpenAIWhisperBackend:
    """openai-whisper on PyTorch, from an openai-whisper checkpoint (ours is converted from the CTranslate2 model)."""

    name = "openai-whisper"

    def __init__(self, checkpoint: Path, device: str = "cpu", beam_size: int = BEAM, cpu_threads: int | None = 1,
                 denoise: bool = True) -> None:
        """``cpu_threads``: torch intra-op threads while this backend runs on the CPU (None: leave torch's setting).

        One thread is the default: on a small shared CPU, two torch threads made a pass several times slower
        (measured 1.1-1.6 s with one thread against 8-10 s with two, load average 10, 2 cores).
        """
        import torch
        import whisper

        self.device = "cuda" if device.startswith("cuda") and device != "cuda-sim" and torch.cuda.is_available() \
            else "cpu"
        self.model = whisper.load_model(str(checkpoint), device=self.device)
        self.model.eval()
        self.beam_size = beam_size
        self.denoise = denoise
        self.cpu_threads = cpu_threads if self.device == "cpu" else None
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, languages: Sequence[str], fit_window: bool = True,
                   prior: str | None = None, quick: bool = False) -> Transcript:
        """``quick`` (incremental passes): a short-window decode that loops is cut, never redone on the full
        30 s window (which costs a whole encoder pass); only the favourite language's final decode may be."""
        import torch

        samples = _check(samples, languages)
        if len(samples) < HOP:
            return _empty(languages)
        with self._lock, torch.inference_mode():
            saved = torch.get_num_threads()
            if self.cpu_threads:
                torch.set_num_threads(self.cpu_threads)  # process-wide in torch: restored below
            try:
                t0 = time.perf_counter()
                samples = _cleaned(samples, self.denoise)
                if len(samples) > MAX_FRAMES * HOP:
                    result = self._long_form(samples, languages, prior)
                else:
                    result = self._one_window(samples, languages, fit_window, prior, quick)
                return replace(result, audio_seconds=len(samples) / SAMPLE_RATE,
                               compute_seconds=time.perf_counter() - t0)
            finally:
                if self.cpu_threads:
                    torch.set_num_threads(saved)

    def _encode(self, samples: np.ndarray, frames: int):
        """Encoder forward over ``frames`` mel frames (openai-whisper's own forward insists on 3000)."""
        import torch
        import torch.nn.functional as F
        import whisper

        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[:min(len(samples), len(padded))] = samples[:len(padded)]
        mel = whisper.log_mel_spectrogram(torch.from_numpy(padded), self.model.dims.n_mels)[:, :frames]
        enc = self.model.encoder
        dtype = enc.conv1.weight.dtype
        x = F.gelu(enc.conv1(mel[None].to(self.device, dtype)))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
        for block in enc.blocks:
            x = block(x)
        features = enc.ln_post(x)
        view = copy.copy(self.model)  # shares every module; only ``dims`` differs (the shorter audio context)
        view.dims = replace(self.model.dims, n_audio_ctx=features.shape[1])
        return view, features

    def _detect(self, view, features, languages: Sequence[str], prior: str | None = None) -> tuple[str, float]:
        if len(languages) == 1:
            return languages[0], 1.0
        _, probs = view.detect_language(features)
        return _pick_language(probs[0], languages, prior)

    def _options(self, language: str):
        import whisper

        return whisper.DecodingOptions(language=language, task="transcribe", without_timestamps=True,
                                       fp16=self.device == "cuda",
                                       beam_size=self.beam_size if self.beam_size > 1 else None)

    def _one_window(self, samples: np.ndarray, languages: Sequence[str], fit_window: bool,
                    prior: str | None = None, quick: bool = False) -> Transcript:
        frames = window_frames(len(samples), fit_window)
        view, features = self._encode(samples, frames)
        probs = None
        if len(languages) > 1:
            _, detected = view.detect_language(features)
            probs = detected[0]
        full: list[tuple[object, object]] = []
        calls: list[str] = []

        def decode(language: str) -> Decoded:
            calls.append(language)
            first = len(calls) == 1 and not quick
            return self._decode(samples, view, features, frames, language, full if first else None)
        return _transcript(choose_transcript(languages, probs, decode, prior))

    def _decode(self, samples: np.ndarray, view, features, frames: int, language: str,
                full: list[tuple[object, object]] | None) -> Decoded:
        import whisper

        budget = _fit_token_budget(len(samples)) if frames < MAX_FRAMES else 224
        result = whisper.decode(view, features, replace(self._options(language), sample_len=budget))[0]
        text = result.text.strip()
        if frames < MAX_FRAMES:
            checked = check_fitted(text, len(result.tokens), budget, len(samples) / SAMPLE_RATE)
            if checked is None and full is not None:
                logger.debug("short window looped (%r): redoing on the full window", text[:80])
                if not full:
                    full.append(self._encode(samples, MAX_FRAMES))
                return self._decode(samples, *full[0], MAX_FRAMES, language, full)
            text = checked if checked is not None else text
        return Decoded(text, language, float(result.avg_logprob), float(result.no_speech_prob), len(result.tokens))

    def _long_form(self, samples: np.ndarray, languages: Sequence[str], prior: str | None = None) -> Transcript:
        import whisper

        view, features = self._encode(samples[:MAX_FRAMES * HOP], MAX_FRAMES)
        language, lang_prob = self._detect(view, features, languages, prior)
        out = whisper.transcribe(self.model, samples, language=language, condition_on_previous_text=False,
                                 fp16=self.device == "cuda", verbose=None)
        segs = out.get("segments", [])
        avg = float(np.mean([s["avg_logprob"] for s in segs])) if segs else 0.0
        nsp = float(np.mean([s["no_speech_prob"] for s in segs])) if segs else 1.0
        return Transcript(out.get("text", "").strip(), language, lang_prob, nsp, avg, 0.0, 0.0)
