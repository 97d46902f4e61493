"""The graph of a running prompt: the submitted nodes plus the nodes that expansions add while it runs.

A node may return a sub-graph to run in its place (``NodeResult.expand``). Its nodes join the running
graph as ephemeral nodes with a parent (the node that created them) and a display id (the node the
editor shows their progress and errors on: the parent's, unless the sub-graph names another).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from engine.graph.prompt import Prompt, PromptNode


class RunningGraph:
    def __init__(self, original: Prompt):
        self.original = original
        self.nodes: dict[str, PromptNode] = dict(original.nodes)
        self._parent: dict[str, str] = {}
        self._display: dict[str, str] = {}

    def get(self, node_id: str) -> PromptNode | None:
        return self.nodes.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def ids(self) -> Iterator[str]:
        return iter(list(self.nodes))

    def add(self, node_id: str, node: PromptNode, parent_id: str, display_id: str | None = None) -> None:
        if node_id in self.nodes:
            raise ValueError(f"node id {node_id} is already in the running graph: expanded node ids must be "
                             "unique (GraphBuilder makes them so)")
        self.nodes[node_id] = node
        self._parent[node_id] = parent_id
        self._display[node_id] = display_id or self.display_id(parent_id)

    def is_ephemeral(self, node_id: str) -> bool:
        return node_id in self._parent

    def parent_id(self, node_id: str) -> str | None:
        return self._parent.get(node_id)

    def display_id(self, node_id: str) -> str:
        return self._display.get(node_id, node_id)

    def real_id(self, node_id: str) -> str:
        """The submitted node this one descends from (itself when it was submitted)."""
        while node_id in self._parent:
            node_id = self._parent[node_id]
        return node_id


def closure(start: Iterable[str], parents: Callable[[str], Iterable[str]]) -> set[str]:
    """``start`` and everything reachable through ``parents``."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        nid = stack.pop()
        if nid not in seen:
            seen.add(nid)
            stack.extend(parents(nid))
    return seen
