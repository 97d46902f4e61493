"""Socket types: the names that flow along the links of a workflow.

Types are plain strings, as in ComfyUI, so that V1 packs and the editor agree on them.
"""

from __future__ import annotations

# Widget (primitive) types: rendered as widgets in the editor, values stored in the workflow.
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
COMBO = "COMBO"

# Data types that travel between nodes.
IMAGE = "IMAGE"
AUDIO = "AUDIO"
TEXT = "TEXT"
FACE = "FACE"  # a preprocessed avatar: aligned crop, landmarks, regions
VOICE = "VOICE"  # speaker conditioning (latents, embeddings, adaptation targets)
PERSONA = "PERSONA"
VIDEO = "VIDEO"

# Streaming types: the value is an async iterator of chunks delivered through a bounded buffer.
AUDIO_STREAM = "AUDIO_STREAM"
TEXT_STREAM = "TEXT_STREAM"
FRAME_STREAM = "FRAME_STREAM"

ANY = "*"

WIDGET_TYPES = frozenset({INT, FLOAT, STRING, BOOLEAN, COMBO})
STREAM_TYPES = frozenset({AUDIO_STREAM, TEXT_STREAM, FRAME_STREAM})
DATA_TYPES = frozenset({IMAGE, AUDIO, TEXT, FACE, VOICE, PERSONA, VIDEO}) | STREAM_TYPES

# Colours the editor extension uses per socket type (also sent in object_info for other clients).
TYPE_COLOURS: dict[str, str] = {
    IMAGE: "#64b5f6",
    AUDIO: "#81c784",
    TEXT: "#ffd54f",
    FACE: "#f48fb1",
    VOICE: "#aed581",
    PERSONA: "#ce93d8",
    VIDEO: "#4dd0e1",
    AUDIO_STREAM: "#2e7d32",
    TEXT_STREAM: "#f9a825",
    FRAME_STREAM: "#00838f",
}


def is_stream(type_name: str) -> bool:
    return type_name in STREAM_TYPES


def types_compatible(output_type: str, input_type: str) -> bool:
    """Whether a link from an output of ``output_type`` may feed an input of ``input_type``.

    ``"*"`` matches anything (ComfyUI's any-type); comma-separated unions (``"IMAGE,MASK"``),
    as some ComfyUI packs declare, match any member.
    """
    if output_type == ANY or input_type == ANY:
        return True
    outs = {t.strip() for t in output_type.split(",")}
    ins = {t.strip() for t in input_type.split(",")}
    # TEXT and STRING are the same value (a str); ComfyUI packs say STRING.
    for group in (outs, ins):
        if TEXT in group or STRING in group:
            group.update({TEXT, STRING})
    return bool(outs & ins)
