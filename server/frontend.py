"""Where the editor's files come from: the pinned ``comfyui-frontend-package`` (static files of ComfyUI's
frontend), our extension in ``ui/extension`` and the JS folders of enabled node packs, plus the shipped
workflows in ``workflows/`` offered as templates."""

from __future__ import annotations

import importlib.resources
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.files.folders import PROJECT_ROOT

log = logging.getLogger(__name__)

FRONTEND_VERSION = "1.58.1"  # pinned in requirements/server.txt
EMULATED_COMFYUI_VERSION = "0.3.75-emulated"  # the ComfyUI server API we speak (the frontend reads it as semver)
# Settings the editor starts with until the user changes them (``GET /settings`` merges the stored ones over
# these): nothing leaves the machine unless the user turns it on (the release check, the Manager's pack lookups,
# model downloads, API-node pricing), and no first-run tutorial or "what's new" pop-up.
EDITOR_DEFAULT_SETTINGS: dict[str, Any] = {
    "Comfy.Notification.ShowVersionUpdates": False,
    "Comfy.VersionCompatibility.DisableWarnings": True,
    "Comfy.Manager.ShowMissingPacks": False,
    "Comfy.Manager.ShowUpdateAvailablePacks": False,
    "Comfy.ErrorSystem.ShowMissingModels": False,
    "Comfy.NodeBadge.ShowApiPricing": False,
    "Comfy.TutorialCompleted": True,
    "Comfy.InstalledVersion": FRONTEND_VERSION,
    "Comfy.Release.Version": FRONTEND_VERSION,
    "Comfy.Release.Status": "what's new seen",
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,  # templates fitted to the view stay legible (avatar_chat: 12 nodes)
}
EXTENSION_NAME = "avatargraph"
EXTENSION_DIR = PROJECT_ROOT / "ui" / "extension"
WORKFLOWS_DIR = PROJECT_ROOT / "workflows"
RESERVED_EXTENSION_NAMES = frozenset({EXTENSION_NAME, "core"})


@cache
def static_dir() -> Path | None:
    """The frontend's ``static`` folder inside the installed package, or None when it is not installed."""
    try:
        import comfyui_frontend_package
    except ImportError:
        log.warning("comfyui-frontend-package is not installed: the API works, the editor page does not "
                    "(pip install -r requirements/server.txt)")
        return None
    folder = Path(str(importlib.resources.files(comfyui_frontend_package) / "static"))
    installed = getattr(comfyui_frontend_package, "__version__", None)
    if installed and installed != FRONTEND_VERSION:
        log.warning("comfyui-frontend-package %s is installed; AvatarGraph is tested with %s", installed,
                    FRONTEND_VERSION)
    return folder if (folder / "index.html").is_file() else None


def extension_dirs(web_directories: dict[str, str]) -> dict[str, Path]:
    """URL name under ``/extensions/`` -> folder: ours first, then each pack's ``WEB_DIRECTORY``."""
    out = {EXTENSION_NAME: EXTENSION_DIR}
    for name, folder in sorted(web_directories.items()):
        if name in RESERVED_EXTENSION_NAMES:
            log.warning("pack %s: its web directory is not served (the name is reserved)", name)
            continue
        out[name] = Path(folder)
    return out


def extension_urls(web_directories: dict[str, str]) -> list[str]:
    """The JS modules the frontend imports at start (``GET /extensions``)."""
    urls = []
    for name, folder in extension_dirs(web_directories).items():
        if folder.is_dir():
            urls += [f"/extensions/{quote(name)}/{quote(p.relative_to(folder).as_posix())}"
                     for p in sorted(folder.rglob("*.js"))]
    return urls


def template_sources(runtime: Any) -> dict[str, Path]:
    """Folders of workflows offered as templates: ours (``workflows/``), then each loaded pack's
    ``example_workflows/`` (ComfyUI's convention for a pack's templates)."""
    sources = {EXTENSION_NAME: WORKFLOWS_DIR}
    report = getattr(runtime, "pack_report", None)
    for pack in getattr(report, "loaded", []) or []:
        if pack.kind == "folder" and pack.name not in sources:
            folder = Path(pack.source) / "example_workflows"
            if folder.is_dir():
                sources[pack.name] = folder
    return sources


def workflow_templates(sources: dict[str, Path]) -> list[dict[str, Any]]:
    """``[{"source", "name", "file", "format": "ui"|"api", "title", "url"}]`` for every readable workflow."""
    out = []
    for source, folder in sources.items():
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                log.warning("workflow %s is not readable JSON (%s); not offered as a template", path, exc)
                continue
            if not isinstance(data, dict):
                continue
            ui = isinstance(data.get("nodes"), list)
            name = path.name[: -len(".json")]
            title = name.removesuffix(".api").replace("_", " ").capitalize()
            out.append({"source": source, "name": name, "file": path.name, "format": "ui" if ui else "api",
                        "title": title + ("" if ui else " (API)"),
                        "url": f"/api/workflow_templates/{quote(source)}/{quote(path.name)}"})
    out.sort(key=lambda t: (t["source"] != EXTENSION_NAME, t["format"] != "ui", t["name"]))
    return out


def workflow_file(sources: dict[str, Path], source: str, filename: str) -> Path | None:
    """A template file by source and file name, or None (never anything outside the template folders)."""
    folder = sources.get(source)
    if folder is None or "/" in filename or "\\" in filename or filename.startswith(".") \
            or not filename.endswith(".json"):
        return None
    path = folder / filename
    return path if path.is_file() else None
