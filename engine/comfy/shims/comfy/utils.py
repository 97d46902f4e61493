"""``comfy.utils`` pieces packs use: ProgressBar (reports through the running node's ``ctx.progress``),
``common_upscale`` (resize a ``[B, C, H, W]`` batch, optional centre crop) and ``load_torch_file``."""

from __future__ import annotations

import logging
from typing import Any

from engine.comfy.shims.runtime import current_context

log = logging.getLogger(__name__)

PROGRESS_BAR_ENABLED = True


class ProgressBar:
    """``ProgressBar(total)``; ``update(n)`` adds, ``update_absolute(value, total)`` sets.

    Bound at creation to the node running in the creating thread's context (V1 node code runs through
    ``ctx.run_blocking``, which carries that context); outside a node it counts silently.
    """

    def __init__(self, total: int, node_id: str | None = None):
        self.total = total
        self.current = 0
        self._ctx = current_context()
        if node_id is not None and self._ctx is not None and str(node_id) != self._ctx.node_id:
            log.debug("ProgressBar for node %s created while node %s runs; reporting to the running node",
                      node_id, self._ctx.node_id)

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self._ctx is not None and PROGRESS_BAR_ENABLED:
            self._ctx.progress(self.current, self.total)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)


def common_upscale(samples: Any, width: int, height: int, upscale_method: str, crop: str) -> Any:
    """Resize ``samples`` ([B, C, H, W]) to ``height`` x ``width``; ``crop="center"`` first crops to the
    target aspect ratio. Methods: nearest-exact, bilinear, area, bicubic, lanczos (through Pillow)."""
    import torch
    import torch.nn.functional as F

    if crop == "center":
        old_w, old_h = samples.shape[-1], samples.shape[-2]
        old_aspect = old_w / old_h
        new_aspect = width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        samples = samples.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)
    if upscale_method == "lanczos":
        return _lanczos(samples, width, height)
    if upscale_method not in {"nearest-exact", "nearest", "bilinear", "area", "bicubic"}:
        raise ValueError(f"unknown upscale method {upscale_method!r}: use nearest-exact, bilinear, area, "
                         "bicubic or lanczos")
    kwargs = {"align_corners": False} if upscale_method in {"bilinear", "bicubic"} else {}
    return F.interpolate(samples.to(torch.float32) if not samples.is_floating_point() else samples,
                         size=(height, width), mode=upscale_method, **kwargs)


def _lanczos(samples: Any, width: int, height: int) -> Any:
    import numpy as np
    import torch
    from PIL import Image

    out = []
    for image in samples:
        arr = (image.movedim(0, -1).float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        channels = arr.shape[-1]
        pil = Image.fromarray(arr[..., 0] if channels == 1 else arr)
        resized = np.asarray(pil.resize((width, height), resample=Image.Resampling.LANCZOS), dtype=np.float32)
        if resized.ndim == 2:
            resized = resized[..., None]
        out.append(torch.from_numpy(resized / 255.0).movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype if samples.is_floating_point() else torch.float32)


def load_torch_file(ckpt: str, safe_load: bool = False, device: Any = None, return_metadata: bool = False) -> Any:
    """Load a ``.safetensors`` (needs the safetensors package) or torch checkpoint as a state dict."""
    import torch

    device = device if device is not None else torch.device("cpu")
    metadata = None
    if str(ckpt).lower().endswith((".safetensors", ".sft")):
        try:
            from safetensors import safe_open
        except ImportError as exc:
            raise ImportError(f"loading {ckpt} needs the 'safetensors' package: pip install safetensors") from exc
        sd = {}
        with safe_open(ckpt, framework="pt", device=str(device)) as f:
            for key in f.keys():
                sd[key] = f.get_tensor(key)
            metadata = f.metadata()
    else:
        pl = torch.load(ckpt, map_location=device, weights_only=True)
        sd = pl.get("state_dict", pl) if isinstance(pl, dict) else pl
    return (sd, metadata) if return_metadata else sd
