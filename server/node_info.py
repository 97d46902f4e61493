"""``/object_info``: our node classes in ComfyUI's ``node_info`` shape, which the frontend and scripts read.

Inputs come out as ComfyUI declares them (``(TYPE, {options})``, a combo as ``([choices], {options})``) with
widget metadata (default/min/max/step/multiline/tooltip, ``image_upload``/``audio_upload``/``video_upload``
for file pickers, ``forceInput``, and any option a node passes verbatim in ``Input.extra``). Streaming types
(AUDIO_STREAM, TEXT_STREAM, FRAME_STREAM) are ordinary socket type names to the editor.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.graph import types as T
from engine.comfy.mappings import v1_input_types
from engine.graph.node import Node
from engine.graph.registry import NodeRegistry

log = logging.getLogger(__name__)


def node_info(cls: type[Node]) -> dict[str, Any]:
    """One node class as ComfyUI's ``GET /object_info/{class}`` describes it."""
    inputs = v1_input_types(cls)
    order = {section: list(names) for section, names in inputs.items()}
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": order,
        "output": [o.type for o in cls.OUTPUTS],
        "output_is_list": [bool(o.is_list) for o in cls.OUTPUTS],
        "output_name": [o.name for o in cls.OUTPUTS],
        "output_tooltips": [o.tooltip for o in cls.OUTPUTS],
        "name": cls.TYPE,
        "display_name": cls.DISPLAY_NAME or cls.TYPE,
        "description": cls.DESCRIPTION or "",
        "python_module": cls.PYTHON_MODULE or "nodes",
        "category": cls.CATEGORY or "avatar",
        "output_node": bool(cls.OUTPUT_NODE),
        # Our additions (ignored by ComfyUI's frontend): streaming sockets and socket colours.
        "streaming": bool(cls.has_streams()),
        "socket_colours": {t: T.TYPE_COLOURS[t] for t in _types_of(cls) if t in T.TYPE_COLOURS},
    }
    if getattr(cls, "DEPRECATED", False):
        info["deprecated"] = True
    if getattr(cls, "EXPERIMENTAL", False):
        info["experimental"] = True
    if cls.UNAVAILABLE:
        info["unavailable"] = cls.UNAVAILABLE
        info["description"] = (info["description"] + f"\n\nNot yet available: {cls.UNAVAILABLE}").strip()
    return info


def _types_of(cls: type[Node]) -> set[str]:
    return {i.type for i in cls.INPUTS if not i.hidden} | {o.type for o in cls.OUTPUTS}


def object_info(registry: NodeRegistry) -> dict[str, dict[str, Any]]:
    """Every registered node; a class whose declaration cannot be described is logged and left out."""
    out: dict[str, dict[str, Any]] = {}
    for cls in list(registry):
        try:
            out[cls.TYPE] = node_info(cls)
        except Exception:  # a pack's broken INPUT_TYPES must not take the whole editor down
            log.exception("object_info: node %s cannot be described and is left out", cls.TYPE)
    return out
