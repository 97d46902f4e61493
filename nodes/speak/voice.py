"""The VOICE value: who the avatar sounds like.

A ``Voice`` carries what each backend needs to speak as a given person: the (trimmed) reference audio, the
adaptation target statistics for the default voices (``adapt.VoiceTarget``), and, when built against an XTTS
checkpoint, the XTTS speaker conditioning latents. ``sha256`` identifies the reference clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nodes.io.media import Audio


@dataclass(frozen=True)
class XttsLatents:
    """XTTS speaker conditioning: GPT conditioning latents and the HiFi-GAN speaker embedding."""

    checkpoint: str  # the models/xtts/<name> folder the latents were computed with
    gpt_cond_latent: np.ndarray  # float32, shape (1, T, 1024) for XTTS-v2
    speaker_embedding: np.ndarray  # float32, shape (1, 512, 1)


@dataclass(frozen=True)
class Voice:
    name: str
    sha256: str  # of the reference clips, in order
    reference: Audio | None = None  # the cleaned reference speech (mono, 16 kHz)
    target: object | None = None  # adapt.VoiceTarget (kept untyped to avoid importing pyworld here)
    xtts: XttsLatents | None = None

    @property
    def duration(self) -> float:
        return self.reference.duration if self.reference is not None else 0.0
