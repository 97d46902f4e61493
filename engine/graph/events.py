"""Execution events. Their names and data follow ComfyUI's WebSocket messages so the server forwards them as is.

Types: execution_start, execution_cached, executing, progress, executed, execution_success,
execution_error, execution_interrupted, plus ``node_done`` (a node finished, streams drained) and
``preview`` (binary preview payload).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]
    client_id: str | None = None  # the client that queued the prompt (the server sends it only there)


EventSink = Callable[[Event], None]


def jsonable(value: Any) -> Any:
    """Event data or results as JSON: bytes (binary previews) dropped, unknown objects as their repr."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def discard(_: Event) -> None:
    """An event sink that drops everything."""
