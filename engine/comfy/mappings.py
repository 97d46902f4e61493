"""The other direction of the ComfyUI adapter: our registry as ComfyUI's ``NODE_CLASS_MAPPINGS`` /
``NODE_DISPLAY_NAME_MAPPINGS`` (live views packs read and write), and our native nodes as V1 classes (what
``nodes.NODE_CLASS_MAPPINGS[...]`` returns for a native node)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

from engine.comfy.adapter import ComfyV1Node, adapt_v1_node, current_pack
from engine.comfy.shims.runtime import current_context
from engine.graph import types as T
from engine.graph.context import NodeContext
from engine.graph.events import Event
from engine.graph.node import Input, Node, NodeResult
from engine.graph.registry import NodeRegistry

log = logging.getLogger(__name__)


# Our nodes as V1 classes (what ``nodes.NODE_CLASS_MAPPINGS[...]`` returns for a native node) ---------------
def input_spec_to_v1(spec: Input) -> tuple[Any, ...]:
    """One input as ComfyUI declares it: ``(TYPE, {options})``, a combo as ``([choices], {options})``."""
    opts: dict[str, Any] = {}
    if spec.default is not None:
        opts["default"] = spec.default
    for key in ("min", "max", "step"):
        if getattr(spec, key) is not None:
            opts[key] = getattr(spec, key)
    if spec.multiline:
        opts["multiline"] = True
    if spec.tooltip:
        opts["tooltip"] = spec.tooltip
    if spec.force_input:
        opts["forceInput"] = True
    if spec.upload:
        opts[f"{spec.upload}_upload"] = True
    if spec.lazy:
        opts["lazy"] = True
    if spec.raw_link:
        opts["rawLink"] = True
    for key, value in spec.extra:
        opts[key] = list(value) if isinstance(value, tuple) else value
    if spec.type == T.COMBO:
        return (spec.current_choices() or [], opts)
    return (spec.type, opts) if opts else (spec.type,)


def v1_input_types(node_cls: type[Node]) -> dict[str, dict[str, Any]]:
    """``INPUT_TYPES()`` of a node class: ``{"required": {...}, "optional": {...}, "hidden": {...}}``."""
    out: dict[str, dict[str, Any]] = {"required": {}}
    for spec in node_cls.INPUTS:
        if spec.hidden:
            out.setdefault("hidden", {})[spec.name] = spec.type
        else:
            out.setdefault("required" if spec.required else "optional", {})[spec.name] = input_spec_to_v1(spec)
    return out


def _run_native(node_cls: type[Node], node: Node, state: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    parent = current_context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(f"{node_cls.TYPE} called through NODE_CLASS_MAPPINGS from an event loop thread; "
                           "call it from a V1 node's FUNCTION (a worker thread)")

    def emit(event: Event) -> None:
        if parent is not None:
            parent.loop.call_soon_threadsafe(parent.emit, event)

    async def go() -> NodeResult:
        ctx = NodeContext(parent.node_id if parent else node.node_id, node_cls.TYPE,
                          parent.prompt_id if parent else "", asyncio.get_running_loop(), emit,
                          parent.interrupted if parent else threading.Event(),
                          parent.models if parent else None, None, state)
        return await node.execute(ctx, kwargs)

    result = asyncio.run(go())
    outputs = tuple(result.outputs)
    return {"ui": result.ui, "result": outputs} if result.ui else outputs


def v1_facade(node_cls: type[Node]) -> type:
    """A V1-style class that runs native node ``node_cls`` (for packs calling our nodes through ``nodes``)."""
    cached = node_cls.__dict__.get("_COMFY_FACADE")
    if cached is not None:
        return cached

    def __init__(self: Any) -> None:
        self._node = node_cls(f"comfy-facade-{id(self)}")
        self._state: dict[str, Any] = {}

    def run_native(self: Any, **kwargs: Any) -> Any:
        return _run_native(node_cls, self._node, self._state, kwargs)

    outputs = node_cls.OUTPUTS
    facade = type(node_cls.__name__, (), {
        "__init__": __init__,
        "INPUT_TYPES": classmethod(lambda cls: v1_input_types(node_cls)),
        "RETURN_TYPES": tuple(o.type for o in outputs),
        "RETURN_NAMES": tuple(o.name for o in outputs),
        "OUTPUT_IS_LIST": tuple(o.is_list for o in outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip for o in outputs),
        "FUNCTION": "run_native",
        "run_native": run_native,
        "CATEGORY": node_cls.CATEGORY,
        "DESCRIPTION": node_cls.DESCRIPTION,
        "OUTPUT_NODE": node_cls.OUTPUT_NODE,
        "NATIVE_NODE": node_cls,
        "__module__": node_cls.__module__,
    })
    setattr(node_cls, "_COMFY_FACADE", facade)
    return facade


# The registry in ComfyUI's shape ------------------------------------------------------------------------------
class _RegistryKeys:
    """The keys of a live ComfyUI mapping: the registry's class_type names."""

    def __init__(self, registry: NodeRegistry):
        self.registry = registry

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.registry.nodes))

    def __len__(self) -> int:
        return len(self.registry.nodes)

    def __contains__(self, class_type: object) -> bool:
        return class_type in self.registry.nodes


class ComfyClassMappings(_RegistryKeys, MutableMapping[str, type]):
    """Live ``NODE_CLASS_MAPPINGS``: class_type -> V1 class (the pack's own class for adapted nodes, a
    facade for native ones). Assigning a V1 class (or a Node subclass) registers it."""

    def __getitem__(self, class_type: str) -> type:
        cls = self.registry.nodes[class_type]
        if issubclass(cls, ComfyV1Node):
            return cls.COMFY_CLASS
        return v1_facade(cls)

    def __setitem__(self, class_type: str, value: type) -> None:
        origin = current_pack.get() or "comfy-runtime"
        if isinstance(value, type) and issubclass(value, Node):
            if value.TYPE != class_type:
                raise ValueError(f"cannot register node class {value.TYPE} under the name {class_type!r}")
            self.registry.register(value, origin)
        else:
            self.registry.register(adapt_v1_node(class_type, value), origin)

    def __delitem__(self, class_type: str) -> None:
        del self.registry.nodes[class_type]
        self.registry.origins.pop(class_type, None)


class ComfyDisplayNameMappings(_RegistryKeys, MutableMapping[str, str]):
    """Live ``NODE_DISPLAY_NAME_MAPPINGS``: class_type -> display name (assigning renames)."""

    def __getitem__(self, class_type: str) -> str:
        return self.registry.nodes[class_type].DISPLAY_NAME

    def __setitem__(self, class_type: str, name: str) -> None:
        self.registry.nodes[class_type].DISPLAY_NAME = str(name)

    def __delitem__(self, class_type: str) -> None:
        cls = self.registry.nodes[class_type]
        cls.DISPLAY_NAME = cls.TYPE


class ComfyMappings(NamedTuple):
    class_mappings: ComfyClassMappings
    display_name_mappings: ComfyDisplayNameMappings
    web_dirs: dict[str, str]  # ComfyUI's nodes.EXTENSION_WEB_DIRS: pack -> folder of JS


def comfy_mappings_view(registry: NodeRegistry) -> ComfyMappings:
    """Live views of ``registry`` shaped like ComfyUI's ``nodes`` module globals."""
    return ComfyMappings(ComfyClassMappings(registry), ComfyDisplayNameMappings(registry),
                         registry.web_directories)
