"""Convert a CTranslate2 Whisper ``model.bin`` into an openai-whisper checkpoint (``{"dims", "model_state_dict"}``).

The CTranslate2 binary (version 6) is read directly: a header (version, spec name, revision), then per variable
its name, shape, dtype id and raw bytes, then aliases. Int8-quantised weights (``<name>_scale`` beside them) are
dequantised. Fused projections are split back: the encoder / decoder self-attention ``linear_0`` holds q, k, v;
the decoder cross-attention ``linear_1`` holds k, v (CTranslate2 stores a zero key bias, openai-whisper has none).

    python -m nodes.listen.convert_ct2 models/whisper/whisper-base   # writes models/whisper/whisper-base/openai.pt
"""

from __future__ import annotations

import argparse
import logging
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # ids in ctranslate2 DataType order
_BFLOAT16_ID = 5


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this converter understands."""


def _read(fh: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    raw = fh.read(size)
    if len(raw) != size:
        raise CT2FormatError(f"truncated CTranslate2 file at byte {fh.tell()}")
    return struct.unpack("<" + fmt, raw)


def _read_string(fh: BinaryIO) -> str:
    (length,) = _read(fh, "H")
    raw = fh.read(length)
    if len(raw) != length:
        raise CT2FormatError("truncated CTranslate2 file in a name")
    return raw[:-1].decode("utf-8")


def read_ct2_variables(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, {variable name: array}) of a CTranslate2 ``model.bin``; aliases resolved."""
    variables: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        (version,) = _read(fh, "I")
        if version < 5 or version > 6:
            raise CT2FormatError(f"{path}: CTranslate2 binary version {version} is not supported (expected 5 or 6)")
        spec = _read_string(fh)
        _read(fh, "I")  # spec revision
        (count,) = _read(fh, "I")
        for _ in range(count):
            name = _read_string(fh)
            (rank,) = _read(fh, "B")
            shape = _read(fh, "I" * rank) if rank else ()
            (dtype_id,) = _read(fh, "B")
            (nbytes,) = _read(fh, "I")
            raw = fh.read(nbytes)
            if len(raw) != nbytes:
                raise CT2FormatError(f"{path}: truncated in variable {name} (the file is incomplete)")
            if dtype_id == _BFLOAT16_ID:
                as_u32 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                array = as_u32.view(np.float32)
            elif 0 <= dtype_id < len(_DTYPES) and _DTYPES[dtype_id] is not None:
                array = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
            else:
                raise CT2FormatError(f"{path}: unknown dtype id {dtype_id} for {name}")
            variables[name] = array.reshape(shape)
        try:
            (n_alias,) = _read(fh, "I")
        except CT2FormatError:
            n_alias = 0
        for _ in range(n_alias):
            alias, target = _read_string(fh), _read_string(fh)
            if target in variables:
                variables[alias] = variables[target]
    if "whisper" not in spec.lower():
        raise CT2FormatError(f"{path}: spec {spec!r} is not a Whisper model")
    return spec, variables


def _weights(variables: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    weight = variables[f"{prefix}/weight"]
    scale = variables.get(f"{prefix}/weight_scale")
    if weight.dtype == np.int8 and scale is not None:
        scale = scale.astype(np.float32)
        return weight.astype(np.float32) / (scale[:, None] if scale.ndim == 1 else scale)
    return weight.astype(np.float32)


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    found = {int(m.group(1)) for n in variables if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    return max(found) + 1 if found else 0


def convert_variables(variables: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """(openai-whisper ``dims``, state dict as float32 numpy arrays) from CTranslate2 Whisper variables."""
    sd: dict[str, np.ndarray] = {}

    def f32(name: str) -> np.ndarray:
        return variables[name].astype(np.float32)

    def linear(src: str, dst: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = _weights(variables, src)
        if bias:
            sd[f"{dst}.bias"] = f32(f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = f32(f"{src}/gamma")
        sd[f"{dst}.bias"] = f32(f"{src}/beta")

    def split_linear(src: str, dsts: tuple[str, ...]) -> None:
        weight = _weights(variables, src)
        bias = f32(f"{src}/bias")
        n = len(dsts)
        for i, (w, b, dst) in enumerate(zip(np.split(weight, n), np.split(bias, n), dsts, strict=True)):
            sd[f"{dst}.weight"] = w
            if not dst.endswith(".key"):  # openai-whisper's key projections have no bias (CT2 stores zeros)
                sd[f"{dst}.bias"] = b
            elif np.abs(b).max(initial=0.0) > 1e-6:
                raise CT2FormatError(f"{src}: the key bias part {i} is not zero; not a Whisper model")

    for i in (1, 2):
        sd[f"encoder.conv{i}.weight"] = _weights(variables, f"encoder/conv{i}")
        sd[f"encoder.conv{i}.bias"] = f32(f"encoder/conv{i}/bias")
    sd["encoder.positional_embedding"] = f32("encoder/position_encodings/encodings")
    n_enc = _count_layers(variables, "encoder")
    for i in range(n_enc):
        s, d = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        split_linear(f"{s}/self_attention/linear_0", (f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"))
        linear(f"{s}/self_attention/linear_1", f"{d}.attn.out")
        norm(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
        linear(f"{s}/ffn/linear_0", f"{d}.mlp.0")
        linear(f"{s}/ffn/linear_1", f"{d}.mlp.2")
        norm(f"{s}/ffn/layer_norm", f"{d}.mlp_ln")
    norm("encoder/layer_norm", "encoder.ln_post")

    sd["decoder.token_embedding.weight"] = _weights(variables, "decoder/embeddings")
    sd["decoder.positional_embedding"] = f32("decoder/position_encodings/encodings")
    n_dec = _count_layers(variables, "decoder")
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        split_linear(f"{s}/self_attention/linear_0", (f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"))
        linear(f"{s}/self_attention/linear_1", f"{d}.attn.out")
        norm(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
        linear(f"{s}/attention/linear_0", f"{d}.cross_attn.query")
        split_linear(f"{s}/attention/linear_1", (f"{d}.cross_attn.key", f"{d}.cross_attn.value"))
        linear(f"{s}/attention/linear_2", f"{d}.cross_attn.out")
        norm(f"{s}/attention/layer_norm", f"{d}.cross_attn_ln")
        linear(f"{s}/ffn/linear_0", f"{d}.mlp.0")
        linear(f"{s}/ffn/linear_1", f"{d}.mlp.2")
        norm(f"{s}/ffn/layer_norm", f"{d}.mlp_ln")
    norm("decoder/layer_norm", "decoder.ln")

    n_state = sd["encoder.conv1.weight"].shape[0]
    dims = {
        "n_mels": int(sd["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(sd["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(n_state),
        "n_audio_head": int(n_state // 64),  # every Whisper size uses 64-dimensional heads
        "n_audio_layer": n_enc,
        "n_vocab": int(sd["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(sd["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(sd["decoder.token_embedding.weight"].shape[1]),
        "n_text_head": int(sd["decoder.token_embedding.weight"].shape[1] // 64),
        "n_text_layer": n_dec,
    }
    return dims, sd


def convert(model_bin: Path, output: Path) -> Path:
    """Convert ``model_bin`` into an openai-whisper checkpoint at ``output`` (written atomically)."""
    import torch

    _, variables = read_ct2_variables(model_bin)
    try:
        dims, state = convert_variables(variables)
    except KeyError as exc:
        raise CT2FormatError(f"{model_bin}: variable {exc} missing; not a complete CTranslate2 Whisper model") from exc
    checkpoint = {"dims": dims, "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)).half()
                                                     for k, v in state.items()}}
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(output.suffix + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(output)
    logger.info("converted %s -> %s (%d tensors, dims %s)", model_bin, output, len(state), dims)
    return output


def ensure_openai_checkpoint(model_dir: Path) -> Path:
    """``model_dir/openai.pt``, converted from ``model_dir/model.bin`` when absent or older than it."""
    output = model_dir / "openai.pt"
    source = model_dir / "model.bin"
    if output.is_file() and (not source.is_file() or output.stat().st_mtime >= source.stat().st_mtime):
        return output
    if not source.is_file():
        raise FileNotFoundError(f"{model_dir} has neither openai.pt nor a CTranslate2 model.bin to convert")
    return convert(source, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="folder with a CTranslate2 Whisper model.bin")
    parser.add_argument("--output", type=Path, default=None, help="default: <model_dir>/openai.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    convert(args.model_dir / "model.bin", args.output or args.model_dir / "openai.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
