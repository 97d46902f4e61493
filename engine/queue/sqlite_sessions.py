"""The per-user tables of the SQLite store: settings, live sessions, dialog memory and latency traces.

``SessionTables`` is a mixin of ``engine.queue.sqlite_store.Store``, which owns the connection, the write
transaction (``_write``) and the schema; these methods only read and write their tables.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)


@dataclass
class SessionRecord:
    """The stored part of a live conversation session (the live object is ``engine.live.session.Session``)."""
    session_id: str
    workflow: dict[str, Any]
    meta: dict[str, Any]
    status: Literal["open", "closed"]
    created: float
    updated: float
    closed_at: float | None


@dataclass
class Turn:
    id: int
    session_id: str
    role: str
    text: str
    tokens: int
    meta: dict[str, Any]
    created: float


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"store: {what} must be JSON-serialisable ({e})") from e



class SessionTables:
    """Settings, sessions, dialog turns and traces (the queue-independent part of the store)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:  # provided by Store
        raise NotImplementedError

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:  # provided by Store
        raise NotImplementedError

    # ------------------------------------------------------------------ settings

    def get_settings(self, user: str = "default") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for row in self._read("SELECT key, value FROM settings WHERE user = ? ORDER BY key", (user,)):
            try:
                out[row["key"]] = json.loads(row["value"])
            except json.JSONDecodeError as e:
                log.error("store %s: setting %r of user %r is corrupt, skipped (%s)", self.path, row["key"], user, e)
        return out

    def get_setting(self, key: str, user: str = "default", default: Any = None) -> Any:
        rows = self._read("SELECT value FROM settings WHERE user = ? AND key = ?", (user, key))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except json.JSONDecodeError as e:
            log.error("store %s: setting %r of user %r is corrupt (%s)", self.path, key, user, e)
            return default

    def set_setting(self, key: str, value: Any, user: str = "default") -> None:
        self.set_settings({key: value}, user=user)

    def set_settings(self, values: Mapping[str, Any], user: str = "default") -> None:
        """Merge ``values`` into the user's settings (ComfyUI's ``POST /settings``)."""
        encoded = [(user, str(k), _dumps(v, f"setting {k!r}")) for k, v in values.items()]
        with self._write() as c:
            c.executemany("INSERT INTO settings (user, key, value) VALUES (?, ?, ?) "
                          "ON CONFLICT (user, key) DO UPDATE SET value = excluded.value", encoded)

    def delete_setting(self, key: str, user: str = "default") -> bool:
        with self._write() as c:
            return c.execute("DELETE FROM settings WHERE user = ? AND key = ?", (user, key)).rowcount > 0

    # ------------------------------------------------------------------ sessions

    def _session(self, row: sqlite3.Row) -> SessionRecord:
        return SessionRecord(session_id=row["session_id"], workflow=json.loads(row["workflow"]),
                             meta=json.loads(row["meta"]), status=row["status"], created=row["created"],
                             updated=row["updated"], closed_at=row["closed_at"])

    def create_session(self, session_id: str, workflow: dict[str, Any],
                       meta: dict[str, Any] | None = None) -> SessionRecord:
        now = time.time()
        encoded = (_dumps(workflow, "workflow"), _dumps(meta or {}, "meta"))
        with self._write() as c:
            if c.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone():
                raise ValueError(f"session {session_id} already exists")
            c.execute("INSERT INTO sessions (session_id, workflow, meta, status, created, updated) "
                      "VALUES (?, ?, ?, 'open', ?, ?)", (session_id, *encoded, now, now))
        return SessionRecord(session_id, workflow, dict(meta or {}), "open", now, now, None)

    def get_session(self, session_id: str) -> SessionRecord | None:
        rows = self._read("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        return self._session(rows[0]) if rows else None

    def update_session(self, session_id: str, **fields: Any) -> SessionRecord:
        """``workflow=`` and ``meta=`` replace those; any other keyword is merged into ``meta``."""
        with self._write() as c:
            row = c.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            if row is None:
                raise KeyError(f"session {session_id} does not exist")
            record = self._session(row)
            if "workflow" in fields:
                record.workflow = fields.pop("workflow")
            if "meta" in fields:
                record.meta = dict(fields.pop("meta") or {})
            record.meta.update(fields)
            record.updated = time.time()
            c.execute("UPDATE sessions SET workflow = ?, meta = ?, updated = ? WHERE session_id = ?",
                      (_dumps(record.workflow, "workflow"), _dumps(record.meta, "meta"), record.updated, session_id))
        return record

    def close_session(self, session_id: str) -> bool:
        """Mark the session closed; False when there is no open session of that id."""
        now = time.time()
        with self._write() as c:
            return c.execute("UPDATE sessions SET status = 'closed', closed_at = ?, updated = ? "
                             "WHERE session_id = ? AND status = 'open'", (now, now, session_id)).rowcount > 0

    def list_sessions(self, open_only: bool = True) -> list[SessionRecord]:
        where = "WHERE status = 'open' " if open_only else ""
        out = []
        for row in self._read(f"SELECT * FROM sessions {where}ORDER BY created, session_id"):
            try:
                out.append(self._session(row))
            except json.JSONDecodeError as e:
                log.error("store %s: session %s is corrupt, skipped (%s)", self.path, row["session_id"], e)
        return out

    # ------------------------------------------------------------------ dialog memory

    @staticmethod
    def _turn(row: sqlite3.Row) -> Turn:
        return Turn(id=row["id"], session_id=row["session_id"], role=row["role"], text=row["text"],
                    tokens=row["tokens"], meta=json.loads(row["meta"]), created=row["created"])

    def add_turn(self, session_id: str, role: str, text: str, tokens: int,
                 meta: dict[str, Any] | None = None) -> int:
        encoded = _dumps(meta or {}, "meta")
        with self._write() as c:
            return int(c.execute("INSERT INTO turns (session_id, role, text, tokens, meta, created) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 (session_id, role, text, int(tokens), encoded, time.time())).lastrowid)

    def turns(self, session_id: str, limit: int | None = None) -> list[Turn]:
        """The session's turns in dialog order; with ``limit``, the most recent ``limit`` of them."""
        if limit is None:
            rows = self._read("SELECT * FROM turns WHERE session_id = ? ORDER BY id", (session_id,))
        else:
            rows = self._read("SELECT * FROM turns WHERE session_id = ? ORDER BY id DESC LIMIT ?",
                              (session_id, max(0, limit)))[::-1]
        out = []
        for row in rows:
            try:
                out.append(self._turn(row))
            except json.JSONDecodeError as e:
                log.error("store %s: turn %s is corrupt, skipped (%s)", self.path, row["id"], e)
        return out

    def replace_turns(self, session_id: str, turn_ids: Iterable[int], summary_text: str, tokens: int,
                      role: str = "system", meta: dict[str, Any] | None = None) -> int:
        """Replace ``turn_ids`` (e.g. the oldest turns) by one summary turn, which takes the place of the earliest
        of them in dialog order. Returns the summary's turn id."""
        ids = sorted({int(i) for i in turn_ids})
        if not ids:
            raise ValueError("replace_turns needs at least one turn id")
        meta = {"summary_of": ids, **(meta or {})}
        encoded = _dumps(meta, "meta")
        with self._write() as c:
            marks = ",".join("?" * len(ids))
            found = {r["id"] for r in c.execute(f"SELECT id FROM turns WHERE session_id = ? AND id IN ({marks})",
                                                (session_id, *ids))}
            missing = [i for i in ids if i not in found]
            if missing:
                raise KeyError(f"session {session_id} has no turns {missing}")
            c.execute(f"DELETE FROM turns WHERE id IN ({marks})", ids)
            c.execute("INSERT INTO turns (id, session_id, role, text, tokens, meta, created) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)", (ids[0], session_id, role, summary_text, int(tokens), encoded,
                                                       time.time()))
        return ids[0]

    def clear_turns(self, session_id: str) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM turns WHERE session_id = ?", (session_id,)).rowcount

    # ------------------------------------------------------------------ latency traces

    def record_trace(self, session_id: str, turn_id: int | None, stamps: Mapping[str, float]) -> int:
        """Store one turn's time stamps (name -> seconds, e.g. ``{"vad_end": ..., "first_audio": ...}``)."""
        encoded = _dumps({str(k): float(v) for k, v in stamps.items()}, "stamps")
        with self._write() as c:
            return int(c.execute("INSERT INTO traces (session_id, turn_id, stamps, created) VALUES (?, ?, ?, ?)",
                                 (session_id, turn_id, encoded, time.time())).lastrowid)

    def traces(self, session_id: str) -> list[dict[str, Any]]:
        """``[{"id", "session_id", "turn_id", "stamps", "created"}, ...]`` in recording order."""
        out = []
        for row in self._read("SELECT * FROM traces WHERE session_id = ? ORDER BY id", (session_id,)):
            try:
                out.append({"id": row["id"], "session_id": row["session_id"], "turn_id": row["turn_id"],
                            "stamps": json.loads(row["stamps"]), "created": row["created"]})
            except json.JSONDecodeError as e:
                log.error("store %s: trace %s is corrupt, skipped (%s)", self.path, row["id"], e)
        return out
