"""ComfyUI V1 node classes as our ``Node`` API, and our registry as ComfyUI's ``NODE_CLASS_MAPPINGS``.

``adapt_v1_node(class_type, v1_cls)`` builds a ``Node`` subclass (with ``type(...)``) whose declaration
comes from the V1 class (``INPUT_TYPES``, ``RETURN_TYPES``/``RETURN_NAMES``/``OUTPUT_IS_LIST``/
``OUTPUT_TOOLTIPS``, ``CATEGORY``, ``DESCRIPTION``, ``OUTPUT_NODE``) and whose hooks follow ComfyUI's
semantics:

- ``fingerprint`` calls ``IS_CHANGED`` with the widget values (and hidden inputs as None); an exception,
  a NaN or an unhashable result means "always changed" (a fresh unique value is returned);
- ``check_inputs`` calls ``VALIDATE_INPUTS``; ``True`` is valid, anything else is the error (a string is
  its message). Inputs that ``VALIDATE_INPUTS`` takes as arguments skip the min/max/choices checks, as
  in ComfyUI; when it takes ``input_types``, the class says ``VALIDATES_LINK_TYPES = True`` (ComfyUI then
  skips the link type check) and the validator may pass the received types as ``"__input_types__"``;
- ``execute`` instantiates the V1 class once per node instance (kept in ``ctx.state``) and calls
  ``FUNCTION`` in a worker thread through ``ctx.run_blocking``, with ComfyUI's list semantics: every input
  is a list (one value, or the items of a list output); ``INPUT_IS_LIST`` nodes get the lists, other
  nodes are called once per index (shorter lists repeat their last item) and the results are merged
  (``OUTPUT_IS_LIST`` outputs concatenated). A list output travels between nodes as a ``ComfyList``.
  The ``{"ui": ..., "result": ...}`` return form becomes ``NodeResult(outputs, ui)``. An ``async def``
  FUNCTION (newer ComfyUI allows it) is awaited on the event loop instead.

Hidden inputs (``UNIQUE_ID``, ``PROMPT``, ``EXTRA_PNGINFO``, ``DYNPROMPT``, ...) are filled from
``ctx.hidden`` (a ``HiddenValues`` the executor may attach) and ``ctx.node_id``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from engine import types as T
from engine.comfy_shims.runtime import current_context, current_node
from engine.context import NodeContext
from engine.events import Event
from engine.node import Input, Node, NodeResult, Output
from engine.registry import NodeRegistry

log = logging.getLogger(__name__)

MAX_RESOLUTION = 16384  # ComfyUI's nodes.MAX_RESOLUTION, used by many packs as a widget max

# Hidden input kinds ComfyUI fills in.
UNIQUE_ID = "UNIQUE_ID"
PROMPT = "PROMPT"
EXTRA_PNGINFO = "EXTRA_PNGINFO"
DYNPROMPT = "DYNPROMPT"
AUTH_TOKEN_COMFY_ORG = "AUTH_TOKEN_COMFY_ORG"
API_KEY_COMFY_ORG = "API_KEY_COMFY_ORG"

_UPLOAD_OPTIONS = {"image_upload": "image", "audio_upload": "audio", "video_upload": "video"}
_MAPPED_OPTIONS = {"default", "min", "max", "step", "multiline", "tooltip", "forceInput", "options"}

# The pack being imported (set by engine.packs), so nodes registered through NODE_CLASS_MAPPINGS at
# import or run time get that pack as their origin.
current_pack: contextvars.ContextVar[str | None] = contextvars.ContextVar("comfy_current_pack", default=None)


@dataclass
class HiddenValues:
    """What the executor knows for ComfyUI's hidden inputs; attach as ``ctx.hidden`` before ``execute``."""

    unique_id: str | None = None  # defaults to ctx.node_id
    prompt: dict[str, Any] | None = None  # the API-format prompt being run
    extra_pnginfo: dict[str, Any] | None = None  # extra_data["extra_pnginfo"] ({"workflow": <UI graph>})
    dynprompt: Any = None
    auth_token_comfy_org: str | None = None
    api_key_comfy_org: str | None = None

    def value(self, kind: str) -> Any:
        return {UNIQUE_ID: self.unique_id, PROMPT: self.prompt, EXTRA_PNGINFO: self.extra_pnginfo,
                DYNPROMPT: self.dynprompt, AUTH_TOKEN_COMFY_ORG: self.auth_token_comfy_org,
                API_KEY_COMFY_ORG: self.api_key_comfy_org}.get(kind)


class ComfyList(list):  # type: ignore[type-arg]
    """A value that is a ComfyUI list (an ``OUTPUT_IS_LIST`` output, or a node mapped over a list):
    consumers map over its items, ``INPUT_IS_LIST`` consumers receive it whole."""


class V1DeclarationError(ValueError):
    """A V1 class whose INPUT_TYPES / RETURN_TYPES cannot be understood."""


# Declaration ------------------------------------------------------------------------------------------------
def _call_input_types(v1_cls: type) -> dict[str, Any]:
    spec = v1_cls.INPUT_TYPES()
    if not isinstance(spec, dict):
        raise V1DeclarationError(f"{v1_cls.__name__}.INPUT_TYPES() returned {type(spec).__name__}, not a dict")
    return spec


def _live_choices(v1_cls: type, section: str, name: str, fallback: list[Any]) -> Callable[[], list[Any]]:
    """Combo choices re-read from INPUT_TYPES() on each call (file lists change while we run)."""

    def choices() -> list[Any]:
        try:
            spec = _call_input_types(v1_cls).get(section, {}).get(name)
            type_, opts = _split_spec(spec)
            if isinstance(type_, list | tuple):
                return list(type_)
            if type_ == T.COMBO:
                return list(opts.get("options", []))
        except Exception:
            log.exception("INPUT_TYPES() of %s failed while listing choices of %s", v1_cls.__name__, name)
        return fallback

    return choices


def _split_spec(spec: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, list | tuple) and spec:
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        return spec[0], opts
    raise V1DeclarationError(f"input spec {spec!r} is neither a type name nor a (type, options) tuple")


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _input_from_spec(v1_cls: type, section: str, name: str, spec: Any) -> Input:
    if section == "hidden":
        kind = spec if isinstance(spec, str) else _split_spec(spec)[0]
        return Input(name, str(kind), required=False, hidden=True)
    type_, opts = _split_spec(spec)
    required = section == "required"
    upload = next((kind for key, kind in _UPLOAD_OPTIONS.items() if opts.get(key)), None)
    extra = tuple((k, _freeze(v)) for k, v in opts.items() if k not in _MAPPED_OPTIONS)
    common: dict[str, Any] = {"required": required, "tooltip": str(opts.get("tooltip") or ""),
                              "extra": extra, "upload": upload}
    if isinstance(type_, list | tuple) or type_ == T.COMBO:
        initial = list(type_) if isinstance(type_, list | tuple) else list(opts.get("options", []))
        return Input(name, T.COMBO, default=opts.get("default"),
                     choices=_live_choices(v1_cls, section, name, initial), **common)
    type_name = str(type_)
    if type_name in (T.INT, T.FLOAT, T.STRING, T.BOOLEAN):
        return Input(name, type_name, default=opts.get("default"), min=opts.get("min"), max=opts.get("max"),
                     step=opts.get("step"), multiline=bool(opts.get("multiline", False)),
                     force_input=bool(opts.get("forceInput", False)), **common)
    return Input(name, type_name, force_input=bool(opts.get("forceInput", False)), **common)


def _accepts_any(section: Any) -> bool:
    """ComfyUI packs' "any input" trick: an optional dict that claims to contain every name."""
    try:
        return "__avatargraph_probe_any_input__" in section
    except Exception:
        return False


def v1_inputs(v1_cls: type) -> tuple[tuple[Input, ...], bool]:
    """(INPUTS in ComfyUI's order: required, optional, hidden; whether undeclared inputs are accepted)."""
    spec = _call_input_types(v1_cls)
    inputs: list[Input] = []
    for section in ("required", "optional", "hidden"):
        entries = spec.get(section) or {}
        for name in list(entries.keys()):
            inputs.append(_input_from_spec(v1_cls, section, name, entries[name]))
    return tuple(inputs), _accepts_any(spec.get("optional")) or _accepts_any(spec.get("required"))


def v1_outputs(v1_cls: type) -> tuple[Output, ...]:
    types_ = tuple(getattr(v1_cls, "RETURN_TYPES", ()) or ())
    names = tuple(getattr(v1_cls, "RETURN_NAMES", ()) or ())
    is_list = tuple(getattr(v1_cls, "OUTPUT_IS_LIST", ()) or ())
    tooltips = tuple(getattr(v1_cls, "OUTPUT_TOOLTIPS", ()) or ())
    outputs = []
    for i, type_ in enumerate(types_):
        type_name = T.COMBO if isinstance(type_, list | tuple) else str(type_)
        outputs.append(Output(str(names[i]) if i < len(names) else type_name, type_name,
                              tooltip=str(tooltips[i]) if i < len(tooltips) and tooltips[i] else "",
                              is_list=bool(is_list[i]) if i < len(is_list) else False))
    return tuple(outputs)


def _function_params(fn: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return frozenset(), True
    names = frozenset(p.name for p in sig.parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return names, has_kwargs


# List semantics ---------------------------------------------------------------------------------------------
def map_over_list(fn: Callable[..., Any], data: dict[str, list[Any]], input_is_list: bool,
                  before_each: Callable[[], None] | None = None) -> list[Any]:
    """ComfyUI's ``_map_node_over_list``: one call with the lists, or one call per index."""
    if input_is_list:
        if before_each:
            before_each()
        return [fn(**data)]
    if not data:
        if before_each:
            before_each()
        return [fn()]
    if any(len(v) == 0 for v in data.values()):
        return []
    results = []
    for i in range(max(len(v) for v in data.values())):
        if before_each:
            before_each()
        results.append(fn(**{k: v[i if len(v) > i else -1] for k, v in data.items()}))
    return results


def unwrap_value(value: Any) -> Any:
    """The frontend wraps list-valued widgets as ``{"__value__": [...]}`` (a bare list would be a link)."""
    if isinstance(value, dict) and "__value__" in value and len(value) == 1:
        return value["__value__"]
    return value


def _always_changed() -> str:
    return f"always-changed:{uuid.uuid4().hex}"


def _stable(value: Any) -> bool:
    if value is None or isinstance(value, str | bytes | bool | int):
        return True
    if isinstance(value, float):
        return not math.isnan(value)
    if isinstance(value, list | tuple):
        return all(_stable(v) for v in value)
    return False


def _merge_results(results: list[Any], outputs: tuple[Output, ...]) -> NodeResult:
    uis: list[dict[str, Any]] = []
    values: list[tuple[Any, ...]] = []
    for r in results:
        if isinstance(r, dict) and ("ui" in r or "result" in r):
            if r.get("ui"):
                uis.append(dict(r["ui"]))
            if r.get("result") is not None:
                values.append(tuple(r["result"]))
        elif r is None:
            continue
        elif isinstance(r, tuple | list):
            values.append(tuple(r))
        else:
            values.append((r,))
    merged: list[Any] = []
    for i, out in enumerate(outputs):
        items: list[Any] = []
        for v in values:
            if i >= len(v):
                continue
            if out.is_list:
                items.extend(v[i] if isinstance(v[i], list | tuple) else [v[i]])
            else:
                items.append(v[i])
        if out.is_list or len(values) != 1:
            merged.append(ComfyList(items))
        else:
            merged.append(items[0] if items else None)
    ui: dict[str, list[Any]] = {}
    for u in uis:
        for key, val in u.items():
            ui.setdefault(key, []).extend(val if isinstance(val, list | tuple) else [val])
    return NodeResult(tuple(merged), ui)


# The adapter ------------------------------------------------------------------------------------------------
class ComfyV1Node(Node):
    """Base of adapted V1 nodes; ``adapt_v1_node`` fills the class variables."""

    COMFY_CLASS: ClassVar[type] = object
    COMFY_FUNCTION: ClassVar[str] = ""
    ACCEPTS_ANY_INPUT: ClassVar[bool] = False
    VALIDATED_ARGS: ClassVar[frozenset[str]] = frozenset()  # inputs VALIDATE_INPUTS checks itself
    VALIDATES_ALL: ClassVar[bool] = False  # VALIDATE_INPUTS takes **kwargs
    VALIDATES_LINK_TYPES: ClassVar[bool] = False  # VALIDATE_INPUTS takes input_types

    # Hooks ----------------------------------------------------------------------------------------------
    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        is_changed = getattr(cls.COMFY_CLASS, "IS_CHANGED", None)
        if is_changed is None:
            return None
        data = {name: [unwrap_value(value)] for name, value in inputs.items()
                if (spec := cls.input_spec(name)) is None or spec.is_widget}
        for spec in cls.INPUTS:
            if spec.hidden:
                data[spec.name] = [None]
        try:
            results = map_over_list(is_changed, data, cls.INPUT_IS_LIST)
        except Exception as exc:  # ComfyUI: IS_CHANGED failing means the node always re-runs
            log.warning("IS_CHANGED of %s failed (%s: %s); the node will re-run every time", cls.TYPE,
                        type(exc).__name__, exc)
            return _always_changed()
        if not _stable(results):
            return _always_changed()
        return ("IS_CHANGED", tuple(results))

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        validate = getattr(cls.COMFY_CLASS, "VALIDATE_INPUTS", None)
        if validate is None:
            return []
        inputs = dict(inputs)
        input_types = inputs.pop("__input_types__", None)
        params, has_kwargs = _function_params(validate)
        data: dict[str, list[Any]] = {}
        for name, value in inputs.items():
            if name in params or has_kwargs:
                data[name] = [unwrap_value(value)]
        for spec in cls.INPUTS:  # linked (and hidden) inputs are None at validation time, as in ComfyUI
            if spec.name in params and spec.name not in data:
                data[spec.name] = [None]
        if "input_types" in params:
            data["input_types"] = [dict(input_types or {})]
        try:
            results = map_over_list(validate, data, cls.INPUT_IS_LIST)
        except Exception as exc:
            return [(None, f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}")]  # type: ignore[list-item]
        checked = [n for n in data if n != "input_types"]
        where = checked[0] if len(checked) == 1 else None
        issues = []
        for r in results:
            if r is True:
                continue
            message = "custom validation failed" + ("" if r is False else f": {r}")
            issues.append((where, message))
        return issues  # type: ignore[return-value]

    @classmethod
    def validate_widgets(cls, values: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        values = {k: unwrap_value(v) for k, v in values.items()}
        skip = {k for k in values if cls.VALIDATES_ALL or k in cls.VALIDATED_ARGS}
        checked = {k: v for k, v in values.items() if k not in skip}
        out, errors = super().validate_widgets(checked)
        coerce = {T.INT: int, T.FLOAT: float, T.STRING: str, T.BOOLEAN: bool}
        for name in skip:  # ComfyUI still converts the type, but leaves ranges/choices to VALIDATE_INPUTS
            spec = cls.input_spec(name)
            fn = coerce.get(spec.type) if spec is not None else None
            if fn is None:
                out[name] = values[name]
                continue
            try:
                out[name] = fn(values[name])
            except (TypeError, ValueError) as exc:
                errors.append((name, f"invalid {spec.type} value {values[name]!r}: {exc}"))
        return {**values, **out}, errors

    # Execution ------------------------------------------------------------------------------------------
    def _input_lists(self, ctx: NodeContext, inputs: dict[str, Any]) -> dict[str, list[Any]]:
        hidden = getattr(ctx, "hidden", None)
        if isinstance(hidden, dict):
            hidden = HiddenValues(**hidden)
        elif not isinstance(hidden, HiddenValues):
            hidden = HiddenValues()
        data: dict[str, list[Any]] = {}
        for spec in self.INPUTS:
            if spec.hidden:
                value = hidden.value(spec.type)
                if spec.type == UNIQUE_ID and value is None:
                    value = ctx.node_id
                if value is not None:
                    data[spec.name] = [value]
                continue
            if spec.name in inputs:
                value = inputs[spec.name]
            elif spec.required and spec.is_widget and spec.default_value() is not None:
                value = spec.default_value()
            else:
                continue
            data[spec.name] = list(value) if isinstance(value, ComfyList) else [unwrap_value(value)]
        for name, value in inputs.items():  # undeclared inputs of "any input" nodes
            if name not in data and self.input_spec(name) is None:
                data[name] = list(value) if isinstance(value, ComfyList) else [unwrap_value(value)]
        return data

    def _call_v1(self, ctx: NodeContext, data: dict[str, list[Any]]) -> list[Any]:
        obj = ctx.state.get("comfy_v1_object")
        if obj is None or type(obj) is not self.COMFY_CLASS:
            obj = ctx.state["comfy_v1_object"] = self.COMFY_CLASS()
        fn = getattr(obj, self.COMFY_FUNCTION)
        return map_over_list(fn, data, self.INPUT_IS_LIST, before_each=ctx.check_interrupted)

    async def execute(self, ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
        data = self._input_lists(ctx, inputs)
        token = current_node.set(ctx)  # run_blocking copies this context into the worker thread
        try:
            if inspect.iscoroutinefunction(getattr(self.COMFY_CLASS, self.COMFY_FUNCTION)):
                # ComfyUI also accepts ``async def`` node functions: they run on the event loop.
                results = [await r for r in self._call_v1(ctx, data)]
            else:
                results = await ctx.run_blocking(self._call_v1, ctx, data)
        finally:
            current_node.reset(token)
        return _merge_results(results, self.OUTPUTS)


def _safe_class_name(class_type: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in class_type)
    return f"Comfy_{cleaned}"


def adapt_v1_node(class_type: str, v1_cls: type, display_name: str | None = None) -> type[ComfyV1Node]:
    """A ``Node`` subclass that runs the ComfyUI V1 node class ``v1_cls`` registered as ``class_type``."""
    if not isinstance(v1_cls, type):
        raise V1DeclarationError(f"{class_type}: NODE_CLASS_MAPPINGS value {v1_cls!r} is not a class")
    function = getattr(v1_cls, "FUNCTION", None)
    if not callable(getattr(v1_cls, "INPUT_TYPES", None)):
        raise V1DeclarationError(f"{class_type}: {v1_cls.__name__} has no INPUT_TYPES classmethod")
    if not isinstance(function, str) or not hasattr(v1_cls, function):
        raise V1DeclarationError(f"{class_type}: {v1_cls.__name__}.FUNCTION ({function!r}) names no method")
    inputs, accepts_any = v1_inputs(v1_cls)
    validate = getattr(v1_cls, "VALIDATE_INPUTS", None)
    params, has_kwargs = _function_params(validate) if validate is not None else (frozenset(), False)
    namespace: dict[str, Any] = {
        "TYPE": class_type,
        "DISPLAY_NAME": display_name or getattr(v1_cls, "DISPLAY_NAME", None) or class_type,
        "CATEGORY": str(getattr(v1_cls, "CATEGORY", "sd") or "sd"),
        "DESCRIPTION": str(getattr(v1_cls, "DESCRIPTION", "") or ""),
        "INPUTS": inputs,
        "OUTPUTS": v1_outputs(v1_cls),
        "OUTPUT_NODE": bool(getattr(v1_cls, "OUTPUT_NODE", False)),
        "DETERMINISTIC": not bool(getattr(v1_cls, "NOT_IDEMPOTENT", False)),
        "INPUT_IS_LIST": bool(getattr(v1_cls, "INPUT_IS_LIST", False)),
        "ACCEPTS_ANY_INPUT": accepts_any,
        "COMFY_CLASS": v1_cls,
        "COMFY_FUNCTION": function,
        "VALIDATED_ARGS": frozenset(params),
        "VALIDATES_ALL": has_kwargs,
        "VALIDATES_LINK_TYPES": "input_types" in params,
        "DEPRECATED": bool(getattr(v1_cls, "DEPRECATED", False)),
        "EXPERIMENTAL": bool(getattr(v1_cls, "EXPERIMENTAL", False)),
        "__module__": getattr(v1_cls, "__module__", __name__),
        "__doc__": v1_cls.__doc__,
    }
    return type(_safe_class_name(class_type), (ComfyV1Node,), namespace)


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
