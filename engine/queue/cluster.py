"""Cluster membership over Redis: connection, protocol check, worker heartbeats, placement, and the bus.

Every member (a server, ``python main.py worker``) holds one ``Cluster``:

- **connection**: ``connect`` fails within seconds with a clear message when Redis cannot be reached; calls retry
  with exponential backoff, and long-lived loops reconnect with backoff (capped at ``MAX_BACKOFF_S``);
- **protocol**: the first member writes ``CLUSTER_PROTOCOL`` into ``<prefix>:meta``; a member speaking another
  protocol is refused (``ClusterVersionError``) before it touches anything;
- **membership**: each worker announces itself (name, version, device, free VRAM, loaded models, the node classes
  whose models are loaded, running prompt, live sessions) every ``heartbeat_s`` from a thread, so a busy event loop
  cannot make it look dead; its ``alive`` key expires after ``3 × heartbeat_s``;
- **placement**: ``choose_worker`` picks, for a prompt or a live session, a worker that already has the models of its
  node classes loaded;
- **bus**: events of queued prompts (ComfyUI's messages) go from workers to every server, and control messages
  (interrupt, worker lost) from servers to workers, over Redis pub/sub.

The queue itself is ``engine.queue.redis_store.RedisQueue``. Key names are in ``Keys``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.graph.events import Event
from engine.queue.shared_folders import FolderMarkKeeper, SharedFolderError, check_shared_folders
from engine.version import CLUSTER_PROTOCOL, VERSION

log = logging.getLogger(__name__)

GROUP = "workers"  # the consumer group of every queue stream
MAX_BACKOFF_S = 5.0
DEFAULT_HEARTBEAT_S = 2.0


def backoff_s(failures: int, base: float = 0.1) -> float:
    """How long to wait before retry number ``failures`` (1, 2, ...): doubling from ``base``, capped."""
    return min(MAX_BACKOFF_S, base * 2 ** failures)


class ClusterUnavailable(RuntimeError):
    """Redis cannot be reached (at start-up: fatal with this message; while running: retried)."""


class ClusterVersionError(RuntimeError):
    """This member speaks another cluster protocol than the one the Redis database is used with."""


class ClusterFolderError(ClusterVersionError):
    """This member's input or output folder is not the shared one the rest of the cluster uses (refused at start
    like a protocol mismatch: ``main.py`` exits with code 3)."""


@dataclass(frozen=True)
class Keys:
    """Every Redis key and channel the cluster uses, below one prefix (several clusters can share a Redis)."""
    prefix: str = "avatargraph"

    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def folders(self) -> str:  # hash: folder kind -> the shared-folder check mark (engine.queue.shared_folders)
        return f"{self.prefix}:folders"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def alive_prefix(self) -> str:
        return f"{self.prefix}:alive:"

    def alive(self, worker: str) -> str:
        return f"{self.alive_prefix}{worker}"

    def reaping(self, worker: str) -> str:
        return f"{self.prefix}:reaping:{worker}"

    @property
    def counter(self) -> str:
        return f"{self.prefix}:queue_number"

    def item(self, prompt_id: str) -> str:
        return f"{self.prefix}:item:{prompt_id}"

    @property
    def queued(self) -> str:  # sorted set: prompt id -> ComfyUI number, pending and running
        return f"{self.prefix}:queued"

    @property
    def stream_front(self) -> str:
        return f"{self.prefix}:q:front"

    @property
    def stream_normal(self) -> str:
        return f"{self.prefix}:q:normal"

    def stream_worker(self, worker: str) -> str:
        return f"{self.prefix}:q:worker:{worker}"

    @property
    def history(self) -> str:  # sorted set: prompt id -> completion sequence
        return f"{self.prefix}:history"

    @property
    def history_seq(self) -> str:
        return f"{self.prefix}:history_seq"

    def history_entry(self, prompt_id: str) -> str:
        return f"{self.prefix}:hist:{prompt_id}"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def control(self) -> str:
        return f"{self.prefix}:control"

    def talk_open(self, worker: str) -> str:
        return f"{self.prefix}:talk:open:{worker}"

    def talk_in(self, relay_id: str) -> str:
        return f"{self.prefix}:talk:in:{relay_id}"

    def talk_out(self, relay_id: str) -> str:
        return f"{self.prefix}:talk:out:{relay_id}"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def is_redis_url(url: str | None) -> bool:
    return bool(url) and urlsplit(str(url)).scheme in ("redis", "rediss", "unix")


def _client_options() -> dict[str, Any]:
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    return {"socket_connect_timeout": 2.0, "socket_timeout": 10.0, "health_check_interval": 15,
            "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError], "decode_responses": False}


def connect(url: str) -> Any:
    """A ``redis.Redis`` for ``url`` that answered PING; ``ClusterUnavailable`` (within seconds) when it does not."""
    import redis

    try:
        client = redis.Redis.from_url(url, **_client_options())
    except ValueError as exc:
        raise ClusterUnavailable(f"--queue {redact(url)} is not a Redis URL ({exc}); "
                                 "write redis://HOST:PORT/DB") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise ClusterUnavailable(f"cannot reach Redis at {redact(url)} ({exc}); start redis-server there or fix "
                                 "--queue") from None
    return client


def connect_async(url: str) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, **_client_options())


# Messages on the bus ----------------------------------------------------------------------------------------------
def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    return repr(value)


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$b64" in obj:
        return base64.b64decode(obj["$b64"])
    return obj


def encode_message(message: dict[str, Any]) -> bytes:
    return json.dumps(message, default=_default, separators=(",", ":")).encode("utf-8")


def decode_message(raw: bytes | str) -> dict[str, Any]:
    return json.loads(raw, object_hook=_hook)


@dataclass
class WorkerInfo:
    name: str
    version: str = VERSION
    protocol: int = CLUSTER_PROTOCOL
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    device: str = "cpu"
    vram_total: int = 0
    vram_free: int = 0
    loaded: list[str] = field(default_factory=list)  # model ids in memory
    warm: list[str] = field(default_factory=list)  # node classes whose models are in memory
    running: str | None = None  # prompt id
    sessions: list[str] = field(default_factory=list)  # live sessions pinned here
    started: float = field(default_factory=time.time)
    last_seen: float = 0.0
    alive: bool = True  # filled in by Cluster.workers()

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerInfo:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Cluster:
    """This process's handle on the cluster at ``url``; ``name`` identifies it (a worker's consumer name)."""

    def __init__(self, url: str, name: str | None = None, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 prefix: str = "avatargraph"):
        self.url = url
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.heartbeat_s = max(0.1, float(heartbeat_s))
        self.ttl_s = max(3 * self.heartbeat_s, 1.0)
        self.keys = Keys(prefix)
        self.redis = connect(url)
        self._heartbeat_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._publisher = threading.Thread(target=self._publish_loop, name=f"bus-{self.name}", daemon=True)
        self._publisher.start()
        self._folder_keeper: FolderMarkKeeper | None = None

    def close(self) -> None:
        if self._folder_keeper is not None:
            self._folder_keeper.stop()
        self._stop.set()
        self._outbox.put(None)  # what is queued goes out first
        self._publisher.join(timeout=5)
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=self.heartbeat_s + 2)
        self.redis.close()

    # Protocol -------------------------------------------------------------------------------------------------
    def check_protocol(self) -> None:
        """Refuse to join a cluster whose Redis was set up by another protocol version (before touching it)."""
        self.redis.hsetnx(self.keys.meta, "protocol", CLUSTER_PROTOCOL)
        self.redis.hsetnx(self.keys.meta, "version", VERSION)
        meta = {k.decode(): v.decode() for k, v in self.redis.hgetall(self.keys.meta).items()}
        theirs = meta.get("protocol")
        if theirs != str(CLUSTER_PROTOCOL):
            raise ClusterVersionError(
                f"refused: this AvatarGraph {VERSION} speaks cluster protocol {CLUSTER_PROTOCOL}, but the cluster at "
                f"{redact(self.url)} uses protocol {theirs} (set up by AvatarGraph {meta.get('version', '?')}); "
                "run the same AvatarGraph version on the server and every worker")

    def check_shared_folders(self, folders: dict[str, Path]) -> None:
        """Refuse to join unless ``folders`` (``{"input": ..., "output": ...}``) are the folders the other members
        use (``engine.queue.shared_folders``); then keep confirming them from a thread."""
        try:
            tokens = check_shared_folders(self.redis, self.keys.folders, folders, self.name)
        except SharedFolderError as exc:
            raise ClusterFolderError(str(exc)) from None
        self._folder_keeper = FolderMarkKeeper(self.redis, self.keys.folders, folders, tokens, self.name).start()

    # Membership ------------------------------------------------------------------------------------------------
    def announce(self, info: WorkerInfo) -> None:
        info.last_seen = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.workers, info.name, json.dumps(asdict(info)))
        pipe.set(self.keys.alive(info.name), "1", px=int(self.ttl_s * 1000))
        pipe.execute()

    def start_heartbeat(self, describe: Callable[[], WorkerInfo]) -> None:
        """Announce ``describe()`` now and then every ``heartbeat_s`` from a thread until ``close``."""
        self.announce(describe())

        def beat() -> None:
            failures = 0
            while not self._stop.wait(backoff_s(failures, 0.2) if failures else self.heartbeat_s):
                try:
                    self.announce(describe())
                    if failures:
                        log.info("cluster: heartbeat to %s restored", redact(self.url))
                    failures = 0
                except Exception as exc:  # Redis away: keep trying, with backoff
                    failures += 1
                    if failures == 1:
                        log.warning("cluster: heartbeat failed (%s); retrying", exc)
            try:
                self.withdraw(self.name)
            except Exception:
                pass

        self._heartbeat_thread = threading.Thread(target=beat, name=f"heartbeat-{self.name}", daemon=True)
        self._heartbeat_thread.start()

    def withdraw(self, name: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.keys.workers, name)
        pipe.delete(self.keys.alive(name))
        pipe.execute()

    def workers(self) -> list[WorkerInfo]:
        """Every announced worker, each with ``alive`` (its heartbeat key still exists)."""
        raw = self.redis.hgetall(self.keys.workers)
        names = sorted(raw)
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.keys.alive(name.decode()))
        alive = pipe.execute()
        infos = []
        for name, is_alive in zip(names, alive):
            try:
                info = WorkerInfo.from_json(raw[name])
            except (ValueError, TypeError) as exc:
                log.warning("cluster: worker record %s unreadable (%s)", name, exc)
                continue
            info.alive = bool(is_alive)
            infos.append(info)
        return infos

    def lost_workers(self) -> list[str]:
        return [w.name for w in self.workers() if not w.alive]

    def claim_reaping(self, name: str) -> bool:
        """Only one member re-queues a lost worker's prompts."""
        return bool(self.redis.set(self.keys.reaping(name), self.name, nx=True, px=30_000))

    # Placement -------------------------------------------------------------------------------------------------
    def choose_worker(self, classes: Iterable[str], *, idle_only: bool, busy: Callable[[str], bool] | None = None,
                      sessions: bool = False) -> str | None:
        """The live worker with the most of ``classes`` warm (their models loaded); ``None`` when no worker has any
        of them warm (then any worker may take it). ``idle_only``: consider only workers running nothing and with
        nothing waiting for them (``busy(name)``). ``sessions``: among equals, the one with fewest live sessions."""
        wanted = set(classes)
        best: tuple[int, int, str] | None = None
        for info in self.workers():
            if not info.alive or info.protocol != CLUSTER_PROTOCOL:
                continue
            if idle_only and (info.running is not None or (busy is not None and busy(info.name))):
                continue
            score = len(wanted & set(info.warm))
            key = (score, -len(info.sessions) if sessions else 0, info.name)
            if best is None or key[:2] > best[:2]:
                best = key
        if best is None:
            return None
        return best[2] if (best[0] > 0 or sessions) else None

    # Bus -------------------------------------------------------------------------------------------------------
    def publish_event(self, event: Event) -> None:
        """Queue ``event`` for the bus and return at once: a thread publishes, in order, batching what piled up,
        so the event loop never waits on Redis for a progress message."""
        message = {"origin": self.name, "type": event.type, "data": event.data, "client_id": event.client_id}
        self._outbox.put(encode_message(message))

    def _publish_loop(self) -> None:
        while True:
            first = self._outbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 256:
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._outbox.put(None)
                    break
                batch.append(item)
            try:
                pipe = self.redis.pipeline(transaction=False)
                for payload in batch:
                    pipe.publish(self.keys.events, payload)
                pipe.execute()
            except Exception as exc:  # progress messages are best effort; the history entry is the record
                log.warning("cluster: could not publish %d event(s) (%s)", len(batch), exc)

    def publish_control(self, message: dict[str, Any]) -> None:
        self.redis.publish(self.keys.control, encode_message({"origin": self.name, **message}))

    async def listen(self, channels: dict[str, Callable[[dict[str, Any]], Awaitable[None] | None]]) -> None:
        """Deliver messages of ``channels`` (name -> handler) until cancelled, reconnecting with backoff;
        messages this member published itself are skipped."""
        failures = 0
        while True:
            client = connect_async(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                if failures:
                    log.info("cluster: bus reconnected to %s", redact(self.url))
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    channel = message["channel"].decode() if isinstance(message["channel"], bytes) \
                        else message["channel"]
                    try:
                        decoded = decode_message(message["data"])
                    except (ValueError, TypeError):
                        log.warning("cluster: unreadable message on %s", channel)
                        continue
                    if decoded.get("origin") == self.name:
                        continue
                    result = channels[channel](decoded)
                    if asyncio.iscoroutine(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_s(failures)
                if failures == 1:
                    log.warning("cluster: lost the bus at %s (%s); reconnecting", redact(self.url), exc)
                await asyncio.sleep(delay)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass


def event_from_message(message: dict[str, Any]) -> Event:
    return Event(str(message.get("type")), message.get("data") or {}, message.get("client_id"))
