"""The typed node API: a node class is its own schema.

A node declares its inputs (with widget metadata), outputs, category, whether it is an output node and
whether it is deterministic; the engine validates declared widget values with a pydantic model built
from the declaration, and runs the node with ``execute``.

    class Gain(Node):
        CATEGORY = "audio"
        INPUTS = (Input.socket("audio", AUDIO), Input.number("db", default=0.0, min=-60, max=24, step=0.5))
        OUTPUTS = (Output("audio", AUDIO),)

        def run(self, ctx, audio, db):        # a plain ``def`` runs in a worker thread
            return (audio.gain(db),)

Async ``run`` methods run on the event loop and must not block; streaming outputs are returned as async
iterables (see ``engine.graph.streams``). A plain output that is only known once the node's streams have ended may be
returned as an ``asyncio.Future`` (a deferred output): consumers receive its value when it resolves. A node fed
both such a deferred value and a stream made from the same producer would wait for ever, so feed it one or the
other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from engine.graph import types as T
if TYPE_CHECKING:
    from engine.graph.context import NodeContext

Choices = Sequence[Any] | Callable[[], Sequence[Any]]


@dataclass(frozen=True)
class Input:
    """One declared input. Widget inputs (INT, FLOAT, STRING, BOOLEAN, COMBO) hold values; others are sockets."""

    name: str
    type: str
    required: bool = True
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Choices | None = None
    multiline: bool = False
    upload: str | None = None  # "image" | "audio" | "video": a file picker over the input folder
    tooltip: str = ""
    force_input: bool = False  # a widget type shown as a socket
    hidden: bool = False
    extra: tuple[tuple[str, Any], ...] = ()  # further widget options passed to the editor verbatim
    # Computed only when the node asks for it (``Node.needed_inputs``); unrequested lazy inputs are None.
    lazy: bool = False
    # The node receives the link itself (``[node_id, output_index]``) and its producer is not run for it.
    raw_link: bool = False
    # Whether a value typed into the workflow may stand in for a link on a socket input. None: for the
    # any-type and for unions that include a widget type ("FLOAT,IMAGE"); the node checks it (check_inputs).
    literal: bool | None = None

    # Constructors -------------------------------------------------------------------------------------
    @classmethod
    def integer(cls, name: str, default: int = 0, min: int | None = None, max: int | None = None,
                step: int = 1, **kw: Any) -> Input:
        return cls(name, T.INT, default=default, min=min, max=max, step=step, **kw)

    @classmethod
    def number(cls, name: str, default: float = 0.0, min: float | None = None, max: float | None = None,
               step: float = 0.01, **kw: Any) -> Input:
        return cls(name, T.FLOAT, default=default, min=min, max=max, step=step, **kw)

    @classmethod
    def string(cls, name: str, default: str = "", multiline: bool = False, **kw: Any) -> Input:
        return cls(name, T.STRING, default=default, multiline=multiline, **kw)

    @classmethod
    def boolean(cls, name: str, default: bool = False, **kw: Any) -> Input:
        return cls(name, T.BOOLEAN, default=default, **kw)

    @classmethod
    def combo(cls, name: str, choices: Choices, default: Any = None, **kw: Any) -> Input:
        return cls(name, T.COMBO, default=default, choices=choices, **kw)

    @classmethod
    def file(cls, name: str, kind: str, choices: Choices, **kw: Any) -> Input:
        """A file picker over the input folder (ComfyUI's ``image_upload`` convention)."""
        return cls(name, T.COMBO, choices=choices, upload=kind, **kw)

    @classmethod
    def socket(cls, name: str, type: str, required: bool = True, **kw: Any) -> Input:
        return cls(name, type, required=required, **kw)

    # Queries ------------------------------------------------------------------------------------------
    @cached_property
    def is_widget(self) -> bool:
        return self.type in T.WIDGET_TYPES and not self.force_input

    @cached_property
    def accepts_literal(self) -> bool:
        if self.is_widget:
            return True
        if self.literal is not None:
            return self.literal
        members = {t.strip() for t in self.type.split(",")}
        return T.ANY in members or bool(members & T.WIDGET_TYPES)

    def current_choices(self) -> list[Any] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def default_value(self) -> Any:
        if self.default is not None:
            return self.default
        if self.type == T.COMBO:
            opts = self.current_choices() or []
            return opts[0] if opts else None
        return None


@dataclass(frozen=True)
class Output:
    name: str
    type: str
    tooltip: str = ""
    is_list: bool = False


@dataclass
class NodeResult:
    """What ``run`` may return instead of a bare tuple: outputs plus the UI dict shown in history."""

    outputs: tuple[Any, ...] = ()
    ui: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # A sub-graph (API format, ids unique in the run) that runs in the node's place: ``outputs`` may hold
    # ``Link``s to its nodes, which the executor replaces by their values (node expansion).
    expand: dict[str, Any] | None = None


class NodeInputError(ValueError):
    """A node rejected its input at run time; the message says what to do."""

    def __init__(self, input_name: str, message: str):
        super().__init__(message)
        self.input_name = input_name


class Node:
    """Base class of every native node. Subclasses declare the class variables below."""

    TYPE: ClassVar[str] = ""  # the class_type in workflows; defaults to the class name
    DISPLAY_NAME: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = "avatar"
    DESCRIPTION: ClassVar[str] = ""
    INPUTS: ClassVar[tuple[Input, ...]] = ()
    OUTPUTS: ClassVar[tuple[Output, ...]] = ()
    OUTPUT_NODE: ClassVar[bool] = False
    DETERMINISTIC: ClassVar[bool] = True
    # Set to a sentence while a node is declared but its implementation has not landed: validation
    # then fails with "not yet available", and the node never produces an output.
    UNAVAILABLE: ClassVar[str | None] = None
    PYTHON_MODULE: ClassVar[str] = ""  # set by the registry: which module or pack defined the node
    # Links on inputs the node does not declare are passed to it (a ``**kwargs`` node) instead of refused.
    ACCEPTS_UNDECLARED_INPUTS: ClassVar[bool] = False
    # The node's result depends on which node it is (it reads its own id): its cache key includes the node id,
    # so equal nodes elsewhere in this or another workflow do not share its results.
    KEYED_BY_NODE_ID: ClassVar[bool] = False
    # The node checks the types of its links itself (``check_inputs`` receives ``__input_types__``):
    # validation then accepts a link of any type on its inputs.
    CHECKS_LINK_TYPES: ClassVar[bool] = False

    def __init__(self, node_id: str):
        self.node_id = node_id

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("TYPE"):
            cls.TYPE = cls.__name__
        if not cls.__dict__.get("DISPLAY_NAME"):
            cls.DISPLAY_NAME = cls.TYPE

    # Declaration queries ------------------------------------------------------------------------------
    @classmethod
    def input_spec(cls, name: str) -> Input | None:
        return _input_index(cls).get(name)

    @classmethod
    def output_types(cls) -> tuple[str, ...]:
        return tuple(o.type for o in cls.OUTPUTS)

    @classmethod
    def has_streams(cls) -> bool:
        return _has_streams(cls)

    # Hooks --------------------------------------------------------------------------------------------
    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        """Outside state that the cache key must include (ComfyUI's ``IS_CHANGED``), e.g. a file hash."""
        return None

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        """Extra validation of the values typed into the workflow (widgets, and literals on sockets that
        accept them) beyond the declaration: ``[(input_name, reason), ...]``. May be a coroutine."""
        return []

    async def needed_inputs(self, ctx: NodeContext, inputs: dict[str, Any]) -> list[str]:
        """Which lazy inputs the node needs, given ``inputs`` (lazy ones not yet computed are None); asked
        again after those are computed, until it names none. Default: every lazy input."""
        return [spec.name for spec in self.INPUTS if spec.lazy and inputs.get(spec.name) is None]

    @classmethod
    def validate_widgets(cls, values: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Validate and coerce declared widget values with pydantic; returns (values, [(input, reason)])."""
        memo = _validated(cls)
        try:
            memo_key: Any = tuple(sorted(values.items()))
            hash(memo_key)
        except TypeError:
            memo_key = None
        if memo_key is not None and memo_key in memo:
            coerced_values, memo_errors = memo[memo_key]
            return dict(coerced_values), list(memo_errors)
        out, errors = cls._validate_widgets(values)
        if memo_key is not None and not any(callable(i.choices) for i in cls.INPUTS):  # file lists change
            if len(memo) > 4096:
                memo.clear()
            memo[memo_key] = (dict(out), list(errors))
        return out, errors

    @classmethod
    def _validate_widgets(cls, values: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        model = _widget_model(cls)
        errors: list[tuple[str, str]] = []
        present = {k: v for k, v in values.items() if k in model.model_fields}
        if not present and not any(i.type == T.COMBO for i in cls.INPUTS):
            return dict(values), errors
        try:
            coerced = model.model_validate(present).model_dump(exclude_unset=True)
        except pydantic.ValidationError as exc:
            coerced = dict(present)
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else "?"
                errors.append((name, f"{err['msg']} (got {err.get('input')!r})"))
        for spec in cls.INPUTS:
            if spec.type != T.COMBO or spec.name not in values:
                continue
            opts = spec.current_choices()
            if opts is not None and values[spec.name] not in opts:
                shown = ", ".join(map(str, opts[:10])) + (" ..." if len(opts) > 10 else "")
                what = "file" if spec.upload else "value"
                errors.append((spec.name, f"{what} {values[spec.name]!r} is not among the choices: [{shown}]"))
        out = {**values, **coerced}
        return out, errors

    # Execution ----------------------------------------------------------------------------------------
    async def execute(self, ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
        """Run the node; async ``run`` on the loop, plain ``run`` in a worker thread."""
        run = getattr(self, "run", None)
        if run is None:
            raise TypeError(f"{type(self).__name__} defines no run()")
        kind = _run_kind(type(self))
        if kind == "async":
            result = await run(ctx, **inputs)
        elif kind == "asyncgen":
            result = (run(ctx, **inputs),)
        else:
            result = await ctx.run_blocking(run, ctx, **inputs)
        return as_result(result, len(self.OUTPUTS))


def as_result(result: Any, n_outputs: int) -> NodeResult:
    if isinstance(result, NodeResult):
        return result
    if result is None:
        return NodeResult((None,) * n_outputs)
    if not isinstance(result, tuple):
        result = (result,)
    return NodeResult(result)


@cache
def _has_streams(cls: type[Node]) -> bool:
    return any(T.is_stream(i.type) for i in cls.INPUTS) or any(T.is_stream(o.type) for o in cls.OUTPUTS)


@cache
def _run_kind(cls: type[Node]) -> str:
    run = getattr(cls, "run", None)
    if inspect.iscoroutinefunction(run):
        return "async"
    if inspect.isasyncgenfunction(run):
        return "asyncgen"
    return "blocking"


@cache
def _validated(cls: type[Node]) -> dict[Any, tuple[dict[str, Any], list[tuple[str, str]]]]:
    """Memo of widget validation per class: the same values validate the same way."""
    return {}


@cache
def _input_index(cls: type[Node]) -> dict[str, Input]:
    return {i.name: i for i in cls.INPUTS}


_PY_TYPES: dict[str, type] = {T.INT: int, T.FLOAT: float, T.STRING: str, T.BOOLEAN: bool}


@cache
def _widget_model(cls: type[Node]) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for spec in cls.INPUTS:
        py = _PY_TYPES.get(spec.type)
        if py is None or spec.force_input:
            continue
        constraints: dict[str, Any] = {}
        if spec.min is not None:
            constraints["ge"] = spec.min
        if spec.max is not None:
            constraints["le"] = spec.max
        fields[spec.name] = (py | None, pydantic.Field(default=None, **constraints))
    name = f"{cls.__name__}Widgets".replace(" ", "_")
    return pydantic.create_model(name, __config__=pydantic.ConfigDict(extra="ignore"), **fields)
