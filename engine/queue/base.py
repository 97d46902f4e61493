"""The prompt queue and history as one interface, with two implementations.

- ``engine.queue.sqlite_store.Store`` (SQLite, the embedded default): one process runs what it queues.
- ``engine.queue.redis_store.RedisQueue`` (``--queue redis://HOST:PORT/DB``): servers queue, any number of worker
  processes on any machines run (``python main.py worker``).

The server's routes and ``engine.queue.worker.PromptWorker`` use only what this protocol names, so they work on either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from engine.queue.sqlite_store import CompletionStatus, QueueItem


@runtime_checkable
class PromptQueue(Protocol):
    # Whether ``claim_next`` waits for work itself (Redis: a blocking read); otherwise the worker sleeps until woken.
    blocking_claim: bool

    def enqueue(self, prompt: dict[str, Any], extra_data: dict[str, Any] | None = None,
                client_id: str | None = None, prompt_id: str | None = None,
                outputs_to_execute: list[str] | None = None, front: bool = False, number: float | None = None,
                session_id: str | None = None) -> QueueItem: ...

    def claim_next(self) -> QueueItem | None: ...

    def pending(self) -> list[QueueItem]: ...

    def running(self) -> list[QueueItem]: ...

    def remaining(self) -> int: ...

    def get(self, prompt_id: str) -> QueueItem | None: ...

    def delete_pending(self, prompt_ids: Iterable[str]) -> int: ...

    def clear_pending(self) -> int: ...

    def recover(self) -> int: ...

    def complete(self, prompt_id: str, status_str: CompletionStatus, outputs: dict[str, Any],
                 messages: list[list[Any]], timings: dict[str, float] | None = None,
                 error: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> None: ...

    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, dict[str, Any]]: ...

    def history_item(self, prompt_id: str) -> dict[str, dict[str, Any]]: ...

    def history_count(self) -> int: ...

    def delete_history(self, prompt_ids: Iterable[str]) -> int: ...

    def clear_history(self) -> int: ...
