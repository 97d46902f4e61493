"""JSON from clients, refused at the door when it could not be stored, sent back or read again.

Python's ``json`` accepts things that break later: ``NaN``/``Infinity`` (and ``1e999``, which becomes ``inf``)
are not JSON, so a stored value makes every later answer that includes it unreadable to a browser (or SQLite
refuses it); a lone surrogate (``"\\ud800"``) cannot be encoded as UTF-8 for storage or for the reply; and
nesting thousands deep raises ``RecursionError`` wherever it is walked or serialised again. ``loads`` refuses
all three with a message that says what and where, before anything is stored or queued.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # arrays/objects inside each other; ComfyUI workflows (with subgraphs) stay well below


class UnsafeJson(ValueError):
    """The text is not JSON we accept; the message says why (and where)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeJson(f"the number {text[:40]} is out of range (larger than a 64-bit float)")
    return value


def _constant(name: str) -> Any:
    raise UnsafeJson(f"{name} is not a JSON number (send null or a finite number)")


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse and check ``data``; ``UnsafeJson`` says what is wrong."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnsafeJson(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(data, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        raise UnsafeJson(f"arrays/objects are nested too deep (at most {max_depth} levels)") from None
    except json.JSONDecodeError as exc:
        raise UnsafeJson(f"not valid JSON: {exc}") from None
    check(value, max_depth)
    return value


def check(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than ``max_depth``, lone surrogates in strings or keys, non-finite floats."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnsafeJson(f"{where}: {item} is not a JSON number")
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise UnsafeJson(f"{where}: arrays/objects are nested too deep (at most {max_depth} levels)")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(str(key), f"{where} key")
                    stack.append((child, depth + 1, f"{where}.{str(key)[:40]}"[-200:]))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]"[-200:]) for i, child in enumerate(item))


def _check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeJson(f"{where.encode('ascii', 'backslashreplace').decode()}: a lone surrogate "
                         f"(\\u{ord(text[exc.start]):04x}) is not text; send valid Unicode") from None
