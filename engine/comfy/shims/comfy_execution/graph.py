"""``comfy_execution.graph``: ``ExecutionBlocker`` and ``DynamicPrompt`` as node packs see them.

``DynamicPrompt`` is a read (and extend) view of our running graph (``engine.graph.dynamic.RunningGraph``):
``get_node`` returns nodes in API format, links as ``[node_id, output_index]``.
"""

from __future__ import annotations

from typing import Any

from engine.graph.dynamic import RunningGraph
from engine.graph.flow import DependencyCycleError, ExecutionBlocker  # noqa: F401
from engine.graph.prompt import Link, Prompt, PromptNode


class NodeNotFoundError(Exception):
    pass


class NodeInputError(Exception):
    pass


def _api_node(node: PromptNode) -> dict[str, Any]:
    return {"class_type": node.class_type,
            "inputs": {k: [v.node_id, v.output] if isinstance(v, Link) else v for k, v in node.inputs.items()}}


class DynamicPrompt:
    """The running graph: the submitted prompt plus nodes added by expansions while it runs."""

    def __init__(self, graph: RunningGraph | dict[str, Any]):
        if not isinstance(graph, RunningGraph):
            graph = RunningGraph(Prompt.from_api(graph))
        self._graph = graph

    def get_node(self, node_id: str) -> dict[str, Any]:
        node = self._graph.get(str(node_id))
        if node is None:
            raise NodeNotFoundError(f"Node {node_id} not found")
        return _api_node(node)

    def has_node(self, node_id: str) -> bool:
        return self._graph.get(str(node_id)) is not None

    def add_ephemeral_node(self, node_id: str, node_info: dict[str, Any], parent_id: str, display_id: str) -> None:
        self._graph.add(str(node_id), Prompt.from_api({node_id: node_info}).nodes[str(node_id)],
                        str(parent_id), str(display_id))

    def get_real_node_id(self, node_id: str) -> str:
        return self._graph.real_id(str(node_id))

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self._graph.parent_id(str(node_id))

    def get_display_node_id(self, node_id: str) -> str:
        return self._graph.display_id(str(node_id))

    def all_node_ids(self) -> set[str]:
        return set(self._graph.ids())

    def get_original_prompt(self) -> dict[str, Any]:
        return self._graph.original.to_api()
