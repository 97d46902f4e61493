"""``comfy_execution.utils.get_executing_context``: which node is running in this context."""

from __future__ import annotations

from typing import NamedTuple

from engine.comfy.shims.runtime import current_context


class ExecutionContext(NamedTuple):
    prompt_id: str
    node_id: str
    list_index: int | None


def get_executing_context() -> ExecutionContext | None:
    ctx = current_context()
    if ctx is None:
        return None
    return ExecutionContext(ctx.prompt_id, ctx.node_id, None)
