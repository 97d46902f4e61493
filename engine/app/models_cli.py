"""``python main.py models list|install|verify``: the model catalogue on the command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from engine.models.catalogue import INSTALL_COMMAND, ModelInstallError, ModelMissing, ModelStore, _human_size
from engine.models.manifest import ModelEntry, PackageDataSource, UserSource


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
    header = ("id", "kind", "status", "size", "licence", "source", "folder")
    rows = []
    for entry in store.entries():
        licence = entry.license if len(entry.license) <= 32 else entry.license[:31] + "…"
        folder = (f"{entry.kind}/{entry.id}/" if not isinstance(entry.source, PackageDataSource)
                  else "(in the package)")
        rows.append((entry.id + (" *" if entry.default else ""), entry.kind, store.status(entry.id),
                     _human_size(entry.size_bytes), licence, _source_label(entry), folder))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(f"* installed by `{INSTALL_COMMAND}` with no ids; models folder: {store.models_dir}")
    todo = [store.placement(e.id) for e in store.entries()
            if isinstance(e.source, UserSource) and store.status(e.id) != "installed"]
    if todo:
        lines += ["", "user-supplied models not in place (put the official files, unchanged, here):",
                  *(f"  {line}" for line in todo)]
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
