"""Node expansion: a node's result may carry a sub-graph (``NodeResult.expand``, API format) that runs in its
place. ``add_subgraph`` checks it and adds it to the running graph; ``referenced_links`` and
``resolve_links`` find the links into it in the node's outputs and swap them for the values they point at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import networkx as nx

from engine.graph.dynamic import RunningGraph
from engine.graph.flow import ValueList
from engine.graph.node import Node
from engine.graph.prompt import Link, Prompt, PromptFormatError
from engine.graph.registry import NodeRegistry
from engine.graph.validation import check_node

# What makes an added node unusable; type checks are left to the nodes themselves, as ComfyUI does.
_FATAL = frozenset({"dangling_link", "required_input_missing"})


def add_subgraph(running: RunningGraph, registry: NodeRegistry, parent_id: str,
                 subgraph: dict[str, Any]) -> dict[str, tuple[type[Node], dict[str, Any]]]:
    """Add ``subgraph`` (created by node ``parent_id``) to ``running``; returns each new node's class and
    typed-in values. Raises ``ValueError`` saying what is wrong (nothing is added then)."""
    try:
        prompt = Prompt.from_api(subgraph)
    except PromptFormatError as exc:
        raise ValueError(f"the node's expansion is not an API-format graph: {exc}") from None
    classes: dict[str, type[Node]] = {}
    for nid, node in prompt.nodes.items():
        if nid in running:
            raise ValueError(f"the node's expansion adds node {nid}, which already exists: expanded node ids must be "
                             "unique (use comfy_execution.graph_utils.GraphBuilder)")
        cls = registry.nodes.get(node.class_type)
        if cls is None:
            raise ValueError(f"the node's expansion adds node {nid} of unknown type '{node.class_type}'")
        classes[nid] = cls

    def output_type(link: Link) -> tuple[str | None, str | None]:
        src = prompt.nodes.get(link.node_id) or running.get(link.node_id)
        if src is None:
            return None, f"linked to node {link.node_id}, which is not in the running graph"
        src_cls = classes.get(link.node_id) or registry.nodes.get(src.class_type)
        if src_cls is None or not 0 <= link.output < len(src_cls.OUTPUTS):
            return None, f"linked to output {link.output} of node {link.node_id}, which it does not have"
        return src_cls.OUTPUTS[link.output].type, None

    added: dict[str, tuple[type[Node], dict[str, Any]]] = {}
    problems = []
    for nid, node in prompt.nodes.items():
        values, issues = check_node(node, classes[nid], output_type, own_checks=False)
        problems.extend(str(i) for i in issues if i.type in _FATAL)
        added[nid] = (classes[nid], values)
    if problems:
        raise ValueError("the node's expansion is not valid: " + "; ".join(problems))
    for nid, node in prompt.nodes.items():
        display = subgraph[nid].get("override_display_id") if isinstance(subgraph.get(nid), dict) else None
        running.add(nid, node, parent_id, str(display) if display is not None else None)
    return added


def referenced_links(outputs: tuple[Any, ...]) -> list[Link]:
    """The links in a result's outputs (top level, or items of a list output), each once."""
    found: dict[Link, None] = {}
    for value in outputs:
        if isinstance(value, Link):
            found[value] = None
        elif isinstance(value, list):
            found.update((item, None) for item in value if isinstance(item, Link))
    return list(found)


def resolve_links(outputs: tuple[Any, ...], values: dict[Link, Any]) -> tuple[Any, ...]:
    """``outputs`` with each link replaced by its value; inside a list output, a list value is spliced in."""
    resolved = []
    for value in outputs:
        if isinstance(value, Link):
            value = values[value]
        elif isinstance(value, list):
            items = ValueList() if isinstance(value, ValueList) else type(value)()
            for item in value:
                if isinstance(item, Link):
                    item = values[item]
                    if isinstance(item, ValueList):
                        items.extend(item)
                        continue
                items.append(item)
            value = items
        resolved.append(value)
    return tuple(resolved)


def topological_order(running: RunningGraph, ids: Iterable[str]) -> list[str]:
    """``ids`` parents first; when they wait on each other in a circle (found when run), as given."""
    ids = list(ids)
    sub = nx.DiGraph()
    sub.add_nodes_from(ids)
    for nid in ids:
        for _, link in running.nodes[nid].links():
            if link.node_id in sub:
                sub.add_edge(link.node_id, nid)
    try:
        return list(nx.topological_sort(sub))
    except nx.NetworkXUnfeasible:
        return ids
