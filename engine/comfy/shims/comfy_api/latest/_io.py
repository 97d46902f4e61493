"""ComfyUI's V3 node schema (``comfy_api.latest.io``): ``ComfyNode`` classes that declare themselves with
``define_schema() -> Schema`` and run as ``execute(**inputs) -> NodeOutput`` (classmethods).

A ``ComfyNode`` subclass also shows the V1 surface (``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``,
``IS_CHANGED``, ``VALIDATE_INPUTS``, ``check_lazy_status``, ...), derived from its schema, so the V1 adapter
(``engine.comfy.adapter``) runs it like any V1 node. Each call runs on a fresh subclass whose ``hidden``
holds the hidden inputs the schema asked for (``cls.hidden.unique_id``, ...), so calls share no state.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from engine.graph.flow import ExecutionBlocker


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """``cls.hidden`` during a call: the hidden inputs the schema asked for, None for the others."""

    def __init__(self, values: dict[str, Any] | None = None):
        self.__dict__.update(values or {})

    def __getattr__(self, key: str) -> Any:
        return None


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


def _pruned(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# Inputs and outputs ---------------------------------------------------------------------------------------
class Input:
    """An input of the schema; ``Parent`` is the type class it belongs to (``io.Image.Input`` ...)."""

    Parent: ClassVar[Any] = None

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, extra_dict: dict[str, Any] | None = None, raw_link: bool | None = None,
                 advanced: bool | None = None, **_: Any):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.raw_link = raw_link
        self.advanced = advanced
        self.extra_dict = dict(extra_dict or {})

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def get_io_type(self) -> Any:
        return self.io_type

    def as_dict(self) -> dict[str, Any]:
        return _pruned({"display_name": self.display_name, "tooltip": self.tooltip, "lazy": self.lazy,
                        "rawLink": self.raw_link, "advanced": self.advanced}) | _pruned(self.extra_dict)

    def as_v1(self) -> tuple[Any, dict[str, Any]]:
        return self.get_io_type(), self.as_dict()


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: Any = None, socketless: bool | None = None,
                 widget_type: str | None = None, force_input: bool | None = None,
                 extra_dict: dict[str, Any] | None = None, **kw: Any):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, **kw)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | _pruned({"default": self.default, "socketless": self.socketless,
                                            "forceInput": self.force_input})

    def get_io_type(self) -> Any:
        return self.widget_type or self.io_type


class Output:
    Parent: ClassVar[Any] = None

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False, **_: Any):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    @property
    def io_type(self) -> str:
        return self.Parent.io_type


class ComfyTypeI:
    io_type: ClassVar[str] = ""
    Type: ClassVar[Any] = Any

    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    class Output(Output):
        pass


def comfytype(io_type: str, **_: Any) -> Any:
    """Class decorator: the type's name, and its ``Input``/``Output`` classes bound to it."""
    def decorate(cls: type) -> type:
        cls.io_type = io_type
        for name in ("Input", "Output"):
            inner = cls.__dict__.get(name) or getattr(cls, name, None)
            if inner is not None:
                bound = type(f"{cls.__name__}{name}", (inner,), {"Parent": cls})
                bound.__qualname__ = f"{cls.__qualname__}.{name}"
                setattr(cls, name, bound)
        return cls
    return decorate


def Custom(io_type: str) -> type[ComfyTypeIO]:  # noqa: N802 (ComfyUI's name)
    """A type known only by name (a pack's own socket type)."""
    return comfytype(io_type=io_type)(type(f"Custom_{io_type}", (ComfyTypeIO,), {}))


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: bool | None = None,
                     label_on: str | None = None, label_off: str | None = None, **kw: Any):
            super().__init__(id, display_name, optional, tooltip, lazy, default, **kw)
            self.extra_dict.update(_pruned({"label_on": label_on, "label_off": label_off}))


class _NumberInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: float | None = None, min: float | None = None,
                 max: float | None = None, step: float | None = None, round: float | None = None,
                 display_mode: NumberDisplay | None = None, control_after_generate: bool | None = None, **kw: Any):
        super().__init__(id, display_name, optional, tooltip, lazy, default, **kw)
        self.extra_dict.update(_pruned({"min": min, "max": max, "step": step, "round": round,
                                        "display": display_mode.value if display_mode else None,
                                        "control_after_generate": control_after_generate}))


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    class Input(_NumberInput):
        pass


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    class Input(_NumberInput):
        pass


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, multiline: bool = False,
                     placeholder: str | None = None, default: str | None = None,
                     dynamic_prompts: bool | None = None, **kw: Any):
            super().__init__(id, display_name, optional, tooltip, lazy, default, **kw)
            self.extra_dict.update(_pruned({"multiline": multiline or None, "placeholder": placeholder,
                                            "dynamicPrompts": dynamic_prompts}))


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, options: list[Any] | type[Enum] | None = None, display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     default: Any = None, upload: UploadType | None = None, image_folder: FolderType | None = None,
                     **kw: Any):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, **kw)
            self.options = list(options or [])
            if upload is not None:
                self.extra_dict[upload.value] = True
            if image_folder is not None:
                self.extra_dict["image_folder"] = image_folder.value

        def as_v1(self) -> tuple[Any, dict[str, Any]]:
            return list(self.options), self.as_dict()


@comfytype(io_type="COMFY_MULTITYPED_V3")
class MultiType:
    class Input(Input):
        """An input accepting several types (``types=[io.Image, io.Mask]``): a union such as "IMAGE,MASK"."""

        def __init__(self, id: str | Input, types: list[Any], display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, **kw: Any):
            if isinstance(id, Input):  # MultiType.Input(io.Image.Input("x"), types=[...])
                base = id
                id, display_name, optional, tooltip = base.id, base.display_name, base.optional, base.tooltip
            super().__init__(id, display_name, optional, tooltip, **kw)
            self.io_types = [t.io_type if hasattr(t, "io_type") else str(t) for t in types]

        def get_io_type(self) -> str:
            return ",".join(self.io_types)


def _plain(name: str, io_type: str) -> type[ComfyTypeIO]:
    return comfytype(io_type=io_type)(type(name, (ComfyTypeIO,), {}))


Image = _plain("Image", "IMAGE")
Mask = _plain("Mask", "MASK")
Latent = _plain("Latent", "LATENT")
Conditioning = _plain("Conditioning", "CONDITIONING")
Sampler = _plain("Sampler", "SAMPLER")
Sigmas = _plain("Sigmas", "SIGMAS")
Noise = _plain("Noise", "NOISE")
Guider = _plain("Guider", "GUIDER")
Clip = _plain("Clip", "CLIP")
ControlNet = _plain("ControlNet", "CONTROL_NET")
Vae = _plain("Vae", "VAE")
Model = _plain("Model", "MODEL")
ClipVision = _plain("ClipVision", "CLIP_VISION")
ClipVisionOutput = _plain("ClipVisionOutput", "CLIP_VISION_OUTPUT")
StyleModel = _plain("StyleModel", "STYLE_MODEL")
UpscaleModel = _plain("UpscaleModel", "UPSCALE_MODEL")
Audio = _plain("Audio", "AUDIO")
Video = _plain("Video", "VIDEO")
SVG = _plain("SVG", "SVG")
LoraModel = _plain("LoraModel", "LORA_MODEL")
LossMap = _plain("LossMap", "LOSS_MAP")
Hooks = _plain("Hooks", "HOOKS")
FlowControl = _plain("FlowControl", "FLOW_CONTROL")
Accumulation = _plain("Accumulation", "ACCUMULATION")
Point = _plain("Point", "POINT")
FaceAnalysis = _plain("FaceAnalysis", "FACE_ANALYSIS")
BBOX = _plain("BBOX", "BBOX")
SEGS = _plain("SEGS", "SEGS")
AnyType = _plain("AnyType", "*")
Webcam = _plain("Webcam", "WEBCAM")


# Schema and node output ---------------------------------------------------------------------------------
@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    search_aliases: list[str] = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_dev_only: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False
    accept_all_inputs: bool = False
    price_badge: Any = None
    essentials_category: str | None = None

    def __post_init__(self) -> None:
        self.inputs = list(self.inputs or [])
        self.outputs = list(self.outputs or [])
        self.hidden = list(self.hidden or [])

    def validate(self) -> None:
        ids = [i.id for i in self.inputs]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.node_id}: input ids must be unique, got {ids}")

    def v1_input_types(self) -> dict[str, dict[str, Any]]:
        spec: dict[str, dict[str, Any]] = {"required": {}, "optional": {}}
        for item in self.inputs:
            spec["optional" if item.optional else "required"][item.id] = item.as_v1()
        if self.hidden:
            spec["hidden"] = {h.name: h.value for h in self.hidden}
        return spec


class NodeOutput:
    """What ``execute`` returns: output values, and optionally UI data, a sub-graph, or a block."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict[str, Any] | None = None,
                 block_execution: str | None = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        return self.args if self.args else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeOutput:
        return cls(*tuple(data.get("result") or ()), ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


class _UIOutput:
    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError


# The node base class ------------------------------------------------------------------------------------
class _ClassProperty:
    def __init__(self, fn: Any):
        self.fn = fn

    def __get__(self, obj: Any, owner: type) -> Any:
        return self.fn(owner)


def _overrides(cls: type, name: str) -> bool:
    mine = getattr(cls, name, None)
    return mine is not None and getattr(mine, "__func__", mine) is not ComfyNode.__dict__[name].__func__


def _normalized(cls: type[ComfyNode], returned: Any) -> dict[str, Any]:
    if returned is None:
        returned = NodeOutput()
    elif isinstance(returned, ExecutionBlocker):
        returned = NodeOutput(block_execution=returned.message)
    elif isinstance(returned, tuple):
        returned = NodeOutput(*returned)
    elif isinstance(returned, dict):
        returned = NodeOutput.from_dict(returned)
    elif not isinstance(returned, NodeOutput):
        raise TypeError(f"{cls.__name__}.execute returned {type(returned).__name__}; return an io.NodeOutput")
    schema = cls.GET_SCHEMA()
    if returned.expand is not None and not schema.enable_expand:
        raise ValueError(f"{cls.__name__} returned a sub-graph but its Schema does not say enable_expand=True")
    out: dict[str, Any] = {}
    if returned.block_execution is not None:
        out["result"] = ExecutionBlocker(returned.block_execution)
    elif returned.result is not None:
        out["result"] = returned.result
    if returned.ui is not None:
        out["ui"] = returned.ui.as_dict() if isinstance(returned.ui, _UIOutput) else dict(returned.ui)
    if returned.expand is not None:
        out["expand"] = returned.expand
    return out


class ComfyNode:
    """Base class of V3 nodes: override ``define_schema`` and ``execute`` (classmethods)."""

    hidden: ClassVar[HiddenHolder] = HiddenHolder()
    _schema: ClassVar[Schema | None] = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} defines no define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"{cls.__name__} defines no execute()")

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        return [name for name, value in kwargs.items() if value is None]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "_call_clone" in cls.__dict__:
            return
        cls._schema = None
        if not _overrides(cls, "check_lazy_status"):  # as ComfyUI: lazy inputs are asked for only by an override
            cls.check_lazy_status = None  # type: ignore[assignment]
        if _overrides(cls, "fingerprint_inputs"):
            def IS_CHANGED(c: type, **kwargs: Any) -> Any:  # noqa: N802 (ComfyUI's name); hidden ones via cls.hidden
                hidden = {h.name for h in c.GET_SCHEMA().hidden}
                return c.fingerprint_inputs(**{k: v for k, v in kwargs.items() if k not in hidden})
            cls.IS_CHANGED = classmethod(IS_CHANGED)
        if _overrides(cls, "validate_inputs"):
            user = cls.validate_inputs

            def VALIDATE_INPUTS(c: type, **kwargs: Any) -> Any:  # noqa: N802 (ComfyUI's name)
                return c.validate_inputs(**kwargs)
            if inspect.iscoroutinefunction(user):
                async def VALIDATE_INPUTS(c: type, **kwargs: Any) -> Any:  # noqa: N802,F811
                    return await c.validate_inputs(**kwargs)
            # The pack's own parameters (with cls first), which the adapter reads to pass the right inputs.
            VALIDATE_INPUTS.__signature__ = inspect.signature(getattr(user, "__func__", user))  # type: ignore[attr-defined]
            cls.VALIDATE_INPUTS = classmethod(VALIDATE_INPUTS)

    # V1 surface, derived from the schema -------------------------------------------------------------
    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802
        if cls._schema is None:
            schema = cls.define_schema()
            schema.validate()
            cls._schema = schema
        return cls._schema

    @classmethod
    def INPUT_TYPES(cls, include_hidden: bool = True, return_schema: bool = False) -> Any:  # noqa: N802
        spec = cls.GET_SCHEMA().v1_input_types()
        if not include_hidden:
            spec.pop("hidden", None)
        return (spec, cls.GET_SCHEMA()) if return_schema else spec

    RETURN_TYPES = _ClassProperty(lambda c: tuple(o.io_type for o in c.GET_SCHEMA().outputs))
    RETURN_NAMES = _ClassProperty(lambda c: tuple(o.display_name or o.id or o.io_type for o in c.GET_SCHEMA().outputs))
    OUTPUT_IS_LIST = _ClassProperty(lambda c: tuple(o.is_output_list for o in c.GET_SCHEMA().outputs))
    OUTPUT_TOOLTIPS = _ClassProperty(lambda c: tuple(o.tooltip for o in c.GET_SCHEMA().outputs))
    CATEGORY = _ClassProperty(lambda c: c.GET_SCHEMA().category)
    DESCRIPTION = _ClassProperty(lambda c: c.GET_SCHEMA().description)
    DISPLAY_NAME = _ClassProperty(lambda c: c.GET_SCHEMA().display_name)
    OUTPUT_NODE = _ClassProperty(lambda c: c.GET_SCHEMA().is_output_node)
    INPUT_IS_LIST = _ClassProperty(lambda c: c.GET_SCHEMA().is_input_list)
    NOT_IDEMPOTENT = _ClassProperty(lambda c: c.GET_SCHEMA().not_idempotent)
    DEPRECATED = _ClassProperty(lambda c: c.GET_SCHEMA().is_deprecated)
    EXPERIMENTAL = _ClassProperty(lambda c: c.GET_SCHEMA().is_experimental)
    FUNCTION = _ClassProperty(lambda c: "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(c.execute)
                              else "EXECUTE_NORMALIZED")

    @classmethod
    def _clone_for_call(cls, kwargs: dict[str, Any]) -> type[ComfyNode]:
        hidden = {h.name: kwargs.pop(h.name, None) for h in cls.GET_SCHEMA().hidden}
        return type(cls.__name__, (cls,), {"hidden": HiddenHolder(hidden), "_call_clone": True,
                                           "_schema": cls.GET_SCHEMA()})

    def EXECUTE_NORMALIZED(self, **kwargs: Any) -> dict[str, Any]:  # noqa: N802
        cls = type(self)._clone_for_call(kwargs)
        return _normalized(cls, cls.execute(**kwargs))

    async def EXECUTE_NORMALIZED_ASYNC(self, **kwargs: Any) -> dict[str, Any]:  # noqa: N802
        cls = type(self)._clone_for_call(kwargs)
        return _normalized(cls, await cls.execute(**kwargs))
