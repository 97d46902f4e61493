"""Values that steer execution rather than carry data: blockers and list values.

``ExecutionBlocker(message)`` returned as an output stops every node it reaches: a node whose input is a
blocker does not run, and each of its outputs is that blocker in turn (a switch that turns a branch
off). With a message, the first node it stops reports it as an error event; without, nothing is said.

``ValueList`` is an output that holds several values (ComfyUI's list outputs): consumers that do not take
lists are run once per item, and an item that is a blocker stops only that item.
"""

from __future__ import annotations

from typing import Any


class ExecutionBlocker:
    """Stops the nodes it reaches; see the module docstring."""

    __slots__ = ("message",)

    def __init__(self, message: str | None = None):
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"


class ValueList(list):  # type: ignore[type-arg]
    """A list output: consumers map over its items (see the module docstring)."""


class DependencyCycleError(Exception):
    """Nodes wait on each other; raised on the node that would close the circle."""


def first_blocker(values: Any) -> ExecutionBlocker | None:
    """The blocker among ``values`` (top level only), if any."""
    for value in values:
        if isinstance(value, ExecutionBlocker):
            return value
    return None
