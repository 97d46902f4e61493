"""Where ``VideoOut`` writes: the next ``<prefix>_NNNNN_.<ext>`` in the output folder, numbered the way ComfyUI's
savers number files, where the prefix may name a subfolder (``videos/avatar``).

The name is claimed through ``engine.files.output_names``, so processes and hosts sharing the output folder never
pick the same one, the file is written under a private temporary name and published by an atomic rename, and a
re-run of the same prompt (``prompt_id/node_id``) takes over its own earlier name.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.files.folders import UnsafePath, folders
from engine.files.output_names import OutputClaim, OutputNameError, claim_output, next_free_number, output_filename
from engine.graph.node import NodeInputError


def output_directory(prefix: str, extension: str = "mp4") -> tuple[Path, str, str]:
    """(directory, base, subfolder) for ``prefix`` (``avatar`` or ``videos/avatar``), the directory created."""
    prefix = prefix.strip().replace("\\", "/") or "avatar"
    subfolder, _, base = prefix.rpartition("/")
    if not base:
        raise NodeInputError("filename_prefix", f"{prefix!r} names a folder but no file name")
    try:
        probe = folders.resolve("output", f"{base}_00001_.{extension}", subfolder)
    except UnsafePath as exc:
        raise NodeInputError("filename_prefix", f"{exc}: use a plain name such as 'avatar' or 'videos/avatar'") \
            from None
    directory = probe.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NodeInputError("filename_prefix", f"cannot create the output folder {directory}: {exc.strerror}; "
                                                "check its permissions or choose another data directory") from None
    check_writable(directory)
    return directory, base, subfolder


def claim_output_path(prefix: str, key: str | None, extension: str = "mp4") -> tuple[OutputClaim, str]:
    """Claim the next free output name for ``prefix`` (blocking); returns the claim and the subfolder."""
    directory, base, subfolder = output_directory(prefix, extension)
    try:
        return claim_output(directory, base, extension, key=key), subfolder
    except OutputNameError as exc:
        raise NodeInputError("filename_prefix", str(exc)) from None


def next_output_path(prefix: str, extension: str = "mp4") -> tuple[Path, str, str]:
    """(path, filename, subfolder) the next claim for ``prefix`` would take now (a preview; claims nothing)."""
    directory, base, subfolder = output_directory(prefix, extension)
    filename = output_filename(base, next_free_number(directory, base, extension), extension)
    return directory / filename, filename, subfolder


def check_writable(directory: Path) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise NodeInputError("filename_prefix", f"the output folder {directory} is not writable; check its "
                                                "permissions or choose another data directory")
