"""ComfyUI's ``folder_paths`` module for packs, backed by ``engine.files.folders.folders``.

Installed as ``sys.modules["folder_paths"]`` by ``engine.app.packs`` (only when no real module of that name
exists). Directories follow the folder registry live, so ``--data-dir`` / test reconfiguration after
import is seen. ``folder_names_and_paths`` maps a model folder name to ``([paths...], {extensions})``
as in ComfyUI: the default entry of a name is ``models/<name>/`` (ComfyUI's legacy aliases ``clip`` ->
``text_encoders``, ``unet`` -> ``diffusion_models`` included); packs may assign entries or call
``add_model_folder_path``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from engine.files.folders import PROJECT_ROOT, folders

log = logging.getLogger(__name__)

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

# ComfyUI's standard model folders and the extensions each lists.
_STANDARD_FOLDERS: dict[str, set[str]] = {
    "checkpoints": supported_pt_extensions, "configs": {".yaml"}, "loras": supported_pt_extensions,
    "vae": supported_pt_extensions, "text_encoders": supported_pt_extensions,
    "diffusion_models": supported_pt_extensions, "clip_vision": supported_pt_extensions,
    "style_models": supported_pt_extensions, "embeddings": supported_pt_extensions,
    "diffusers": {"folder"}, "vae_approx": supported_pt_extensions,
    "controlnet": supported_pt_extensions, "gligen": supported_pt_extensions,
    "upscale_models": supported_pt_extensions, "hypernetworks": supported_pt_extensions,
    "photomaker": supported_pt_extensions, "classifiers": {""}, "model_patches": supported_pt_extensions,
    "audio_encoders": supported_pt_extensions,
}
_LEGACY_NAMES = {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}


def map_legacy(folder_name: str) -> str:
    return _LEGACY_NAMES.get(folder_name, folder_name)


class _FolderTable(MutableMapping[str, tuple[list[str], set[str]]]):
    """``folder_names_and_paths``: explicit entries (set by packs) over live defaults under models/."""

    def __init__(self) -> None:
        self._explicit: dict[str, tuple[list[str], set[str]]] = {}
        self.custom_nodes_dirs: list[str] = []

    def _default(self, name: str) -> tuple[list[str], set[str]] | None:
        if name == "custom_nodes":
            return (list(self.custom_nodes_dirs) or [str(PROJECT_ROOT / "custom_nodes")], set())
        exts = _STANDARD_FOLDERS.get(name)
        path = folders.models(name)
        if exts is None and not path.is_dir():
            return None
        return ([str(path)], set(exts if exts is not None else supported_pt_extensions))

    def __getitem__(self, name: str) -> tuple[list[str], set[str]]:
        name = map_legacy(name)
        entry = self._explicit.get(name) or self._default(name)
        if entry is None:
            raise KeyError(name)
        return entry

    def __setitem__(self, name: str, value: tuple[list[str], set[str]]) -> None:
        paths, exts = value
        self._explicit[map_legacy(name)] = (list(paths), set(exts))

    def __delitem__(self, name: str) -> None:
        del self._explicit[map_legacy(name)]

    def __iter__(self) -> Iterator[str]:
        names = dict.fromkeys([*_STANDARD_FOLDERS, "custom_nodes", *self._explicit])
        if folders.models_dir.is_dir():
            names.update(dict.fromkeys(sorted(p.name for p in folders.models_dir.iterdir() if p.is_dir())))
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = map_legacy(name)
        return name in self._explicit or self._default(name) is not None


folder_names_and_paths = _FolderTable()


def __getattr__(name: str) -> Any:  # live directory attributes, as module globals in ComfyUI
    live = {
        "base_path": lambda: str(PROJECT_ROOT),
        "models_dir": lambda: str(folders.models_dir),
        "output_directory": get_output_directory,
        "temp_directory": get_temp_directory,
        "input_directory": get_input_directory,
        "user_directory": get_user_directory,
    }
    if name in live:
        return live[name]()
    raise AttributeError(f"module 'folder_paths' has no attribute {name!r}")


def get_output_directory() -> str:
    return str(folders.get("output"))


def get_temp_directory() -> str:
    return str(folders.get("temp"))


def get_input_directory() -> str:
    return str(folders.get("input"))


def get_user_directory() -> str:
    return str(folders.get("user"))


def get_directory_by_type(type_name: str) -> str | None:
    if type_name in ("output", "temp", "input"):
        return str(folders.get(type_name))
    return None


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """Split ComfyUI's ``"file.png [output]"`` annotation into (name, base dir or None)."""
    for tag in ("output", "input", "temp"):
        suffix = f" [{tag}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], str(folders.get(tag))
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name in folder_names_and_paths:
        paths, exts = folder_names_and_paths[folder_name]
        paths = [p for p in paths if p != full_folder_path]
        paths = [full_folder_path, *paths] if is_default else [*paths, full_folder_path]
        folder_names_and_paths[folder_name] = (paths, exts)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """Relative paths of the files below ``directory`` (following links) and the mtime of each folder."""
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or [])
    result: list[str] = []
    dirs: dict[str, float] = {directory: os.path.getmtime(directory)}
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        for file_name in filenames:
            result.append(os.path.relpath(os.path.join(dirpath, file_name), directory))
        for d in subdirs:
            path = os.path.join(dirpath, d)
            try:
                dirs[path] = os.path.getmtime(path)
            except OSError:
                continue
    return result, dirs


def filter_files_extensions(files: list[str], extensions: set[str] | list[str]) -> list[str]:
    exts = {e.lower() for e in extensions}
    return sorted(f for f in files if not exts or os.path.splitext(f)[-1].lower() in exts)


def get_filename_list(folder_name: str) -> list[str]:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return []
    paths, exts = folder_names_and_paths[folder_name]
    found: set[str] = set()
    for path in paths:
        files, _ = recursive_search(path, excluded_dir_names=[".git"])
        found.update(filter_files_extensions(files, exts))
    return sorted(found)


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for path in folder_names_and_paths[folder_name][0]:
        full = os.path.join(path, filename)
        if os.path.isfile(full):
            return full
        if os.path.islink(full):
            log.warning("%s is a broken link to a missing file", full)
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full = get_full_path(folder_name, filename)
    if full is None:
        raise FileNotFoundError(f"model in folder '{folder_name}' with filename '{filename}' not found: "
                                f"put it in one of {get_folder_paths(folder_name) if folder_name in folder_names_and_paths else []}")
    return full


def get_input_subfolders() -> list[str]:
    root = Path(get_input_directory())
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())


def _compute_vars(text: str, width: int, height: int) -> str:
    now = time.localtime()
    for key, value in (("%width%", str(width)), ("%height%", str(height)), ("%year%", str(now.tm_year)),
                       ("%month%", f"{now.tm_mon:02d}"), ("%day%", f"{now.tm_mday:02d}"),
                       ("%hour%", f"{now.tm_hour:02d}"), ("%minute%", f"{now.tm_min:02d}"),
                       ("%second%", f"{now.tm_sec:02d}")):
        text = text.replace(key, value)
    return text


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0,
                        image_height: int = 0) -> tuple[str, str, int, str, str]:
    """``(full_output_folder, filename, counter, subfolder, filename_prefix)`` as in ComfyUI: the counter
    continues after the highest ``<prefix>_NNNNN_`` file already in the folder."""
    if "%" in filename_prefix:
        filename_prefix = _compute_vars(filename_prefix, image_width, image_height)
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    output_dir = os.path.abspath(output_dir)
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        raise ValueError(f"saving outside the output folder is not allowed: prefix {filename_prefix!r} "
                         f"resolves to {os.path.abspath(full_output_folder)}")
    prefix_len = len(filename)
    counter = 0
    try:
        names = os.listdir(full_output_folder)
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        names = []
    for name in names:
        head, rest = name[:prefix_len + 1], name[prefix_len + 1:]
        if os.path.normcase(head[:-1]) != os.path.normcase(filename) or head[-1:] != "_":
            continue
        try:
            counter = max(counter, int(rest.split("_")[0]))
        except ValueError:
            continue
    return full_output_folder, filename, counter + 1, subfolder, filename_prefix
