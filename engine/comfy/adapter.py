"""ComfyUI V1 node classes as our ``Node`` API, and our registry as ComfyUI's ``NODE_CLASS_MAPPINGS``.

``adapt_v1_node(class_type, v1_cls)`` builds a ``Node`` subclass (with ``type(...)``) whose declaration
comes from the V1 class (``INPUT_TYPES``, ``RETURN_TYPES``/``RETURN_NAMES``/``OUTPUT_IS_LIST``/
``OUTPUT_TOOLTIPS``, ``CATEGORY``, ``DESCRIPTION``, ``OUTPUT_NODE``) and whose hooks follow ComfyUI's
semantics:

- ``fingerprint`` calls ``IS_CHANGED`` with the typed-in values and None for linked (and hidden) inputs; an
  exception, a NaN or an unhashable result means "always changed" (a fresh unique value is returned);
- ``check_inputs`` calls ``VALIDATE_INPUTS``; ``True`` is valid, anything else is the error (a string is
  its message). Inputs that ``VALIDATE_INPUTS`` takes as arguments skip the min/max/choices checks, as
  in ComfyUI; when it takes ``input_types``, the class says ``CHECKS_LINK_TYPES = True`` (ComfyUI then
  skips the link type check) and the validator may pass the received types as ``"__input_types__"``; an
  ``async`` VALIDATE_INPUTS is awaited;
- ``needed_inputs`` calls ``check_lazy_status`` (sync or async) for inputs declared ``{"lazy": True}``;
  ``{"rawLink": True}`` inputs receive the link itself; a FUNCTION taking ``**kwargs`` receives links on
  undeclared inputs; every input accepts a typed-in value (VALIDATE_INPUTS judges it); our IMAGE / MASK /
  AUDIO values arrive in ComfyUI's tensor forms (``engine.comfy.values``);
- ``execute`` instantiates the V1 class once per node instance (kept in ``ctx.state``) and calls
  ``FUNCTION`` in a worker thread through ``ctx.run_blocking``, with ComfyUI's list semantics: every input
  is a list (one value, or the items of a list output); ``INPUT_IS_LIST`` nodes get the lists, other
  nodes are called once per index (shorter lists repeat their last item) and the results are merged
  (``OUTPUT_IS_LIST`` outputs concatenated, see ``engine.comfy.lists``). A list output travels between
  nodes as a ``ComfyList``. The ``{"ui", "result", "expand"}`` return form becomes ``NodeResult(outputs,
  ui, expand)``; ``GraphBuilder``s made during a call get ids prefixed by the node id and call index. An
  ``async def`` FUNCTION runs on the event loop, one task per call, the calls concurrently.

Hidden inputs (``UNIQUE_ID``, ``PROMPT``, ``EXTRA_PNGINFO``, ``DYNPROMPT``, ...) are filled from
the run facts on the context (``ctx.run``, see ``HiddenValues.of``) and ``ctx.node_id``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.comfy.lists import ComfyList, as_list, map_over_list, merge_results, unwrap_value
from engine.comfy.shims.comfy_execution.graph_utils import node_call
from engine.comfy.shims.runtime import current_node
from engine.comfy.values import to_comfy
from engine.graph import types as T
from engine.graph.context import NodeContext
from engine.graph.flow import ExecutionBlocker
from engine.graph.node import Input, Node, NodeResult, Output

log = logging.getLogger(__name__)

MAX_RESOLUTION = 16384  # ComfyUI's nodes.MAX_RESOLUTION, used by many packs as a widget max

# Hidden input kinds ComfyUI fills in.
UNIQUE_ID = "UNIQUE_ID"
PROMPT = "PROMPT"
EXTRA_PNGINFO = "EXTRA_PNGINFO"
DYNPROMPT = "DYNPROMPT"
AUTH_TOKEN_COMFY_ORG = "AUTH_TOKEN_COMFY_ORG"
API_KEY_COMFY_ORG = "API_KEY_COMFY_ORG"

HIDDEN_KINDS = frozenset({UNIQUE_ID, PROMPT, EXTRA_PNGINFO, DYNPROMPT, AUTH_TOKEN_COMFY_ORG, API_KEY_COMFY_ORG})

_UPLOAD_OPTIONS = {"image_upload": "image", "audio_upload": "audio", "video_upload": "video"}
_MAPPED_OPTIONS = {"default", "min", "max", "step", "multiline", "tooltip", "forceInput", "options", "lazy",
                   "rawLink"}

# The pack being imported (set by engine.app.packs), so nodes registered through NODE_CLASS_MAPPINGS at
# import or run time get that pack as their origin.
current_pack: contextvars.ContextVar[str | None] = contextvars.ContextVar("comfy_current_pack", default=None)


@dataclass
class HiddenValues:
    """What ComfyUI's hidden inputs ask for, built from the node's context (``ctx.run``)."""

    unique_id: str | None = None  # defaults to ctx.node_id
    prompt: dict[str, Any] | None = None  # the API-format prompt being run
    extra_pnginfo: dict[str, Any] | None = None  # extra_data["extra_pnginfo"] ({"workflow": <UI graph>})
    dynprompt: Any = None
    auth_token_comfy_org: str | None = None
    api_key_comfy_org: str | None = None

    @classmethod
    def of(cls, ctx: NodeContext) -> HiddenValues:
        """The hidden values for a node, from the plain facts of its run (none outside a prompt run)."""
        if ctx.run is None:
            return cls(unique_id=ctx.node_id)
        dynprompt = None
        if ctx.run.graph is not None:
            from engine.comfy.shims.comfy_execution.graph import DynamicPrompt
            dynprompt = DynamicPrompt(ctx.run.graph)
        return cls(unique_id=ctx.node_id, prompt=ctx.run.prompt(), dynprompt=dynprompt,
                   extra_pnginfo=ctx.run.extra_data.get("extra_pnginfo"),
                   auth_token_comfy_org=ctx.run.extra_data.get("auth_token_comfy_org"),
                   api_key_comfy_org=ctx.run.extra_data.get("api_key_comfy_org"))

    def value(self, kind: str) -> Any:
        return {UNIQUE_ID: self.unique_id, PROMPT: self.prompt, EXTRA_PNGINFO: self.extra_pnginfo,
                DYNPROMPT: self.dynprompt, AUTH_TOKEN_COMFY_ORG: self.auth_token_comfy_org,
                API_KEY_COMFY_ORG: self.api_key_comfy_org}.get(kind)


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
        if str(kind) in HIDDEN_KINDS:
            return Input(name, str(kind), required=False, hidden=True)
        section = "optional"  # declared hidden but of a data type: a value the graph may set (not shown)
    type_, opts = _split_spec(spec)
    required = section == "required"
    upload = next((kind for key, kind in _UPLOAD_OPTIONS.items() if opts.get(key)), None)
    extra = tuple((k, _freeze(v)) for k, v in opts.items() if k not in _MAPPED_OPTIONS)
    common: dict[str, Any] = {"required": required, "tooltip": str(opts.get("tooltip") or ""),
                              "extra": extra, "upload": upload, "lazy": bool(opts.get("lazy", False)),
                              "raw_link": bool(opts.get("rawLink", False))}
    if isinstance(type_, list | tuple) or type_ == T.COMBO:
        initial = list(type_) if isinstance(type_, list | tuple) else list(opts.get("options", []))
        return Input(name, T.COMBO, default=opts.get("default"),
                     choices=_live_choices(v1_cls, section, name, initial), **common)
    type_name = str(type_)
    if type_name in (T.INT, T.FLOAT, T.STRING, T.BOOLEAN):
        return Input(name, type_name, default=opts.get("default"), min=opts.get("min"), max=opts.get("max"),
                     step=opts.get("step"), multiline=bool(opts.get("multiline", False)),
                     force_input=bool(opts.get("forceInput", False)), **common)
    # ComfyUI accepts a typed-in value on any input (VALIDATE_INPUTS judges it).
    return Input(name, type_name, force_input=bool(opts.get("forceInput", False)), literal=True, **common)


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


# The adapter ------------------------------------------------------------------------------------------------
class ComfyV1Node(Node):
    """Base of adapted V1 nodes; ``adapt_v1_node`` fills the class variables."""

    COMFY_CLASS: ClassVar[type] = object
    COMFY_FUNCTION: ClassVar[str] = ""
    INPUT_IS_LIST: ClassVar[bool] = False
    VALIDATED_ARGS: ClassVar[frozenset[str]] = frozenset()  # inputs VALIDATE_INPUTS checks itself
    VALIDATES_ALL: ClassVar[bool] = False  # VALIDATE_INPUTS takes **kwargs

    # Hooks ----------------------------------------------------------------------------------------------
    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        is_changed = getattr(cls.COMFY_CLASS, "IS_CHANGED", None)
        if is_changed is None:
            return None
        data = {name: [unwrap_value(value)] for name, value in inputs.items()}  # links arrive as None
        for spec in cls.INPUTS:
            if spec.hidden:
                data[spec.name] = [None]
        try:
            results = map_over_list(lambda _, kw: is_changed(**kw), data, cls.INPUT_IS_LIST)
        except Exception as exc:  # ComfyUI: IS_CHANGED failing means the node always re-runs
            log.warning("IS_CHANGED of %s failed (%s: %s); the node will re-run every time", cls.TYPE,
                        type(exc).__name__, exc)
            return _always_changed()
        if not _stable(results):
            return _always_changed()
        return ("IS_CHANGED", tuple(results))

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> Any:
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
        checked = [n for n in data if n != "input_types"]
        where = checked[0] if len(checked) == 1 else None
        try:
            results = map_over_list(lambda _, kw: validate(**kw), data, cls.INPUT_IS_LIST)
        except Exception as exc:
            return [(where, f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}")]
        if any(inspect.isawaitable(r) for r in results):  # an async VALIDATE_INPUTS: awaited by validation
            async def awaited() -> list[tuple[str | None, str]]:
                try:
                    done = [await r if inspect.isawaitable(r) else r for r in results]
                except Exception as exc:
                    return [(where, f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}")]
                return _validation_issues(done, where)
            return awaited()
        return _validation_issues(results, where)

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

    async def needed_inputs(self, ctx: NodeContext, inputs: dict[str, Any]) -> list[str]:
        """ComfyUI's ``check_lazy_status`` (sync or async); without one, lazy inputs stay unevaluated."""
        obj = self._instance(ctx)
        check = getattr(obj, "check_lazy_status", None)
        if check is None:
            return []
        data = self._input_lists(ctx, inputs)
        results = map_over_list(lambda _, kw: check(**kw), data, self.INPUT_IS_LIST,
                                on_blocked=lambda _: [])
        needed: list[str] = []
        for r in results:
            r = await r if inspect.isawaitable(r) else r
            needed.extend(n for n in (r or []) if isinstance(n, str))
        return list(dict.fromkeys(needed))

    # Execution ------------------------------------------------------------------------------------------
    def _instance(self, ctx: NodeContext) -> Any:
        obj = ctx.state.get("comfy_v1_object")
        if obj is None or type(obj) is not self.COMFY_CLASS:
            obj = ctx.state["comfy_v1_object"] = self.COMFY_CLASS()
        return obj

    def _input_lists(self, ctx: NodeContext, inputs: dict[str, Any]) -> dict[str, list[Any]]:
        hidden = HiddenValues.of(ctx) if any(spec.hidden for spec in self.INPUTS) else HiddenValues()
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
            data[spec.name] = [value] if spec.raw_link else [to_comfy(spec.type, v) for v in as_list(value)]
        for name, value in inputs.items():  # links on undeclared inputs (a ``**kwargs`` FUNCTION)
            if name not in data and self.input_spec(name) is None:
                data[name] = as_list(value)
        return data

    def _on_blocked(self, ctx: NodeContext) -> Callable[[ExecutionBlocker], ExecutionBlocker]:
        def report(blocker: ExecutionBlocker) -> ExecutionBlocker:
            if blocker.message is None:
                return blocker
            ctx.event("execution_error", {  # as ComfyUI: said once, then silent
                "node_type": self.TYPE, "executed": [], "exception_message": f"Execution Blocked: {blocker.message}",
                "exception_type": "ExecutionBlocked", "traceback": [], "current_inputs": {}, "current_outputs": []})
            return ExecutionBlocker(None)
        return report

    def _call_v1(self, ctx: NodeContext, data: dict[str, list[Any]]) -> list[Any]:
        fn = getattr(self._instance(ctx), self.COMFY_FUNCTION)

        def call(index: int, kwargs: dict[str, Any]) -> Any:
            ctx.check_interrupted()
            with node_call(ctx.node_id, index):  # GraphBuilder ids: <node id>.<call index>.<n>.
                if inspect.iscoroutinefunction(fn):  # one task per call, with this call's context
                    return asyncio.get_running_loop().create_task(fn(**kwargs), context=contextvars.copy_context())
                return fn(**kwargs)

        return map_over_list(call, data, self.INPUT_IS_LIST, on_blocked=self._on_blocked(ctx))

    async def execute(self, ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
        data = self._input_lists(ctx, inputs)
        token = current_node.set(ctx)  # run_blocking copies this context into the worker thread
        try:
            if inspect.iscoroutinefunction(getattr(self.COMFY_CLASS, self.COMFY_FUNCTION)):
                # ComfyUI also accepts ``async def`` node functions: they run on the event loop, concurrently.
                calls = self._call_v1(ctx, data)
                try:
                    results = [await c if isinstance(c, asyncio.Task) else c for c in calls]
                finally:
                    for c in calls:
                        if isinstance(c, asyncio.Task) and not c.done():
                            c.cancel()
            else:
                results = await ctx.run_blocking(self._call_v1, ctx, data)
        finally:
            current_node.reset(token)
        return merge_results(results, self.OUTPUTS)


def _validation_issues(results: list[Any], where: str | None) -> list[tuple[str | None, str]]:
    """VALIDATE_INPUTS results as issues: True (or a blocker) is valid, anything else is the reason."""
    return [(where, "custom validation failed" + ("" if r is False else f": {r}"))
            for r in results if r is not True and not isinstance(r, ExecutionBlocker)]


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
    accepts_any = accepts_any or _function_params(getattr(v1_cls, function))[1]  # FUNCTION(**kwargs)
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
        "ACCEPTS_UNDECLARED_INPUTS": accepts_any,
        "COMFY_CLASS": v1_cls,
        "COMFY_FUNCTION": function,
        "VALIDATED_ARGS": frozenset(params),
        "VALIDATES_ALL": has_kwargs,
        "CHECKS_LINK_TYPES": "input_types" in params,  # VALIDATE_INPUTS(input_types)
        # As ComfyUI's cache signature: a node that asks for its UNIQUE_ID is cached per node.
        "KEYED_BY_NODE_ID": any(spec.hidden and spec.type == UNIQUE_ID for spec in inputs),
        "DEPRECATED": bool(getattr(v1_cls, "DEPRECATED", False)),
        "EXPERIMENTAL": bool(getattr(v1_cls, "EXPERIMENTAL", False)),
        "__module__": getattr(v1_cls, "__module__", __name__),
        "__doc__": v1_cls.__doc__,
    }
    return type(_safe_class_name(class_type), (ComfyV1Node,), namespace)
