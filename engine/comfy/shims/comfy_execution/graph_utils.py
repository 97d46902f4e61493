"""``comfy_execution.graph_utils``: ``GraphBuilder`` and ``is_link``, as node packs use them.

A node expands itself by returning ``{"result": (...), "expand": builder.finalize()}``: the result
holds values or links (``node.out(i)``) into the new nodes, which the executor adds to the running
graph. Node ids must be unique in the running graph and the same on every run (so their outputs can
be cached); a builder made without a prefix takes one from the node call that is running
(``<node id>.<call index>.<builder number>.``), set by the ComfyUI adapter through ``node_call``.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator
from typing import Any

from engine.graph.flow import ExecutionBlocker  # noqa: F401  (ComfyUI exports it here too)


def is_link(obj: Any) -> bool:
    """``[node_id, output_index]``: a list of a string id and an integer (a float is tolerated)."""
    return (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], int | float) and not isinstance(obj[1], bool))


class _CallPrefix:
    """Where new builders take their default prefix from: the node call that is running."""

    def __init__(self, root: str, call_index: int, first_graph: int = 0):
        self.root = root
        self.call_index = call_index
        self.graphs = itertools.count(first_graph)

    def allocate(self) -> str:
        return f"{self.root}.{self.call_index}.{next(self.graphs)}."


_current: contextvars.ContextVar[_CallPrefix] = contextvars.ContextVar("graph_builder_prefix",
                                                                       default=_CallPrefix("", 0))


@contextlib.contextmanager
def node_call(node_id: str, call_index: int) -> Iterator[None]:
    """Builders made inside get prefixes ``<node_id>.<call_index>.<n>.``; used around each node call."""
    token = _current.set(_CallPrefix(str(node_id), int(call_index)))
    try:
        yield
    finally:
        _current.reset(token)


class Node:
    """One node of a ``GraphBuilder`` graph."""

    def __init__(self, id: str, class_type: str, inputs: dict[str, Any]):
        self.id = id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, override_display_id: str) -> None:
        """Report this node's progress and errors on another (displayed) node id."""
        self.override_display_id = override_display_id

    def serialize(self) -> dict[str, Any]:
        """The node in API form. As in ComfyUI, ``inputs`` is this node's own dict (not a copy): callers that
        change inputs after ``finalize()`` change the finalized graph too, and some rely on it."""
        data: dict[str, Any] = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            data["override_display_id"] = self.override_display_id
        return data


class GraphBuilder:
    """Builds an API-format graph: ``node(class_type, id=None, **inputs)``, ``finalize()``."""

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else self.alloc_prefix()
        self.nodes: dict[str, Node] = {}
        self._ids = itertools.count(1)

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        """ComfyUI's global setter; here it only affects the current context."""
        _current.set(_CallPrefix(str(prefix_root), int(call_index), int(graph_index)))

    @classmethod
    def alloc_prefix(cls, root: str | None = None, call_index: int | None = None,
                     graph_index: int | None = None) -> str:
        current = _current.get()
        if root is None and call_index is None and graph_index is None:
            return current.allocate()
        return (f"{current.root if root is None else root}.{current.call_index if call_index is None else call_index}"
                f".{next(current.graphs) if graph_index is None else graph_index}.")

    def node(self, class_type: str, id: str | None = None, **kwargs: Any) -> Node:
        if id is None:
            id = str(next(self._ids))
        full_id = self.prefix + str(id)
        existing = self.nodes.get(full_id)
        if existing is not None:
            return existing
        node = self.nodes[full_id] = Node(full_id, class_type, dict(kwargs))
        return node

    def lookup_node(self, id: str) -> Node | None:
        return self.nodes.get(self.prefix + str(id))

    def finalize(self) -> dict[str, dict[str, Any]]:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Point every input linked to output ``index`` of ``node_id`` at ``new_value`` (None unlinks)."""
        target = [self.prefix + str(node_id), index]
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and value[0] == target[0] and value[1] == index:
                    node.set_input(key, new_value)

    def remove_node(self, id: str) -> None:
        self.nodes.pop(self.prefix + str(id), None)


def add_graph_prefix(graph: dict[str, Any], outputs: list[Any], prefix: str) -> tuple[dict[str, Any], list[Any]]:
    """The same graph with every node id (and link inside it) prefixed; outputs' links likewise."""
    def fix(value: Any) -> Any:
        return [prefix + value[0], value[1]] if is_link(value) and value[0] in graph else value

    new_graph = {prefix + node_id: {**node, "inputs": {k: fix(v) for k, v in node.get("inputs", {}).items()}}
                 for node_id, node in graph.items()}
    return new_graph, [fix(o) for o in outputs]
