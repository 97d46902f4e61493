"""The prompt queue and history on Redis (``--queue redis://HOST:PORT/DB``): many servers queue, many workers run.

Delivery is Redis Streams with one consumer group (``workers``): a worker reads an entry with ``XREADGROUP``, which
puts it in the group's pending-entries list under the worker's name, and acknowledges it (``XACK``) only after the
prompt's history entry is written. A worker that dies leaves its entries pending; the member that notices its
heartbeat missing (``engine.queue.cluster``) moves them back to the queue (``requeue_worker``). So every prompt runs at
least once; a second run of the same prompt id replaces its history entry rather than adding one, and node outputs
are idempotent by their cache keys.

Three streams, read in this order: the worker's own (prompts placed on it because its models are loaded), ``front``
(ComfyUI's ``front: true`` and re-queued prompts) and ``normal``. Within a stream the order is first come, first
served (ComfyUI's explicit ``number`` orders the listing, not the delivery). Each prompt's data lives in a hash
(``<prefix>:item:<id>``); the stream entry only names it, so deleting a pending prompt is deleting its hash.

Run Redis with ``appendonly yes`` so that the queue survives a Redis restart.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from engine.queue.cluster import GROUP, Cluster
from engine.queue.sqlite_store import MAXIMUM_HISTORY_SIZE, SENSITIVE_EXTRA_DATA_KEYS, CompletionStatus, QueueItem

log = logging.getLogger(__name__)

# Mark a delivered prompt running on this worker, unless it is finished, deleted, or running on a live worker.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'done' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local status = redis.call('HGET', KEYS[1], 'status')
local worker = redis.call('HGET', KEYS[1], 'worker')
if status == 'running' and worker and worker ~= '' and worker ~= ARGV[1]
   and redis.call('EXISTS', ARGV[4] .. worker) == 1 then return 'busy' end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'stream', ARGV[2], 'entry', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return redis.call('HGETALL', KEYS[1])
"""
# Delete a prompt only while it is pending.
_DELETE_PENDING = """
if redis.call('HGET', KEYS[1], 'status') == 'pending' then
  redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[2], ARGV[1]); return 1
end
return 0
"""
# Put a prompt a lost worker was running back to pending (only if that worker still holds it).
_RELEASE = """
if redis.call('HGET', KEYS[1], 'worker') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'status', 'pending', 'worker', ''); return 1
end
return 0
"""


def _s(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


class RedisQueue:
    """``engine.queue.base.PromptQueue`` on Redis. ``router(prompt) -> worker name | None`` places prompts."""

    blocking_claim = True

    def __init__(self, cluster: Cluster, consumer: str | None = None, block_ms: int = 1000,
                 max_history: int = MAXIMUM_HISTORY_SIZE,
                 router: Callable[[dict[str, Any]], str | None] | None = None):
        self.cluster = cluster
        self.r = cluster.redis
        self.k = cluster.keys
        self.consumer = consumer or cluster.name
        self.block_ms = block_ms
        self.max_history = max_history
        self.router = router
        self._claim = self.r.register_script(_CLAIM)
        self._delete = self.r.register_script(_DELETE_PENDING)
        self._release = self.r.register_script(_RELEASE)
        self._claims: dict[str, tuple[str, bytes]] = {}  # prompt id -> (stream, entry id) this process holds
        self._grouped: set[str] = set()
        self.ensure_groups()

    def ensure_groups(self, *streams: str, known_ok: bool = False) -> None:
        """Create the consumer group of ``streams`` (default: the shared ones) where missing. ``known_ok``: skip
        streams this process has already set up (after a Redis restart, a NOGROUP error sets them up again)."""
        from redis.exceptions import ResponseError

        for stream in streams or (self.k.stream_front, self.k.stream_normal):
            if known_ok and stream in self._grouped:
                continue
            try:
                self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._grouped.add(stream)

    # Queue -------------------------------------------------------------------------------------------------------
    def enqueue(self, prompt: dict[str, Any], extra_data: dict[str, Any] | None = None,
                client_id: str | None = None, prompt_id: str | None = None,
                outputs_to_execute: list[str] | None = None, front: bool = False, number: float | None = None,
                session_id: str | None = None) -> QueueItem:
        prompt_id = prompt_id or str(uuid.uuid4())
        key = self.k.item(prompt_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.hsetnx(key, "status", "pending")
        pipe.incr(self.k.counter)
        pipe.exists(self.k.history_entry(prompt_id))
        fresh, counter, finished_before = pipe.execute()
        if not fresh:
            raise ValueError(f"prompt_id {prompt_id} is already queued; use a new prompt_id")
        if finished_before:  # a re-run of a finished prompt id: its new entry replaces the old one
            self.delete_history([prompt_id])
        counter = int(counter)
        value = float(number) if number is not None else float(-counter if front else counter)
        extra_data = dict(extra_data or {})
        outputs = [str(o) for o in (outputs_to_execute or [])]
        created = time.time()
        worker = None
        if not front and self.router is not None:
            try:
                worker = self.router(prompt)
            except Exception as exc:  # placement is an optimisation: never lose a prompt over it
                log.warning("placement failed (%s); the prompt goes to any worker", exc)
        stream = self.k.stream_front if front else (self.k.stream_worker(worker) if worker else self.k.stream_normal)
        if worker:
            self.ensure_groups(stream, known_ok=True)
        try:
            self._add(key, prompt_id, prompt, extra_data, client_id, outputs, created, session_id, value, worker,
                      stream)
        except BaseException:
            self.r.delete(key)  # not queued after all: the id must stay usable
            raise
        return QueueItem(number=_number(value), prompt_id=prompt_id, prompt=prompt, extra_data=extra_data,
                         client_id=client_id, outputs_to_execute=outputs, status="pending", created=created,
                         session_id=session_id)

    def _add(self, key: str, prompt_id: str, prompt: dict[str, Any], extra_data: dict[str, Any],
             client_id: str | None, outputs: list[str], created: float, session_id: str | None, value: float,
             worker: str | None, stream: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"prompt": json.dumps(prompt), "extra_data": json.dumps(extra_data),
                                "client_id": client_id or "", "outputs": json.dumps(outputs), "created": created,
                                "session_id": session_id or "", "number": value, "attempts": 0, "worker": "",
                                "placed": worker or ""})
        pipe.zadd(self.k.queued, {prompt_id: value})
        pipe.xadd(stream, {"prompt_id": prompt_id})
        pipe.execute()

    def waiting_for(self, worker: str) -> int:
        """Prompts placed on ``worker`` and not yet taken by it."""
        try:
            return int(self.r.xlen(self.k.stream_worker(worker)))
        except Exception:
            return 0

    def _streams(self) -> list[str]:
        return [self.k.stream_worker(self.consumer), self.k.stream_front, self.k.stream_normal]

    def claim_next(self) -> QueueItem | None:
        """Wait up to ``block_ms`` for a prompt; mark it running on this worker and return it."""
        from redis.exceptions import ResponseError

        streams = self._streams()
        try:
            response = self._read(streams)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_groups(*streams)  # first read, or Redis came back empty: (re)create the groups
            response = self._read(streams)
        entries = sorted(((_s(stream), entry_id, fields) for stream, messages in response or []
                          for entry_id, fields in messages), key=lambda e: streams.index(e[0]))
        if not entries:
            return None
        for stream, entry_id, fields in entries[1:]:  # one per call: hand the others back, in front
            self._move(stream, entry_id, fields, self.k.stream_front)
        stream, entry_id, fields = entries[0]
        prompt_id = _s(fields.get(b"prompt_id"))
        verdict = self._claim(keys=[self.k.item(prompt_id), self.k.history_entry(prompt_id)],
                              args=[self.consumer, stream, entry_id, self.k.alive_prefix])
        if not isinstance(verdict, list):  # 'done', 'gone' or 'busy'
            log.info("queue entry %s for prompt %s skipped: %s", _s(entry_id), prompt_id, _s(verdict))
            self._ack(stream, entry_id)
            if _s(verdict) == "done":
                self.r.zrem(self.k.queued, prompt_id)
                self.r.delete(self.k.item(prompt_id))
            return None
        item = _item(prompt_id, dict(zip(verdict[::2], verdict[1::2])))
        if item is None:  # corrupt: it can never run
            self._ack(stream, entry_id)
            return None
        self._claims[prompt_id] = (stream, entry_id)
        return item

    def _read(self, streams: list[str]) -> Any:
        """One entry: from the first stream (in priority order) that has one, else wait on all of them."""
        for stream in streams:
            response = self.r.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=1)
            if response and any(messages for _, messages in response):
                return response
        return self.r.xreadgroup(GROUP, self.consumer, {s: ">" for s in streams}, count=1, block=self.block_ms)

    def _ack(self, stream: str, entry_id: bytes) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.execute()

    def _move(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], to: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(to, fields)
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.execute()

    def _items(self, prompt_ids: list[str]) -> list[QueueItem]:
        if not prompt_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for prompt_id in prompt_ids:
            pipe.hgetall(self.k.item(prompt_id))
        items = []
        for prompt_id, raw in zip(prompt_ids, pipe.execute()):
            item = _item(prompt_id, raw)
            if item is not None:
                items.append(item)
        return items

    def _all(self) -> list[QueueItem]:
        return self._items([_s(p) for p in self.r.zrange(self.k.queued, 0, -1)])

    def pending(self) -> list[QueueItem]:
        return [i for i in self._all() if i.status == "pending"]

    def running(self) -> list[QueueItem]:
        return [i for i in self._all() if i.status == "running"]

    def remaining(self) -> int:
        return int(self.r.zcard(self.k.queued))

    def get(self, prompt_id: str) -> QueueItem | None:
        return _item(prompt_id, self.r.hgetall(self.k.item(prompt_id)))

    def still_queued(self, prompt_ids: Iterable[str]) -> set[str]:
        """Those of ``prompt_ids`` that are still pending or running."""
        ids = list(prompt_ids)
        pipe = self.r.pipeline(transaction=False)
        for prompt_id in ids:
            pipe.exists(self.k.item(prompt_id))
        return {p for p, present in zip(ids, pipe.execute()) if present}

    def worker_of(self, prompt_id: str) -> str | None:
        worker = _s(self.r.hget(self.k.item(prompt_id), "worker"))
        return worker or None

    def delete_pending(self, prompt_ids: Iterable[str]) -> int:
        return sum(int(self._delete(keys=[self.k.item(p), self.k.queued], args=[p])) for p in prompt_ids)

    def clear_pending(self) -> int:
        return self.delete_pending([i.prompt_id for i in self.pending()])

    def recover(self) -> int:
        """At start-up: prompts a previous process of this worker name had taken and not finished go back."""
        return self.requeue_worker(self.consumer)

    def requeue_worker(self, worker: str) -> int:
        """Move every prompt ``worker`` took and did not acknowledge, and every prompt placed on it, back to the
        queue (in front). Returns how many."""
        moved = 0
        own = self.k.stream_worker(worker)
        for stream in (self.k.stream_front, self.k.stream_normal, own):
            try:
                pending = self.r.xpending_range(stream, GROUP, "-", "+", 10_000, consumername=worker)
            except Exception:  # no such stream or group
                continue
            ids = [p["message_id"] for p in pending]
            if not ids:
                continue
            for entry_id, fields in self.r.xclaim(stream, GROUP, "reaper", 0, ids):
                if fields is None:
                    continue
                prompt_id = _s(fields.get(b"prompt_id"))
                self._release(keys=[self.k.item(prompt_id)], args=[worker])
                self._move(stream, entry_id, fields, self.k.stream_front)
                self._claims.pop(prompt_id, None)
                moved += 1
        while self.r.exists(own):  # placed on it, never taken
            try:
                response = self.r.xreadgroup(GROUP, "reaper", {own: ">"}, count=100)
            except Exception:
                break
            messages = [m for _, batch in response or [] for m in batch]
            if not messages:
                break
            for entry_id, fields in messages:
                self._move(own, entry_id, fields, self.k.stream_front)
                moved += 1
        self.r.delete(own)
        for stream in (self.k.stream_front, self.k.stream_normal):
            try:
                self.r.xgroup_delconsumer(stream, GROUP, worker)
            except Exception:
                pass
        if moved:
            log.warning("queue: %d prompt(s) of worker %s queued again", moved, worker)
        return moved

    def complete(self, prompt_id: str, status_str: CompletionStatus, outputs: dict[str, Any],
                 messages: list[list[Any]], timings: dict[str, float] | None = None,
                 error: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> None:
        """Write the history entry, then acknowledge the delivery (in one transaction)."""
        if status_str not in ("success", "error", "interrupted"):
            raise ValueError(f"status_str must be 'success', 'error' or 'interrupted', not {status_str!r}")
        raw = self.r.hgetall(self.k.item(prompt_id))
        claim = self._claims.pop(prompt_id, None)
        if not raw:
            if claim is not None:
                self._ack(*claim)
            raise KeyError(f"prompt {prompt_id} is not in the queue; it was never queued or is already done")
        messages = [list(m) for m in messages]
        if error is not None and not any(m and m[0] == "execution_error" for m in messages):
            messages.append(["execution_error", error])
        record = {_s(k): _s(v) for k, v in raw.items()}
        extra_data = json.loads(record.get("extra_data") or "{}")
        extra_data = {k: v for k, v in extra_data.items() if k not in SENSITIVE_EXTRA_DATA_KEYS}
        entry = {
            "prompt": [_number(float(record.get("number", 0))), prompt_id, json.loads(record.get("prompt") or "{}"),
                       extra_data, json.loads(record.get("outputs") or "[]")],
            "outputs": outputs,
            "status": {"status_str": "success" if status_str == "success" else "error",
                       "completed": status_str == "success", "messages": messages},
            "meta": {**(meta or {}), "worker": self.consumer},
            "timings": timings or {},
        }
        seq = int(self.r.incr(self.k.history_seq))
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.k.history_entry(prompt_id), json.dumps(entry))
        pipe.zadd(self.k.history, {prompt_id: seq})
        pipe.zrem(self.k.queued, prompt_id)
        pipe.delete(self.k.item(prompt_id))
        if claim is not None:
            pipe.xack(claim[0], GROUP, claim[1])
            pipe.xdel(claim[0], claim[1])
        pipe.execute()
        excess = int(self.r.zcard(self.k.history)) - self.max_history
        if excess > 0:
            dropped = [_s(p) for p, _ in self.r.zpopmin(self.k.history, excess)]
            if dropped:
                self.r.delete(*[self.k.history_entry(p) for p in dropped])

    # History -----------------------------------------------------------------------------------------------------
    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, dict[str, Any]]:
        if max_items is not None and max_items <= 0:
            return {}
        total = int(self.r.zcard(self.k.history))
        if offset < 0:
            offset = max(0, total - max_items) if max_items is not None else 0
        end = -1 if max_items is None else offset + max_items - 1
        ids = [_s(p) for p in self.r.zrange(self.k.history, offset, end)]
        if not ids:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for prompt_id, raw in zip(ids, self.r.mget([self.k.history_entry(p) for p in ids])):
            entry = _entry(prompt_id, raw)
            if entry is not None:
                out[prompt_id] = entry
        return out

    def history_item(self, prompt_id: str) -> dict[str, dict[str, Any]]:
        entry = _entry(prompt_id, self.r.get(self.k.history_entry(prompt_id)))
        return {} if entry is None else {prompt_id: entry}

    def history_count(self) -> int:
        return int(self.r.zcard(self.k.history))

    def delete_history(self, prompt_ids: Iterable[str]) -> int:
        ids = list(prompt_ids)
        if not ids:
            return 0
        removed = int(self.r.zrem(self.k.history, *ids))
        self.r.delete(*[self.k.history_entry(p) for p in ids])
        return removed

    def clear_history(self) -> int:
        return self.delete_history([_s(p) for p in self.r.zrange(self.k.history, 0, -1)])


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _item(prompt_id: str, raw: dict[bytes, bytes]) -> QueueItem | None:
    if not raw or b"prompt" not in raw:
        return None
    record = {_s(k): _s(v) for k, v in raw.items()}
    try:
        return QueueItem(number=_number(float(record["number"])), prompt_id=prompt_id,
                         prompt=json.loads(record["prompt"]), extra_data=json.loads(record["extra_data"]),
                         client_id=record.get("client_id") or None, outputs_to_execute=json.loads(record["outputs"]),
                         status="running" if record.get("status") == "running" else "pending",
                         created=float(record.get("created") or 0), session_id=record.get("session_id") or None)
    except (KeyError, ValueError, TypeError) as exc:
        log.error("queue item %s is corrupt, skipped (%s)", prompt_id, exc)
        return None


def _entry(prompt_id: str, raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        log.error("history entry %s is corrupt, skipped (%s)", prompt_id, exc)
        return None
