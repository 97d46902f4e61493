"""Live conversations in a cluster: the Talk WebSocket relayed through Redis to the worker that runs the session.

A server started with ``--queue redis://… --no-local-worker`` runs no graphs. When a Talk page connects, the
server picks a worker (``Cluster.choose_worker``: the one with the chat workflow's models loaded and the fewest
sessions), asks it to host the conversation, and from then on only forwards frames: page → ``talk:in:<id>``
(a Redis list the worker pops in order) and worker → ``talk:out:<id>`` (pub/sub: live media is not replayed). The
worker runs the same ``TalkConnection`` as a single-machine server, over a ``RelayedSocket``, so the page cannot
tell the difference, and the session stays on that worker for its whole life. When the worker's heartbeat stops,
the server tells the page to reconnect (close code 1012) and the next connection goes to a live worker.

Frames on Redis start with one tag byte: ``t`` text, ``b`` binary, ``c`` close (JSON code and reason), ``a`` the
worker accepted, ``p`` keep-alive, ``x`` the page left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import WebSocket

from engine.queue.cluster import Cluster, backoff_s, connect_async
from engine.app.runtime import Runtime
from server.talk.connection import TalkConnection

log = logging.getLogger(__name__)

ACCEPT_TIMEOUT_S = 10.0
KEEPALIVE_S = 5.0
SERVER_SILENT_S = 30.0  # a worker ends a relayed session when the server has sent nothing for this long
RECONNECT_CODE = 1012  # "service restart": the page should connect again
CHAT_CLASSES = frozenset({"MicInput", "Whisper", "LLMPersona", "TTS", "FaceAnimate", "AvatarPrepare"})


async def relay_talk(websocket: WebSocket, runtime: Runtime) -> None:
    """Serve one Talk connection on a server without a local worker: forward it to a worker."""
    cluster = runtime.cluster
    assert cluster is not None
    try:
        worker = await asyncio.to_thread(cluster.choose_worker, CHAT_CLASSES, idle_only=False, sessions=True)
    except Exception as exc:
        await _refuse(websocket, f"the cluster queue is unreachable ({exc}); try again shortly", 1013)
        return
    if worker is None:
        await _refuse(websocket, "no worker is running: start one with `python main.py worker --queue "
                                 f"{cluster.url}`", 1013)
        return
    relay_id = uuid.uuid4().hex
    client = connect_async(cluster.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    lost = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_worker_lost(name: str) -> None:
        if name == worker:
            loop.call_soon_threadsafe(lost.set)

    runtime.worker_lost_listeners.append(on_worker_lost)
    try:
        await pubsub.subscribe(cluster.keys.talk_out(relay_id))
        await client.rpush(cluster.keys.talk_open(worker), json.dumps({"relay_id": relay_id, "server": cluster.name}))
        if not await _accepted(pubsub):
            await _refuse(websocket, f"worker {worker} did not take the conversation; reconnect", RECONNECT_CODE)
            return
        log.info("talk relay %s: on worker %s", relay_id[:8], worker)
        tasks = [asyncio.create_task(_downstream(pubsub, websocket), name=f"relay-down-{relay_id[:8]}"),
                 asyncio.create_task(_upstream(websocket, client, cluster, relay_id), name=f"relay-up-{relay_id[:8]}"),
                 asyncio.create_task(lost.wait(), name=f"relay-lost-{relay_id[:8]}")]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if lost.is_set():
            await _refuse(websocket, f"the worker running this conversation ({worker}) stopped; reconnect to "
                                     "continue on another worker", RECONNECT_CODE)
    finally:
        runtime.worker_lost_listeners.remove(on_worker_lost)
        try:
            await client.rpush(cluster.keys.talk_in(relay_id), b"x")
            await client.expire(cluster.keys.talk_in(relay_id), 60)
        except Exception:
            pass
        try:
            await pubsub.aclose()
            await client.aclose()
        except Exception:
            pass


async def _refuse(websocket: WebSocket, message: str, code: int) -> None:
    try:
        await websocket.send_text(json.dumps({"type": "error", "message": message}))
        await websocket.close(code=code)
    except Exception:
        pass


async def _accepted(pubsub: Any) -> bool:
    deadline = time.monotonic() + ACCEPT_TIMEOUT_S
    while time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.5)
        if message is not None and bytes(message["data"][:1]) == b"a":
            return True
    return False


async def _downstream(pubsub: Any, websocket: WebSocket) -> None:
    """Worker → page."""
    while True:
        message = await pubsub.get_message(timeout=1.0)
        if message is None:
            continue
        data = bytes(message["data"])
        tag, body = data[:1], data[1:]
        if tag == b"t":
            await websocket.send_text(body.decode("utf-8"))
        elif tag == b"b":
            await websocket.send_bytes(body)
        elif tag == b"c":
            close = json.loads(body or b"{}")
            await websocket.close(code=int(close.get("code", 1000)), reason=str(close.get("reason", ""))[:120])
            return


async def _upstream(websocket: WebSocket, client: Any, cluster: Cluster, relay_id: str) -> None:
    """Page → worker, with keep-alives while the page is quiet."""
    key = cluster.keys.talk_in(relay_id)
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout=KEEPALIVE_S)
        except asyncio.TimeoutError:
            await client.rpush(key, b"p")
            continue
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await client.rpush(key, b"b" + message["bytes"])
        elif message.get("text") is not None:
            await client.rpush(key, b"t" + message["text"].encode("utf-8"))


class RelayedSocket:
    """What ``TalkConnection`` needs of a WebSocket, over Redis (the worker's end of a relay)."""

    def __init__(self, client: Any, cluster: Cluster, relay_id: str):
        self.client = client
        self.in_key = cluster.keys.talk_in(relay_id)
        self.out_channel = cluster.keys.talk_out(relay_id)
        self.closed = False

    async def receive(self) -> dict[str, Any]:
        quiet_since = time.monotonic()
        while not self.closed:
            item = await self.client.blpop([self.in_key], timeout=1)
            if item is None:
                if time.monotonic() - quiet_since > SERVER_SILENT_S:
                    log.warning("relayed talk %s: the server went quiet; ending the session", self.in_key)
                    break
                continue
            quiet_since = time.monotonic()
            data = bytes(item[1])
            tag, body = data[:1], data[1:]
            if tag == b"t":
                return {"type": "websocket.receive", "text": body.decode("utf-8")}
            if tag == b"b":
                return {"type": "websocket.receive", "bytes": body}
            if tag == b"x":
                break
        self.closed = True
        return {"type": "websocket.disconnect", "code": 1000}

    async def _publish(self, data: bytes) -> None:
        await self.client.publish(self.out_channel, data)

    async def send_text(self, text: str) -> None:
        await self._publish(b"t" + text.encode("utf-8"))

    async def send_bytes(self, data: bytes) -> None:
        await self._publish(b"b" + data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await self._publish(b"c" + json.dumps({"code": code, "reason": reason}).encode("utf-8"))


class TalkHost:
    """A worker's side: takes conversations the servers place on it and runs each as a ``TalkConnection``."""

    def __init__(self, runtime: Runtime):
        assert runtime.cluster is not None
        self.runtime = runtime
        self.cluster = runtime.cluster
        self.active: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        client = connect_async(self.cluster.url)
        key = self.cluster.keys.talk_open(self.cluster.name)
        failures = 0
        try:
            while True:
                try:
                    item = await client.blpop([key], timeout=1)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis away: back off and try again
                    failures += 1
                    if failures == 1:
                        log.warning("talk host: cannot read requests (%s); retrying", exc)
                    await asyncio.sleep(backoff_s(failures))
                    continue
                if item is None:
                    continue
                try:
                    request = json.loads(item[1])
                    relay_id = str(request["relay_id"])
                except (ValueError, KeyError, TypeError):
                    log.warning("talk host: bad request %r", item[1][:200])
                    continue
                task = asyncio.create_task(self._host(client, relay_id), name=f"talk-host-{relay_id[:8]}")
                self.active.add(task)
                task.add_done_callback(self.active.discard)
        finally:
            for task in list(self.active):
                task.cancel()
            await asyncio.gather(*self.active, return_exceptions=True)
            await client.aclose()

    async def _host(self, client: Any, relay_id: str) -> None:
        socket = RelayedSocket(client, self.cluster, relay_id)
        await client.publish(socket.out_channel, b"a")
        log.info("talk host: conversation %s", relay_id[:8])
        connection = TalkConnection(socket, self.runtime)  # type: ignore[arg-type]
        try:
            await connection.serve()
        except Exception:
            log.exception("talk host: conversation %s failed", relay_id[:8])
        finally:
            await socket.close(1000, "session ended")
            try:
                await client.delete(socket.in_key)
            except Exception:
                pass
