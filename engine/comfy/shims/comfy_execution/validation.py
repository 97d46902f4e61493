"""``comfy_execution.validation.validate_node_input``: whether a link's type fits an input's type."""

from __future__ import annotations

from typing import Any


def validate_node_input(received_type: Any, input_type: Any, strict: bool = False) -> bool:
    """Types are ``"T1,T2"`` strings; ``"*"`` fits anything. Not strict: the sets overlap; strict: the
    received types are all accepted. Classes that override ``__ne__`` (packs' "any type" tricks) decide
    equality themselves."""
    if not received_type != input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    if "*" in received or "*" in accepted:
        return True
    return received <= accepted if strict else bool(received & accepted)
