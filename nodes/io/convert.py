"""Between our values and ComfyUI's: the output nodes take either.

IMAGE is ours as ``np.ndarray`` (H, W, 3) uint8 and ComfyUI's as a tensor [B, H, W, C] of floats in 0..1
(converted as ComfyUI's savers do: ``clip(255 * x).astype(uint8)``, truncating). AUDIO is our ``Audio``
(mono float32) or ComfyUI's ``{"waveform": [B, C, S], "sample_rate"}``. A list value (``ValueList``) gives
its items; an ``ExecutionBlocker`` item is skipped (that branch was switched off).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.graph.flow import ExecutionBlocker
from nodes.io.media import Audio


def _items(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _items(item)
    elif value is not None and not isinstance(value, ExecutionBlocker):
        yield value


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    return np.clip(255.0 * array.astype(np.float32), 0, 255).astype(np.uint8)


def images(value: Any) -> list[np.ndarray]:
    """Every image in ``value`` as (H, W, C) uint8, C being 1, 3 or 4 (a batch gives one per item)."""
    out: list[np.ndarray] = []
    for item in _items(value):
        array = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
        if array.ndim == 2:  # a mask or a grey image
            array = array[..., None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"expected an image (H, W, 3) or a batch [B, H, W, C], got shape {array.shape}")
        out.extend(_to_uint8(frame) for frame in array)
    return out


def image_tensors(value: Any) -> list[Any]:
    """Every image batch in ``value`` as ComfyUI's tensor [B, H, W, C] float (our arrays converted)."""
    import torch

    out = []
    for item in _items(value):
        if isinstance(item, torch.Tensor):
            out.append(item if item.ndim == 4 else item[None])
        else:
            array = np.asarray(item)
            scaled = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
            out.append(torch.from_numpy(scaled if scaled.ndim == 4 else scaled[None]))
    return out


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # float32 (channels, n)
    sample_rate: int


def clips(value: Any) -> list[Clip]:
    """Every audio clip in ``value`` (our Audio, ComfyUI's waveform dict: one clip per batch item)."""
    out: list[Clip] = []
    for item in _items(value):
        if isinstance(item, Audio):
            out.append(Clip(item.samples[None].astype(np.float32), item.sample_rate))
        elif isinstance(item, dict) and "waveform" in item and "sample_rate" in item:
            wave = item["waveform"]
            wave = wave.detach().cpu().float().numpy() if hasattr(wave, "detach") else np.asarray(wave, np.float32)
            if wave.ndim == 1:
                wave = wave[None, None]
            elif wave.ndim == 2:
                wave = wave[None]
            out.extend(Clip(batch.astype(np.float32), int(item["sample_rate"])) for batch in wave)
        else:
            raise ValueError(f"expected audio (Audio or a waveform dict), got {type(item).__name__}")
    return out


def describe(value: Any) -> str:
    """Text for any value, as ComfyUI's PreviewAny shows it: strings as they are, numbers and booleans as
    text, JSON for what serialises, else a short description (arrays and tensors by shape)."""
    import json

    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    if value is None:
        return "None"
    if isinstance(value, ExecutionBlocker):
        return "(blocked)"
    if isinstance(value, Audio):
        return f"audio: {value.duration:.2f} s at {value.sample_rate} Hz"
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(shape)} ({value.dtype})"
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):
        return str(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<{type(value).__name__} {tuple(value.shape)}>"
    raise TypeError(type(value).__name__)
