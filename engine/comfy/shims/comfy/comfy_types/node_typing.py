"""Socket type names as an enum (``IO``), the ``INPUT_TYPES`` dict shapes, and the V1 node base class.

``IO.ANY`` ("*") compares equal to every type, and the union members (``NUMBER``, ``PRIMITIVE``) are
comma-separated type lists, which our link check (``engine.graph.types.types_compatible``) understands.
"""

from __future__ import annotations

from abc import ABC
from enum import Enum
from typing import Any, ClassVar, Literal, TypedDict


class IO(str, Enum):
    STRING = "STRING"
    IMAGE = "IMAGE"
    MASK = "MASK"
    LATENT = "LATENT"
    BOOLEAN = "BOOLEAN"
    INT = "INT"
    FLOAT = "FLOAT"
    COMBO = "COMBO"
    CONDITIONING = "CONDITIONING"
    SAMPLER = "SAMPLER"
    SIGMAS = "SIGMAS"
    GUIDER = "GUIDER"
    NOISE = "NOISE"
    CLIP = "CLIP"
    CONTROL_NET = "CONTROL_NET"
    VAE = "VAE"
    MODEL = "MODEL"
    LORA_MODEL = "LORA_MODEL"
    LOSS_MAP = "LOSS_MAP"
    CLIP_VISION = "CLIP_VISION"
    CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
    STYLE_MODEL = "STYLE_MODEL"
    GLIGEN = "GLIGEN"
    UPSCALE_MODEL = "UPSCALE_MODEL"
    AUDIO = "AUDIO"
    WEBCAM = "WEBCAM"
    POINT = "POINT"
    FACE_ANALYSIS = "FACE_ANALYSIS"
    BBOX = "BBOX"
    SEGS = "SEGS"
    VIDEO = "VIDEO"
    ANY = "*"
    NUMBER = "FLOAT,INT"
    PRIMITIVE = "STRING,FLOAT,INT,BOOLEAN"

    def __str__(self) -> str:
        return self.value

    def __ne__(self, other: object) -> bool:
        """ANY matches every type; a union matches the same set of types in any order."""
        if self.value == "*" or other == "*":
            return False
        if not isinstance(other, str):
            return True
        return set(self.value.split(",")) != set(str(other).split(","))


class InputTypeOptions(TypedDict, total=False):
    default: Any
    defaultInput: bool
    forceInput: bool
    lazy: bool
    rawLink: bool
    tooltip: str
    hidden: bool
    advanced: bool
    min: float
    max: float
    step: float
    round: float | Literal[False]
    label_on: str
    label_off: str
    multiline: bool
    placeholder: str
    dynamicPrompts: bool
    image_upload: bool
    image_folder: Literal["input", "output", "temp"]
    remote: dict[str, Any]
    control_after_generate: bool
    options: list[Any]


class HiddenInputTypeDict(TypedDict, total=False):
    node_id: Literal["UNIQUE_ID"]
    unique_id: Literal["UNIQUE_ID"]
    prompt: Literal["PROMPT"]
    extra_pnginfo: Literal["EXTRA_PNGINFO"]
    dynprompt: Literal["DYNPROMPT"]


class InputTypeDict(TypedDict, total=False):
    required: dict[str, tuple[Any, InputTypeOptions] | tuple[Any]]
    optional: dict[str, tuple[Any, InputTypeOptions] | tuple[Any]]
    hidden: HiddenInputTypeDict


class ComfyNodeABC(ABC):
    """What a V1 node class declares (the adapter reads these class attributes)."""

    DESCRIPTION: ClassVar[str]
    CATEGORY: ClassVar[str]
    EXPERIMENTAL: ClassVar[bool]
    DEPRECATED: ClassVar[bool]
    RETURN_TYPES: ClassVar[tuple[Any, ...]]
    RETURN_NAMES: ClassVar[tuple[str, ...]]
    OUTPUT_TOOLTIPS: ClassVar[tuple[str, ...]]
    FUNCTION: ClassVar[str]
    OUTPUT_NODE: ClassVar[bool]
    INPUT_IS_LIST: ClassVar[bool]
    OUTPUT_IS_LIST: ClassVar[tuple[bool, ...]]

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:  # noqa: N802 (ComfyUI's name)
        return {"required": {}}


class CheckLazyMixin:
    """A ``check_lazy_status`` that asks for every lazy input not yet evaluated (None)."""

    def check_lazy_status(self, **kwargs: Any) -> list[str]:
        return [name for name, value in kwargs.items() if value is None]


class FileLocator(TypedDict):
    filename: str
    subfolder: str
    type: Literal["input", "output", "temp"]
