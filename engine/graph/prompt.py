"""ComfyUI's API prompt format as data: ``{"<id>": {"class_type", "inputs", "_meta"}}``.

A linked input is ``[node_id, output_index]``; anything else is a widget value.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx


@dataclass(frozen=True, slots=True)
class Link:
    node_id: str
    output: int


@dataclass
class PromptNode:
    id: str
    class_type: str
    inputs: dict[str, Any]  # widget values, or Link
    title: str | None = None

    def links(self) -> Iterator[tuple[str, Link]]:
        for name, value in self.inputs.items():
            if isinstance(value, Link):
                yield name, value


class PromptFormatError(ValueError):
    """The JSON is not a prompt at all (as opposed to a prompt that fails validation)."""


def is_link(value: Any) -> bool:
    return (isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str | int)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _unwrap(value: Any) -> Any:
    """The editor wraps list-valued widgets as ``{"__value__": [...]}`` (a bare list would read as a link)."""
    if isinstance(value, dict) and len(value) == 1 and "__value__" in value:
        return value["__value__"]
    return value


@dataclass
class Prompt:
    nodes: dict[str, PromptNode] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Any) -> Prompt:
        if not isinstance(data, dict):
            raise PromptFormatError("a prompt must be a JSON object mapping node ids to nodes")
        nodes: dict[str, PromptNode] = {}
        for node_id, body in data.items():
            node_id = str(node_id)
            if not isinstance(body, dict) or "class_type" not in body:
                raise PromptFormatError(f"node {node_id}: expected an object with 'class_type' and 'inputs'")
            raw_inputs = body.get("inputs", {})
            if not isinstance(raw_inputs, dict):
                raise PromptFormatError(f"node {node_id}: 'inputs' must be an object")
            inputs = {name: Link(str(v[0]), int(v[1])) if is_link(v) else _unwrap(v) for name, v in raw_inputs.items()}
            meta = body.get("_meta") or {}
            nodes[node_id] = PromptNode(node_id, str(body["class_type"]), inputs,
                                        meta.get("title") if isinstance(meta, dict) else None)
        return cls(nodes)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for node in self.nodes.values():
            inputs = {k: [v.node_id, v.output] if isinstance(v, Link)
                      else {"__value__": v} if isinstance(v, list) else v for k, v in node.inputs.items()}
            entry: dict[str, Any] = {"class_type": node.class_type, "inputs": inputs}
            if node.title:
                entry["_meta"] = {"title": node.title}
            out[node.id] = entry
        return out

    def copy(self) -> Prompt:
        return Prompt(copy.deepcopy(self.nodes))

    def graph(self) -> nx.DiGraph:
        """Dependency graph: an edge parent -> child for every link (dangling links excluded)."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for node in self.nodes.values():
            for _, link in node.links():
                if link.node_id in self.nodes:
                    g.add_edge(link.node_id, node.id)
        return g

    def set_input(self, node_id: str, name: str, value: Any) -> None:
        if node_id not in self.nodes:
            raise KeyError(f"no node {node_id!r} in the workflow")
        self.nodes[node_id].inputs[name] = value

    def find_input(self, name: str) -> list[str]:
        """Ids of the nodes that have an input called ``name`` (for ``--set input=value``)."""
        return [n.id for n in self.nodes.values() if name in n.inputs]
