"""What the ComfyUI shims know about the node that is running right now.

``engine.comfy.adapter`` sets ``current_node`` around each V1 node call; because ``ctx.run_blocking``
copies the context into the worker thread, ``comfy.utils.ProgressBar`` and
``comfy.model_management.throw_exception_if_processing_interrupted`` called from a pack's code find the
node's context there and report to / check exactly that node (ComfyUI uses process-wide globals instead).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.graph.context import NodeContext

current_node: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar("comfy_current_node",
                                                                                  default=None)


def current_context() -> NodeContext | None:
    """The running node's context, or None outside a node (e.g. at pack import time)."""
    return current_node.get()
