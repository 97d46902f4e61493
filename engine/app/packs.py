"""Node packs: folders or single ``.py`` files in ``custom_nodes/``, and pip-installed packages that
advertise an entry point (group ``avatargraph.nodes``). Only packs on the allowlist load.

A pack is either native (it defines our ``Node`` subclasses, or lists them in ``NODES``), a ComfyUI V1
pack (``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS`` / ``WEB_DIRECTORY``) or a ComfyUI V3 pack
(``comfy_entrypoint()`` returning an extension whose ``get_node_list()`` names ``io.ComfyNode`` classes), whose
classes are adapted by ``engine.comfy.adapter``. Packs run arbitrary Python with the user's rights, which is why
nothing loads unless enabled (``--enable-pack NAME`` or the settings key ``packs.enabled``; ``*``
enables all). A pack that fails to import is reported with a traceback summary and skipped; the rest
keep working. As in ComfyUI, a pack cannot replace a built-in node, and the pack's parent folder is on
``sys.path``; each pack is imported under its own unique module name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import sys
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.comfy import shims as comfy_shims
from engine.comfy.adapter import ComfyV1Node, adapt_v1_node, current_pack
from engine.graph.node import Node
from engine.graph.registry import NodeRegistry
from engine.graph.validation import run_to_completion

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "avatargraph.nodes"
ENABLE_HINT = "start with --enable-pack {name} or add \"{name}\" to the settings key packs.enabled"


@dataclass
class PackInfo:
    name: str
    source: str  # folder or file path, or "entry point <value> (<distribution>)"
    kind: Literal["folder", "file", "entry_point"]
    status: Literal["loaded", "disabled", "failed"]
    style: Literal["native", "comfy_v1", "comfy_v3", "mixed", "empty"] | None = None
    nodes: list[str] = field(default_factory=list)
    web_directory: str | None = None
    reason: str = ""  # why disabled / failed, in words
    traceback: str = ""  # summary of the import error
    warnings: list[str] = field(default_factory=list)
    load_seconds: float = 0.0


@dataclass
class PackReport:
    packs: list[PackInfo] = field(default_factory=list)

    def by_status(self, status: str) -> list[PackInfo]:
        return [p for p in self.packs if p.status == status]

    @property
    def loaded(self) -> list[PackInfo]:
        return self.by_status("loaded")

    @property
    def failed(self) -> list[PackInfo]:
        return self.by_status("failed")

    @property
    def disabled(self) -> list[PackInfo]:
        return self.by_status("disabled")

    def get(self, name: str) -> PackInfo | None:
        return next((p for p in self.packs if p.name == name), None)

    def summary(self) -> str:
        lines = []
        for p in self.packs:
            if p.status == "loaded":
                lines.append(f"{p.name}: loaded {len(p.nodes)} node(s) ({p.style}) in {p.load_seconds:.2f}s")
            elif p.status == "failed":
                lines.append(f"{p.name}: FAILED: {p.reason}")
            else:
                lines.append(f"{p.name}: disabled ({p.reason})")
            lines.extend(f"  warning: {w}" for w in p.warnings)
        return "\n".join(lines) or "no packs found"


@dataclass(frozen=True)
class _Candidate:
    name: str
    path: Path | None
    kind: Literal["folder", "file", "entry_point"]
    entry_point: importlib.metadata.EntryPoint | None = None

    @property
    def source(self) -> str:
        if self.entry_point is not None:
            dist = getattr(self.entry_point, "dist", None)
            return f"entry point {self.entry_point.value}" + (f" ({dist.name})" if dist is not None else "")
        return str(self.path)


def find_packs(custom_nodes_dir: Path | str | None,
               entry_point_group: str | None = ENTRY_POINT_GROUP) -> tuple[list[_Candidate], list[PackInfo]]:
    """Pack candidates (sorted by name), and entries that are not packs at all (reported as disabled)."""
    candidates: list[_Candidate] = []
    skipped: list[PackInfo] = []
    root = Path(custom_nodes_dir) if custom_nodes_dir is not None else None
    if root is not None and root.is_dir():
        for path in sorted(root.iterdir(), key=lambda p: p.name):
            name = path.name
            if name.startswith((".", "__")) or name == "__pycache__":
                continue
            if name.endswith(".disabled"):
                skipped.append(PackInfo(name[: -len(".disabled")], str(path), "folder" if path.is_dir() else "file",
                                        "disabled", reason="renamed *.disabled: remove the suffix to use it"))
                continue
            if path.is_dir():
                if (path / "__init__.py").is_file():
                    candidates.append(_Candidate(name, path, "folder"))
                elif any(path.glob("*.py")):
                    skipped.append(PackInfo(name, str(path), "folder", "disabled",
                                            reason="folder has no __init__.py, so it is not a pack"))
            elif path.suffix == ".py":
                candidates.append(_Candidate(path.stem, path, "file"))
    if entry_point_group:
        for ep in sorted(importlib.metadata.entry_points(group=entry_point_group), key=lambda e: e.name):
            candidates.append(_Candidate(ep.name, None, "entry_point", ep))
    return candidates, skipped


def _module_name(candidate: _Candidate) -> str:
    digest = hashlib.sha1(candidate.source.encode()).hexdigest()[:8]
    return f"avatargraph_pack_{re.sub(r'[^0-9A-Za-z_]', '_', candidate.name)}_{digest}"


def _import_path(candidate: _Candidate) -> types.ModuleType:
    assert candidate.path is not None
    module_name = _module_name(candidate)
    location = candidate.path / "__init__.py" if candidate.kind == "folder" else candidate.path
    spec = importlib.util.spec_from_file_location(module_name, location)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {location}")
    parent = str(candidate.path.parent.resolve())
    if parent not in sys.path:  # as ComfyUI: packs may import each other / their own top-level name
        sys.path.append(parent)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
            del sys.modules[name]
        raise
    return module


def _traceback_summary(exc: BaseException, limit: int = 4) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "importlib" not in f.filename and not f.filename.endswith("engine/app/packs.py")]
    shown = traceback.format_list(ours[-limit:])
    return "".join(shown) + "".join(traceback.format_exception_only(type(exc), exc))


def _native_classes(module: types.ModuleType) -> list[type[Node]]:
    listed = getattr(module, "NODES", None)
    if listed is not None:
        return list(listed)
    prefix = module.__name__
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, Node) and obj is not Node and not issubclass(obj, ComfyV1Node)
            and (obj.__module__ == prefix or obj.__module__.startswith(prefix + "."))
            and not inspect.isabstract(obj) and not obj.__name__.startswith("_")]


def _register(registry: NodeRegistry, info: PackInfo, cls: type[Node]) -> None:
    existing = registry.origins.get(cls.TYPE)
    if existing == "builtin":
        info.warnings.append(f"node {cls.TYPE} is built in; the pack's version is ignored")
        return
    if existing is not None and existing != info.name:
        info.warnings.append(f"node {cls.TYPE} replaces the one from pack {existing}")
    registry.register(cls, info.name)
    info.nodes.append(cls.TYPE)


def _v3_node_list(entrypoint: Any) -> list[Any]:
    """``comfy_entrypoint()`` (sync or async) -> its extension's ``on_load()`` and ``get_node_list()``."""
    async def collect() -> list[Any]:
        extension = entrypoint()
        if inspect.isawaitable(extension):
            extension = await extension
        loaded = extension.on_load()
        if inspect.isawaitable(loaded):
            await loaded
        nodes = extension.get_node_list()
        return list(await nodes if inspect.isawaitable(nodes) else nodes)
    return run_to_completion(collect())


def _register_module(registry: NodeRegistry, info: PackInfo, module: Any, module_dir: Path | None) -> None:
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None) if isinstance(module, types.ModuleType) else None
    display = dict(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
    native: list[type[Node]] = []
    if isinstance(module, types.ModuleType):
        native = _native_classes(module)
    elif isinstance(module, list | tuple):
        native = list(module)
    elif isinstance(module, dict):
        mappings = module
    styles = set()
    for cls in native:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            info.warnings.append(f"NODES lists {cls!r}, which is not a Node subclass")
            continue
        _register(registry, info, cls)
        styles.add("native")
    for class_type, v1_cls in dict(mappings or {}).items():
        if isinstance(v1_cls, type) and issubclass(v1_cls, Node):
            if v1_cls.TYPE not in info.nodes:
                _register(registry, info, v1_cls)
            styles.add("native")
            continue
        try:
            adapted = adapt_v1_node(str(class_type), v1_cls, display.get(class_type))
        except Exception as exc:
            info.warnings.append(f"node {class_type} skipped: {type(exc).__name__}: {exc}")
            continue
        _register(registry, info, adapted)
        styles.add("comfy_v1")
    entrypoint = getattr(module, "comfy_entrypoint", None) if isinstance(module, types.ModuleType) else None
    if callable(entrypoint):
        for v3_cls in _v3_node_list(entrypoint):  # ComfyUI V3: an extension listing io.ComfyNode classes
            try:
                schema = v3_cls.GET_SCHEMA()
                adapted = adapt_v1_node(schema.node_id, v3_cls, schema.display_name)
            except Exception as exc:
                info.warnings.append(f"node {getattr(v3_cls, '__name__', v3_cls)} skipped: {type(exc).__name__}: {exc}")
                continue
            _register(registry, info, adapted)
            styles.add("comfy_v3")
    info.style = "mixed" if len(styles) > 1 else (styles.pop() if styles else "empty")
    web = getattr(module, "WEB_DIRECTORY", None) if isinstance(module, types.ModuleType) else None
    if web and module_dir is not None:
        web_dir = (module_dir / str(web)).resolve()
        if web_dir.is_dir():
            registry.web_directories[info.name] = str(web_dir)
            info.web_directory = str(web_dir)
        else:
            info.warnings.append(f"WEB_DIRECTORY {web!r} is not a folder ({web_dir})")


def load_packs(registry: NodeRegistry, custom_nodes_dir: Path | str | None, enabled: set[str] | frozenset[str],
               entry_point_group: str | None = ENTRY_POINT_GROUP) -> PackReport:
    """Load the enabled packs into ``registry``; every pack found is in the report with its status."""
    report = PackReport()
    candidates, skipped = find_packs(custom_nodes_dir, entry_point_group)
    report.packs.extend(skipped)
    allow_all = "*" in enabled
    wanted = [c for c in candidates if allow_all or c.name in enabled]
    for c in candidates:
        if c not in wanted:
            report.packs.append(PackInfo(c.name, c.source, c.kind, "disabled",
                                         reason="not enabled: " + ENABLE_HINT.format(name=c.name)))
    if not wanted:
        return report
    comfy_shims.install(registry)
    if custom_nodes_dir is not None:
        from engine.comfy.shims import folder_paths

        root = str(Path(custom_nodes_dir).resolve())
        if root not in folder_paths.folder_names_and_paths.custom_nodes_dirs:
            folder_paths.folder_names_and_paths.custom_nodes_dirs.append(root)
    seen: set[str] = set()
    for c in wanted:
        info = PackInfo(c.name, c.source, c.kind, "loaded")
        report.packs.append(info)
        if c.name in seen:
            info.status, info.reason = "failed", f"another pack is also named {c.name}; rename one of them"
            continue
        seen.add(c.name)
        began = time.perf_counter()
        token = current_pack.set(c.name)
        try:
            if c.entry_point is not None:
                module = c.entry_point.load()
                file = getattr(module, "__file__", None)
                module_dir = Path(file).parent if file else None
            else:
                module = _import_path(c)
                module_dir = c.path if c.kind == "folder" else c.path.parent if c.path else None
            _register_module(registry, info, module, module_dir)
        except BaseException as exc:  # SyntaxError, ImportError, SystemExit from a pack: report, go on
            if isinstance(exc, KeyboardInterrupt):
                raise
            info.status = "failed"
            info.reason = f"{type(exc).__name__}: {exc}"
            info.traceback = _traceback_summary(exc)
            for class_type in info.nodes:
                registry.nodes.pop(class_type, None)
                registry.origins.pop(class_type, None)
            info.nodes.clear()
            registry.failed_packs[c.name] = info.traceback
            log.error("pack %s failed to load and is skipped:\n%s", c.name, info.traceback)
        else:
            registry.failed_packs.pop(c.name, None)
            log.info("pack %s: %d node(s)", c.name, len(info.nodes))
        finally:
            current_pack.reset(token)
            info.load_seconds = time.perf_counter() - began
    return report
