"""Durable state of AvatarGraph in one SQLite file (WAL mode): prompt queue, history, settings,
live sessions, dialog memory and latency traces.

ComfyUI keeps its queue and history in memory and loses both on restart; this store does not. Queue items and
history entries keep ComfyUI's shapes, so the server can hand them to ComfyUI's frontend unchanged:

- a queue item as ComfyUI lists it: ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``
  (:meth:`QueueItem.as_comfy`);
- a history entry: ``{"prompt": [...], "outputs": {node_id: ui}, "status": {"status_str", "completed",
  "messages"}, "meta": {...}, "timings": {...}}``.

Thread safety: one connection (``check_same_thread=False``) guarded by a lock; every write runs in a
``BEGIN IMMEDIATE`` transaction, so several processes may also share the file (the busy timeout makes them wait
for each other). Calls block for milliseconds; call them from the event loop only where that is acceptable, or
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.queue.sqlite_sessions import SessionTables, _dumps

log = logging.getLogger(__name__)

QueueStatus = Literal["pending", "running"]
CompletionStatus = Literal["success", "error", "interrupted"]

MAXIMUM_HISTORY_SIZE = 10_000  # ComfyUI's cap; the oldest entries are dropped beyond it
# extra_data keys ComfyUI strips before a prompt goes into history (API keys a client passed along).
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

# MIGRATIONS[v] takes the schema from version v to v + 1. Append to this tuple; never edit a released step.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1: initial schema
        """CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL)""",
        """CREATE TABLE queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT,   -- tie-break between equal numbers: first come first
            prompt_id TEXT NOT NULL UNIQUE,
            number REAL NOT NULL,
            prompt TEXT NOT NULL,
            extra_data TEXT NOT NULL,
            client_id TEXT,
            outputs_to_execute TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'running')),
            created REAL NOT NULL,
            session_id TEXT)""",
        "CREATE INDEX queue_by_status_number ON queue (status, number, id)",
        """CREATE TABLE history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- completion order: newest last
            prompt_id TEXT NOT NULL UNIQUE,
            number REAL NOT NULL,
            prompt TEXT NOT NULL,
            extra_data TEXT NOT NULL,
            client_id TEXT,
            outputs_to_execute TEXT NOT NULL,
            session_id TEXT,
            created REAL NOT NULL,
            completed_at REAL NOT NULL,
            status_str TEXT NOT NULL CHECK (status_str IN ('success', 'error', 'interrupted')),
            outputs TEXT NOT NULL,
            messages TEXT NOT NULL,
            timings TEXT NOT NULL,
            error TEXT,
            meta TEXT NOT NULL)""",
        """CREATE TABLE settings (
            user TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (user, key))""",
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            meta TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
            created REAL NOT NULL,
            updated REAL NOT NULL,
            closed_at REAL)""",
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,   -- dialog order
            session_id TEXT NOT NULL,
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            meta TEXT NOT NULL,
            created REAL NOT NULL)""",
        "CREATE INDEX turns_by_session ON turns (session_id, id)",
        """CREATE TABLE traces (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            turn_id INTEGER,
            stamps TEXT NOT NULL,
            created REAL NOT NULL)""",
        "CREATE INDEX traces_by_session ON traces (session_id, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The database cannot be used as it is (e.g. written by a newer AvatarGraph)."""


@dataclass
class QueueItem:
    number: int | float  # ComfyUI's queue number; lower runs first (an explicit number may be fractional)
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    client_id: str | None
    outputs_to_execute: list[str]
    status: QueueStatus
    created: float
    session_id: str | None

    def as_comfy(self) -> list[Any]:
        """The item as ComfyUI's ``GET /queue`` lists it."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


def _number_out(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class Store(SessionTables):
    """The SQLite store at ``path`` (created with its parent folder if missing)."""

    blocking_claim = False  # engine.queue.base.PromptQueue: claim_next returns at once; the worker waits to be woken

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0,
                 max_history: int = MAXIMUM_HISTORY_SIZE) -> None:
        self.path = Path(path)
        self.max_history = max_history
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("store %s: journal_mode is %s, not WAL", self.path, mode)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front, so read-modify-write is atomic
        across threads and processes."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def schema_version(self) -> int:
        return int(self._read("SELECT version FROM schema_version")[0]["version"])

    def _migrate(self) -> None:
        with self._write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(row["version"])
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}, newer than this AvatarGraph "
                                 f"understands ({SCHEMA_VERSION}); upgrade AvatarGraph or use another --data-dir")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    c.execute(statement)
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version != SCHEMA_VERSION:
                c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            if version != SCHEMA_VERSION:
                log.info("store %s: schema %d -> %d", self.path, version, SCHEMA_VERSION)

    # ------------------------------------------------------------------ queue

    @staticmethod
    def _queue_item(row: sqlite3.Row) -> QueueItem:
        return QueueItem(number=_number_out(row["number"]), prompt_id=row["prompt_id"],
                         prompt=json.loads(row["prompt"]), extra_data=json.loads(row["extra_data"]),
                         client_id=row["client_id"], outputs_to_execute=json.loads(row["outputs_to_execute"]),
                         status=row["status"], created=row["created"], session_id=row["session_id"])

    def _queue_items(self, rows: list[sqlite3.Row]) -> list[QueueItem]:
        items = []
        for row in rows:
            try:
                items.append(self._queue_item(row))
            except (json.JSONDecodeError, TypeError) as e:
                log.error("store %s: queue item %s is corrupt, skipped (%s)", self.path, row["prompt_id"], e)
        return items

    def enqueue(self, prompt: dict[str, Any], extra_data: dict[str, Any] | None = None,
                client_id: str | None = None, prompt_id: str | None = None,
                outputs_to_execute: list[str] | None = None, front: bool = False, number: float | None = None,
                session_id: str | None = None) -> QueueItem:
        """Add a prompt to the queue. Numbers come from a persistent counter that only grows (ComfyUI's
        ``number``); ``front=True`` places the item before every pending one (ComfyUI's negative number);
        an explicit ``number`` is used as given."""
        prompt_id = prompt_id or str(uuid.uuid4())
        extra_data = dict(extra_data or {})
        outputs = [str(o) for o in (outputs_to_execute or [])]
        encoded = (_dumps(prompt, "prompt"), _dumps(extra_data, "extra_data"), _dumps(outputs, "outputs_to_execute"))
        created = time.time()
        with self._write() as c:
            if c.execute("SELECT 1 FROM queue WHERE prompt_id = ?", (prompt_id,)).fetchone():
                raise ValueError(f"prompt_id {prompt_id} is already queued; use a new prompt_id")
            row = c.execute("SELECT value FROM counters WHERE name = 'queue_number'").fetchone()
            counter = 0 if row is None else int(row["value"])
            c.execute("INSERT INTO counters (name, value) VALUES ('queue_number', ?) "
                      "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (counter + 1,))
            if number is not None:
                value = float(number)
            elif front:
                lowest = c.execute("SELECT MIN(number) AS n FROM queue WHERE status = 'pending'").fetchone()["n"]
                value = float(-counter)
                if lowest is not None and lowest <= value:
                    value = float(lowest) - 1
            else:
                value = float(counter)
            c.execute("INSERT INTO queue (prompt_id, number, prompt, extra_data, client_id, outputs_to_execute, "
                      "status, created, session_id) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                      (prompt_id, value, *encoded[:2], client_id, encoded[2], created, session_id))
        return QueueItem(number=_number_out(value), prompt_id=prompt_id, prompt=prompt, extra_data=extra_data,
                         client_id=client_id, outputs_to_execute=outputs, status="pending", created=created,
                         session_id=session_id)

    def claim_next(self) -> QueueItem | None:
        """Mark the lowest-numbered pending item running and return it; None when nothing is pending."""
        while True:
            with self._write() as c:
                row = c.execute("SELECT * FROM queue WHERE status = 'pending' ORDER BY number, id LIMIT 1").fetchone()
                if row is None:
                    return None
                try:
                    item = self._queue_item(row)
                except (json.JSONDecodeError, TypeError) as e:
                    # It can never run; keeping it would block the queue for good.
                    log.error("store %s: queue item %s is corrupt and was dropped (%s)", self.path,
                              row["prompt_id"], e)
                    c.execute("DELETE FROM queue WHERE id = ?", (row["id"],))
                    continue
                c.execute("UPDATE queue SET status = 'running' WHERE id = ?", (row["id"],))
            item.status = "running"
            return item

    def pending(self) -> list[QueueItem]:
        return self._queue_items(self._read("SELECT * FROM queue WHERE status = 'pending' ORDER BY number, id"))

    def running(self) -> list[QueueItem]:
        return self._queue_items(self._read("SELECT * FROM queue WHERE status = 'running' ORDER BY number, id"))

    def remaining(self) -> int:
        """Pending plus running items (ComfyUI's ``queue_remaining``)."""
        return int(self._read("SELECT COUNT(*) AS n FROM queue")[0]["n"])

    def get(self, prompt_id: str) -> QueueItem | None:
        """The queued (pending or running) item, or None."""
        items = self._queue_items(self._read("SELECT * FROM queue WHERE prompt_id = ?", (prompt_id,)))
        return items[0] if items else None

    def delete_pending(self, prompt_ids: Iterable[str]) -> int:
        """Remove pending items (running ones are interrupted elsewhere); returns how many went."""
        ids = list(prompt_ids)
        with self._write() as c:
            return sum(c.execute("DELETE FROM queue WHERE status = 'pending' AND prompt_id = ?", (p,)).rowcount
                       for p in ids)

    def clear_pending(self) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM queue WHERE status = 'pending'").rowcount

    def recover(self) -> int:
        """At start-up: items a killed process left running go back to pending, where their numbers put them
        (in front of what was queued after them). Returns how many."""
        with self._write() as c:
            count = c.execute("UPDATE queue SET status = 'pending' WHERE status = 'running'").rowcount
        if count:
            log.warning("store %s: %d prompt(s) were running when the last process stopped; queued again",
                        self.path, count)
        return count

    def complete(self, prompt_id: str, status_str: CompletionStatus, outputs: dict[str, Any],
                 messages: list[list[Any]], timings: dict[str, float] | None = None,
                 error: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> None:
        """Move a queued item into history in one transaction.

        ``messages`` are ComfyUI's status messages (``[[event_name, data], ...]``). ``error`` is kept with the entry
        and, when ``messages`` holds no ``execution_error``, appended as one so ComfyUI's frontend shows it.
        An interrupted prompt is listed as ComfyUI lists it: ``status_str "error"``, ``completed false``.
        """
        if status_str not in ("success", "error", "interrupted"):
            raise ValueError(f"status_str must be 'success', 'error' or 'interrupted', not {status_str!r}")
        messages = [list(m) for m in messages]
        if error is not None and not any(m and m[0] == "execution_error" for m in messages):
            messages.append(["execution_error", error])
        encoded = (_dumps(outputs, "outputs"), _dumps(messages, "messages"), _dumps(timings or {}, "timings"),
                   None if error is None else _dumps(error, "error"), _dumps(meta or {}, "meta"))
        with self._write() as c:
            row = c.execute("SELECT * FROM queue WHERE prompt_id = ?", (prompt_id,)).fetchone()
            if row is None:
                raise KeyError(f"prompt {prompt_id} is not in the queue; it was never queued or is already done")
            extra_data = row["extra_data"]
            try:
                decoded = json.loads(extra_data)
                if isinstance(decoded, dict) and any(k in decoded for k in SENSITIVE_EXTRA_DATA_KEYS):
                    extra_data = _dumps({k: v for k, v in decoded.items() if k not in SENSITIVE_EXTRA_DATA_KEYS},
                                        "extra_data")
            except json.JSONDecodeError:
                pass  # kept as is; history() logs and skips it
            c.execute("DELETE FROM queue WHERE id = ?", (row["id"],))
            c.execute("DELETE FROM history WHERE prompt_id = ?", (prompt_id,))  # a re-run goes to the end
            c.execute("INSERT INTO history (prompt_id, number, prompt, extra_data, client_id, outputs_to_execute, "
                      "session_id, created, completed_at, status_str, outputs, messages, timings, error, meta) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (prompt_id, row["number"], row["prompt"], extra_data, row["client_id"],
                       row["outputs_to_execute"], row["session_id"], row["created"], time.time(), status_str,
                       *encoded))
            count = c.execute("SELECT COUNT(*) AS n FROM history").fetchone()["n"]
            if count > self.max_history:
                c.execute("DELETE FROM history WHERE seq IN (SELECT seq FROM history ORDER BY seq LIMIT ?)",
                          (count - self.max_history,))

    # ------------------------------------------------------------------ history

    def _history_entry(self, row: sqlite3.Row) -> dict[str, Any] | None:
        try:
            status = row["status_str"]
            return {
                "prompt": [_number_out(row["number"]), row["prompt_id"], json.loads(row["prompt"]),
                           json.loads(row["extra_data"]), json.loads(row["outputs_to_execute"])],
                "outputs": json.loads(row["outputs"]),
                "status": {"status_str": "success" if status == "success" else "error",
                           "completed": status == "success",
                           "messages": json.loads(row["messages"])},
                "meta": json.loads(row["meta"]),
                "timings": json.loads(row["timings"]),
            }
        except (json.JSONDecodeError, TypeError) as e:
            log.error("store %s: history entry %s is corrupt, skipped (%s)", self.path, row["prompt_id"], e)
            return None

    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, dict[str, Any]]:
        """History entries, oldest first, as ComfyUI's ``GET /history`` returns them.

        ComfyUI's paging: ``offset`` counts from the oldest entry; a negative offset with ``max_items`` gives the
        newest ``max_items`` entries (so ``history(max_items=64)`` is what the frontend asks for).
        """
        if max_items is not None and max_items <= 0:
            return {}
        if offset < 0:
            offset = 0
            if max_items is not None:
                total = int(self._read("SELECT COUNT(*) AS n FROM history")[0]["n"])
                offset = max(0, total - max_items)
        rows = self._read("SELECT * FROM history ORDER BY seq LIMIT ? OFFSET ?",
                          (-1 if max_items is None else max_items, offset))
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = self._history_entry(row)
            if entry is not None:
                out[row["prompt_id"]] = entry
        return out

    def history_item(self, prompt_id: str) -> dict[str, dict[str, Any]]:
        """``{prompt_id: entry}``, or ``{}`` when there is no such (readable) entry."""
        rows = self._read("SELECT * FROM history WHERE prompt_id = ?", (prompt_id,))
        entry = self._history_entry(rows[0]) if rows else None
        return {} if entry is None else {prompt_id: entry}

    def history_count(self) -> int:
        return int(self._read("SELECT COUNT(*) AS n FROM history")[0]["n"])

    def delete_history(self, prompt_ids: Iterable[str]) -> int:
        ids = list(prompt_ids)
        with self._write() as c:
            return sum(c.execute("DELETE FROM history WHERE prompt_id = ?", (p,)).rowcount for p in ids)

    def clear_history(self) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM history").rowcount
