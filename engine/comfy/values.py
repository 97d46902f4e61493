"""Our values as ComfyUI packs expect them, on the inputs of adapted V1/V3 nodes.

IMAGE: our ``(H, W, 3)`` uint8 array becomes ComfyUI's tensor ``[1, H, W, 3]`` of floats in 0..1 (a batch of
arrays ``(B, H, W, 3)`` likewise); MASK: ``(H, W)`` becomes ``[1, H, W]``; AUDIO: our mono ``Audio`` (anything
with ``samples`` and ``sample_rate``) becomes ``{"waveform": [1, 1, S], "sample_rate"}``. ComfyUI's own values
pass through unchanged, so packs feeding packs see exactly what they produced.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_comfy(type_name: str, value: Any) -> Any:
    """``value`` in ComfyUI's form for an input of ``type_name`` (unchanged when already so, or not ours)."""
    if type_name == "IMAGE" and isinstance(value, np.ndarray) and value.ndim in (3, 4) and value.shape[-1] in (1, 3, 4):
        return _tensor(value if value.ndim == 4 else value[None])
    if type_name == "MASK" and isinstance(value, np.ndarray) and value.ndim in (2, 3):
        return _tensor(value if value.ndim == 3 else value[None])
    if type_name == "AUDIO" and not isinstance(value, dict) and hasattr(value, "samples") \
            and hasattr(value, "sample_rate"):
        import torch

        samples = np.asarray(value.samples, dtype=np.float32)
        wave = samples[None, None] if samples.ndim == 1 else samples[None]
        return {"waveform": torch.from_numpy(np.ascontiguousarray(wave)), "sample_rate": int(value.sample_rate)}
    return value


def _tensor(array: np.ndarray) -> Any:
    import torch

    scaled = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled))
