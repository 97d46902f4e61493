"""``comfy_api.latest``: ``ComfyAPI`` (async) / ``ComfyAPISync``, ``ComfyExtension``, and the V3 ``io``/``ui``.

``ComfyAPI().execution.set_progress(value, max_value)`` reports progress on the node running in the
caller's context (or ``node_id``), with an optional preview image (a PIL image or an ``[B,H,W,C]`` tensor).
"""

from __future__ import annotations

import io as _bytes_io
from abc import ABC, abstractmethod
from typing import Any

from engine.comfy.shims.comfy_api.latest import _io as io
from engine.comfy.shims.comfy_api.latest import _ui as ui
from engine.comfy.shims.runtime import current_context

comfy_io = io


def _report_progress(value: float, max_value: float, node_id: str | None, preview_image: Any) -> None:
    ctx = current_context()
    if ctx is None:
        raise ValueError("set_progress called outside a running node: pass node_id from inside a node")
    if node_id is not None and str(node_id) != ctx.node_id:
        pass  # ComfyUI routes it to node_id; here progress always belongs to the node that is running
    ctx.progress(value, max_value)
    if preview_image is not None:
        ctx.preview("jpeg", _jpeg(preview_image))


def _jpeg(image: Any) -> bytes:
    from PIL import Image
    if not isinstance(image, Image.Image):  # an IMAGE tensor [B, H, W, C] or [H, W, C] in 0..1
        import numpy as np
        array = image[0] if len(image.shape) == 4 else image
        image = Image.fromarray((array.detach().cpu().numpy().clip(0, 1) * 255).astype(np.uint8))
    buffer = _bytes_io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class ComfyAPI_latest:  # noqa: N801 (ComfyUI's name)
    VERSION = "latest"
    STABLE = False

    class Execution:
        async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                               preview_image: Any = None, ignore_size_limit: bool = False) -> None:
            _report_progress(value, max_value, node_id, preview_image)

    def __init__(self) -> None:
        self.execution = self.Execution()


class ComfyAPISyncLatest:
    """The same API for plain (blocking) node code."""

    VERSION = "latest"

    class Execution:
        def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                         preview_image: Any = None, ignore_size_limit: bool = False) -> None:
            _report_progress(value, max_value, node_id, preview_image)

    def __init__(self) -> None:
        self.execution = self.Execution()


ComfyAPI = ComfyAPI_latest
ComfyAPISync = ComfyAPISyncLatest


class ComfyExtension(ABC):
    """What a V3 pack's ``comfy_entrypoint()`` returns: its node classes (``get_node_list``)."""

    async def on_load(self) -> None:
        """Called once when the pack loads."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        ...


class Input:
    """Types packs annotate with (values are plain tensors / dicts here)."""
    Image = Any
    Audio = Any
    Mask = Any
    Latent = Any
    Video = Any


class InputImpl:
    pass


class Types:
    pass


__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "InputImpl", "Types", "ComfyExtension", "io", "comfy_io", "ui"]
