"""Modules that ComfyUI packs import, provided under ComfyUI's names while packs are loaded.

``install()`` puts ``folder_paths``, ``comfy`` (``model_management``, ``utils``, ``comfy_types``),
``comfy_execution`` (``graph_utils``, ``graph``, ``validation``, ``utils``) and ``comfy_api`` (``latest`` with the
V3 ``io``/``ui`` schema API, ``v0_0_2``, ``v0_0_1``) into ``sys.modules`` only when no real module of that name
can be imported (``install_modules()`` does only that, for tools that build graphs without loading packs), and makes sure ``nodes`` and
``server`` answer what packs ask of them (``NODE_CLASS_MAPPINGS``, ``MAX_RESOLUTION``, ``PromptServer``).
The engine never imports the application's own ``nodes`` / ``server`` packages: when the application has
already imported them (they are in ``sys.modules``), the names are added to those module objects (or their
own exports are pointed at the registry); otherwise a small module of that name is created for the packs.
``engine.app.packs`` calls ``install`` before importing any pack.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.graph.registry import NodeRegistry

log = logging.getLogger(__name__)

_ALIASES = {
    "folder_paths": "engine.comfy.shims.folder_paths",
    "comfy": "engine.comfy.shims.comfy",
    "comfy.model_management": "engine.comfy.shims.comfy.model_management",
    "comfy.utils": "engine.comfy.shims.comfy.utils",
    "comfy.samplers": "engine.comfy.shims.comfy.samplers",
    "comfy.comfy_types": "engine.comfy.shims.comfy.comfy_types",
    "comfy.comfy_types.node_typing": "engine.comfy.shims.comfy.comfy_types.node_typing",
    "comfy_execution": "engine.comfy.shims.comfy_execution",
    "comfy_execution.graph_utils": "engine.comfy.shims.comfy_execution.graph_utils",
    "comfy_execution.graph": "engine.comfy.shims.comfy_execution.graph",
    "comfy_execution.validation": "engine.comfy.shims.comfy_execution.validation",
    "comfy_execution.utils": "engine.comfy.shims.comfy_execution.utils",
    "comfy_api": "engine.comfy.shims.comfy_api",
    "comfy_api.latest": "engine.comfy.shims.comfy_api.latest",
    "comfy_api.latest._io": "engine.comfy.shims.comfy_api.latest._io",
    "comfy_api.latest._ui": "engine.comfy.shims.comfy_api.latest._ui",
    "comfy_api.v0_0_2": "engine.comfy.shims.comfy_api.v0_0_2",
    "comfy_api.v0_0_1": "engine.comfy.shims.comfy_api.v0_0_1",
}

installed: dict[str, str] = {}  # name -> what was done ("alias", "attrs", "module"), for uninstall
_retargeted: list[tuple[Any, NodeRegistry]] = []  # (live view, the registry it showed before install)


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install(registry: NodeRegistry) -> dict[str, str]:
    """Install the shims (idempotent); returns what was done per module name."""
    install_modules()
    _install_nodes(registry)
    _install_server()
    return dict(installed)


def install_modules() -> dict[str, str]:
    """Only the ComfyUI module names (``comfy``, ``comfy_execution``, ``comfy_api``, ``folder_paths``)."""
    for name, target in _ALIASES.items():
        if name in installed:
            continue
        top = name.split(".")[0]
        if top != name:
            if installed.get(top) != "alias":
                continue  # a real ``comfy`` package exists: leave its submodules alone
        elif _importable(name):
            log.info("module %s exists; ComfyUI packs will use it rather than our shim", name)
            continue
        sys.modules[name] = importlib.import_module(target)
        installed[name] = "alias"
    return dict(installed)


def _install_nodes(registry: NodeRegistry) -> None:
    from engine.comfy.adapter import MAX_RESOLUTION
    from engine.comfy.mappings import ComfyClassMappings, ComfyDisplayNameMappings, comfy_mappings_view

    module = _import_or_none("nodes")
    if "nodes" not in installed and module is not None and hasattr(module, "NODE_CLASS_MAPPINGS"):
        # Our nodes package exports the mappings itself: point its live views at the registry packs are
        # loaded into (the same one in the app; a test's own registry in tests; undone by uninstall).
        for attr in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
            view = getattr(module, attr, None)
            if isinstance(view, ComfyClassMappings | ComfyDisplayNameMappings) and view.registry is not registry:
                _retargeted.append((view, view.registry))
                view.registry = registry
        return
    view = comfy_mappings_view(registry)  # (re)bound to the registry packs are loaded into
    if module is None:
        module = types.ModuleType("nodes", "ComfyUI's `nodes` module as packs see it (node mappings).")
        sys.modules["nodes"] = module
        installed["nodes"] = "module"
    else:
        installed.setdefault("nodes", "attrs")
    module.NODE_CLASS_MAPPINGS = view.class_mappings  # type: ignore[attr-defined]
    module.NODE_DISPLAY_NAME_MAPPINGS = view.display_name_mappings  # type: ignore[attr-defined]
    module.EXTENSION_WEB_DIRS = view.web_dirs  # type: ignore[attr-defined]
    if not hasattr(module, "MAX_RESOLUTION"):
        module.MAX_RESOLUTION = MAX_RESOLUTION  # type: ignore[attr-defined]


def _install_server() -> None:
    from engine.comfy.shims.comfy_server import PromptServer

    if "server" in installed:
        return
    module = _import_or_none("server")
    if module is not None and hasattr(module, "PromptServer"):
        return
    if module is None:
        module = types.ModuleType("server", "ComfyUI's `server` module as packs see it (PromptServer).")
        sys.modules["server"] = module
        installed["server"] = "module"
    else:
        installed["server"] = "attrs"
    module.PromptServer = PromptServer  # type: ignore[attr-defined]


def _import_or_none(name: str) -> types.ModuleType | None:
    """The module ``name`` if the application has imported it (never imported from here)."""
    return sys.modules.get(name)


def uninstall() -> None:
    """Undo ``install`` (tests)."""
    while _retargeted:
        view, previous = _retargeted.pop()
        view.registry = previous
    for name, how in list(installed.items()):
        if how in ("alias", "module"):
            sys.modules.pop(name, None)
        elif how == "attrs":
            module = sys.modules.get(name)
            for attr in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "EXTENSION_WEB_DIRS",
                         "PromptServer"):
                if module is not None and hasattr(module, attr):
                    delattr(module, attr)
        del installed[name]
