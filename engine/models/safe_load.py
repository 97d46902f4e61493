"""Loading model weights without ever unpickling arbitrary code, and hashing weight files.

* ``load_state_dict(path)``: ``.safetensors`` through safetensors, anything else through
  ``torch.load(path, map_location="cpu", weights_only=True)``. A checkpoint that needs unsafe pickles
  (custom classes, functions) is refused with ``UnsafeCheckpoint``, which names the file and says how to
  convert it.
* ``convert_trusted_checkpoint(src, dst)``: the one explicit escape hatch. A *user* runs it on a file they
  trust (``python -m engine.models.safe_load convert SRC DST``); it unpickles once and writes plain tensors.
  No loader in AvatarGraph calls it.
* ``sha256_file(path, progress=False)``: streaming sha256, used by the model store.

torch and safetensors are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 4 * 1024 * 1024
CONVERT_COMMAND = "python -m engine.models.safe_load convert"


class UnsafeCheckpoint(ValueError):
    """A checkpoint can only be read by unpickling code objects or custom classes."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"{path} cannot be loaded safely: it needs unpickling beyond plain tensors and containers "
            f"({detail}). AvatarGraph never unpickles arbitrary code. If you trust this file, convert it "
            f"once to plain weights with `{CONVERT_COMMAND} {path} {path.with_suffix('.safetensors')}` "
            f"and point the node at the converted file (or replace the original with it).")


class NotAStateDict(ValueError):
    """The file loaded, but its top level is not a ``{name: tensor}`` mapping."""


def sha256_file(path: Path | str, progress: bool = False) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks; ``progress`` shows a tqdm bar over bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    total = path.stat().st_size
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {path.name}",
                   leave=False)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest()


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> Any:
    """Load whatever a checkpoint holds (nested dicts/lists of tensors and plain values), safely.

    ``.safetensors`` files give a flat ``{name: tensor}`` dict; other files go through
    ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        from safetensors import SafetensorError
        try:
            return load_file(str(path), device=map_location)
        except SafetensorError as exc:
            raise ValueError(f"{path} is not a valid safetensors file: {exc}") from exc
    import torch
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpoint(path, _first_line(str(exc))) from exc


def load_state_dict(path: Path | str, key: str | None = None, map_location: str = "cpu") -> dict[str, Any]:
    """A ``{parameter name: tensor}`` dict from ``path``, loaded without unpickling code.

    ``key`` picks a nested state dict (``"model"`` in XTTS' ``model.pth``, ``"state_dict"`` in Wav2Lip
    checkpoints). Without ``key`` the top level must already be a mapping of tensors.
    """
    import torch

    path = Path(path)
    obj = load_checkpoint(path, map_location=map_location)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise NotAStateDict(f"{path} has no top-level key {key!r} (found: {found})")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise NotAStateDict(f"{path} holds a {type(obj).__name__}, not a state dict")
    not_tensors = [name for name, value in obj.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(repr(name) for name in not_tensors[:8])
        raise NotAStateDict(f"{path} is not a flat state dict: entries {shown} are not tensors; pass key= "
                            f"to pick the nested state dict (top-level keys: {sorted(obj)[:12]})")
    return dict(obj)


def convert_trusted_checkpoint(src: Path | str, dst: Path | str, key: str | None = None) -> int:
    """Unpickle a checkpoint the user trusts (full pickle!) and save its tensors in a safe format.

    ``dst`` ending in ``.safetensors`` gets a flat safetensors file (nested dicts are flattened with
    ``.``-joined names unless ``key`` picks the state dict); any other suffix gets a weights-only
    loadable ``torch.save`` of plain containers. Returns the number of tensors written.
    """
    import torch

    src, dst = Path(src), Path(dst)
    log.warning("unpickling %s with full pickle because the user asked to convert it", src)
    obj = torch.load(src, map_location="cpu", weights_only=False)  # explicit, user-requested conversion
    if key is not None:
        obj = obj[key]
    plain = _to_plain(obj)
    tensors = _flatten_tensors(plain)
    if dst.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({name: t.contiguous() for name, t in tensors.items()}, str(dst))
    else:
        torch.save(plain, dst)
    # prove the result loads safely before declaring success
    load_checkpoint(dst)
    return len(tensors)


def _to_plain(obj: Any) -> Any:
    """Keep tensors, numbers, strings and containers; turn other objects into their ``__dict__``."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return _to_plain(obj.state_dict())
    if hasattr(obj, "__dict__"):
        return _to_plain(vars(obj))
    return repr(obj)


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_flatten_tensors(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("Weights only load failed"):
            return line
    return text.strip().splitlines()[0] if text.strip() else "unpickling refused"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.models.safe_load",
                                     description="Inspect or convert model checkpoints safely.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="unpickle a checkpoint YOU TRUST and write safe weights")
    conv.add_argument("src", type=Path)
    conv.add_argument("dst", type=Path, help="*.safetensors (flat) or *.pth (weights-only loadable)")
    conv.add_argument("--key", help="nested state dict to keep, e.g. model or state_dict")
    check = sub.add_parser("check", help="load a checkpoint the safe way and report what it holds")
    check.add_argument("path", type=Path)
    sha = sub.add_parser("sha256", help="print a file's sha256")
    sha.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.command == "convert":
        count = convert_trusted_checkpoint(args.src, args.dst, key=args.key)
        sys.stdout.write(f"wrote {count} tensors to {args.dst}\n")
        return 0
    if args.command == "check":
        try:
            obj = load_checkpoint(args.path)
        except UnsafeCheckpoint as exc:
            sys.stdout.write(f"UNSAFE: {exc}\n")
            return 1
        sys.stdout.write(f"ok: {len(_flatten_tensors(obj))} tensors\n")
        return 0
    sys.stdout.write(f"{sha256_file(args.path, progress=True)}  {args.path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
