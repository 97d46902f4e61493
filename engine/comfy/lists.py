"""ComfyUI's list semantics for adapted V1 nodes.

Every input is a list: one value, or the items of a list output (``ComfyList``, our ``ValueList``).
``INPUT_IS_LIST`` nodes get the lists; other nodes are called once per index (shorter lists repeat their last
item). A call whose inputs hold an ``ExecutionBlocker`` is not made: its result is the blocker. The results
are merged into one ``NodeResult``: ``OUTPUT_IS_LIST`` outputs concatenated, several calls giving a list,
``{"ui", "result", "expand"}`` dicts understood (an expansion's links become ``Link``s the executor resolves).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.graph.flow import ExecutionBlocker, ValueList
from engine.graph.node import NodeResult, Output
from engine.graph.prompt import Link, is_link

ComfyList = ValueList  # ComfyUI's name for a list value


def unwrap_value(value: Any) -> Any:
    """The frontend wraps list-valued widgets as ``{"__value__": [...]}`` (a bare list would be a link)."""
    if isinstance(value, dict) and "__value__" in value and len(value) == 1:
        return value["__value__"]
    return value


def as_list(value: Any) -> list[Any]:
    """An input as ComfyUI hands it around: the items of a list value, else the one value."""
    return list(value) if isinstance(value, ValueList) else [unwrap_value(value)]


def _blocker_in(data: dict[str, Any], whole_lists: bool) -> ExecutionBlocker | None:
    for value in data.values():
        for item in value if whole_lists else [value]:
            if isinstance(item, ExecutionBlocker):
                return item
    return None


def map_over_list(call: Callable[[int, dict[str, Any]], Any], data: dict[str, list[Any]], input_is_list: bool,
                  on_blocked: Callable[[ExecutionBlocker], Any] | None = None) -> list[Any]:
    """ComfyUI's ``_map_node_over_list``: ``call(index, kwargs)`` once with the lists, or once per index."""
    def one(index: int, kwargs: dict[str, Any]) -> Any:
        blocker = _blocker_in(kwargs, whole_lists=input_is_list)
        if blocker is not None:
            return on_blocked(blocker) if on_blocked is not None else blocker
        return call(index, kwargs)

    if input_is_list:
        return [one(0, data)]
    if not data:
        return [one(0, {})]
    if any(len(v) == 0 for v in data.values()):
        return []
    return [one(i, {k: v[i if len(v) > i else -1] for k, v in data.items()})
            for i in range(max(len(v) for v in data.values()))]


def _as_links(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(Link(str(v[0]), int(v[1])) if is_link(v) else v for v in values)


def merge_results(results: list[Any], outputs: tuple[Output, ...]) -> NodeResult:
    """One ``NodeResult`` from the results of the calls (see the module docstring)."""
    uis: list[dict[str, Any]] = []
    values: list[tuple[Any, ...]] = []
    expand: dict[str, Any] = {}
    blocked = (lambda b: tuple(b for _ in outputs))
    for r in results:
        if isinstance(r, ExecutionBlocker):
            values.append(blocked(r))
        elif isinstance(r, dict) and ("ui" in r or "result" in r or "expand" in r):
            if r.get("ui"):
                uis.append(dict(r["ui"]))
            result = r.get("result")
            if isinstance(result, ExecutionBlocker):
                values.append(blocked(result))
            elif result is not None:
                values.append(_as_links(tuple(result)) if r.get("expand") else tuple(result))
            if r.get("expand"):
                expand.update(r["expand"])
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
            if out.is_list and isinstance(v[i], list | tuple):
                items.extend(v[i])
            else:
                items.append(v[i])
        if out.is_list or len(values) != 1:
            merged.append(ValueList(items))
        else:
            merged.append(items[0] if items else None)
    ui: dict[str, list[Any]] = {}
    for u in uis:
        for key, val in u.items():
            ui.setdefault(key, []).extend(val if isinstance(val, list | tuple) else [val])
    return NodeResult(tuple(merged), ui, expand or None)
