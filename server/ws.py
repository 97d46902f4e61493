"""The ``/ws`` hub: ComfyUI's WebSocket messages to the clients that queued each prompt.

Execution events (``engine.graph.events.Event``) go to the client in ``event.client_id`` (as ComfyUI sends them
only to the prompt's client); ``status`` goes to everyone. Preview events become binary frames in ComfyUI's
layout: a 4-byte big-endian event type (1 = preview image) then a 4-byte image type (1 = JPEG, 2 = PNG)
then the image bytes. Each client has its own bounded outbox and sender task, so a slow or vanished client
never holds up execution or the other clients.

Two things differ from the engine's raw events, to match ComfyUI's server: the final ``executing`` with
``node: null`` is sent for every queued prompt however it ended, and only once its history entry is written
(so a script that stops waiting there finds the outputs in ``/history``); and ``progress_state`` (per-node
state for the new frontend's progress display) is sent alongside ``executing``/``progress``/``executed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.graph.events import Event, jsonable
from server import safe_json
from server.comfy_errors import clean_traceback

if TYPE_CHECKING:
    from fastapi import WebSocket

    from engine.app.runtime import Runtime

log = logging.getLogger(__name__)

FORWARDED = frozenset({"execution_start", "execution_cached", "executing", "progress", "executed",
                       "execution_success", "execution_error", "execution_interrupted", "progress_text"})
ENDS = frozenset({"execution_success", "execution_error", "execution_interrupted"})
PREVIEW_IMAGE = 1
IMAGE_TYPES = {"jpeg": 1, "jpg": 1, "png": 2}
OUTBOX_SIZE = 2048
SERVER_FEATURES = {"supports_preview_metadata": False, "max_upload_size": 0}


def encode_preview(fmt: str, payload: bytes) -> bytes:
    return struct.pack(">II", PREVIEW_IMAGE, IMAGE_TYPES.get(fmt.lower(), 1)) + bytes(payload)


@dataclass
class Client:
    sid: str
    websocket: WebSocket
    outbox: asyncio.Queue[str | bytes | None] = field(default_factory=lambda: asyncio.Queue(OUTBOX_SIZE))
    features: dict[str, Any] = field(default_factory=dict)
    sender: asyncio.Task[None] | None = None

    def offer(self, message: str | bytes | None) -> bool:
        try:
            self.outbox.put_nowait(message)
            return True
        except asyncio.QueueFull:
            return False


class ClientHub:
    def __init__(self, runtime: Runtime, max_upload_size: int = 0):
        self.runtime = runtime
        self.clients: dict[str, Client] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._progress: dict[str, dict[str, dict[str, Any]]] = {}  # prompt_id -> node -> state
        self._ended: dict[str, str | None] = {}  # queued prompts that ended, awaiting their history entry -> sid
        self._tasks: set[asyncio.Task[None]] = set()
        self.features = {**SERVER_FEATURES, "max_upload_size": max_upload_size}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop_thread = threading.get_ident()

    # Connections ----------------------------------------------------------------------------------------
    async def serve(self, websocket: WebSocket, client_id: str | None) -> None:
        """Run one WebSocket connection until it closes."""
        sid = client_id if client_id and len(client_id) <= 128 else uuid.uuid4().hex
        await websocket.accept()
        old = self.clients.pop(sid, None)
        if old is not None:
            old.offer(None)
        client = Client(sid, websocket)
        self.clients[sid] = client
        client.sender = asyncio.create_task(self._send_loop(client), name=f"ws-send-{sid[:8]}")
        client.offer(self._json("status", {"status": await self._status_info(), "sid": sid}))
        worker = self.runtime.worker
        current = worker.current if worker is not None else None
        if current is not None and current.client_id == sid:
            node = self._running_node(current.prompt_id)
            client.offer(self._json("executing", {"node": node, "display_node": node,
                                                  "prompt_id": current.prompt_id}))
        try:
            await self._receive_loop(client)
        finally:
            if self.clients.get(sid) is client:
                del self.clients[sid]
            client.offer(None)
            if client.sender is not None:
                try:
                    await asyncio.wait_for(client.sender, timeout=2)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    client.sender.cancel()

    async def _receive_loop(self, client: Client) -> None:
        from starlette.websockets import WebSocketDisconnect

        while True:
            try:
                message = await client.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                client.offer(self._error("binary frames are not accepted on /ws; send JSON text frames"))
                continue
            try:
                body = safe_json.loads(text)
            except safe_json.UnsafeJson as exc:
                client.offer(self._error(f"a /ws frame must be JSON {{\"type\": ..., \"data\": {{...}}}}: {exc}"))
                continue
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                client.offer(self._error("a /ws frame must be an object with a string 'type'"))
                continue
            if body["type"] == "feature_flags":
                data = body.get("data")
                client.features = data if isinstance(data, dict) else {}
                client.offer(self._json("feature_flags", self.features))
            else:
                client.offer(self._error(f"unknown /ws message type {body['type']!r} (known: feature_flags)"))

    async def _send_loop(self, client: Client) -> None:
        ws = client.websocket
        while True:
            message = await client.outbox.get()
            if message is None:
                break
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message)
            except Exception:  # the client went away; its receive loop ends the connection
                break
        try:
            await ws.close()
        except Exception:
            pass

    # Messages -------------------------------------------------------------------------------------------
    @staticmethod
    def _json(type_: str, data: dict[str, Any]) -> str:
        return json.dumps({"type": type_, "data": jsonable(data)})

    def _error(self, message: str) -> str:
        return self._json("error", {"message": message})

    def send(self, message: str | bytes, sid: str | None = None) -> None:
        """Queue a message for one client (``sid``) or all (None). Loop thread only."""
        targets = list(self.clients.values()) if sid is None else [c for c in [self.clients.get(sid)] if c]
        for client in targets:
            if not client.offer(message):
                log.warning("ws client %s is not reading; disconnecting it", client.sid)
                if self.clients.get(client.sid) is client:
                    del self.clients[client.sid]
                if client.sender is not None:
                    client.sender.cancel()
                self._spawn(self._close(client))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _close(client: Client) -> None:
        try:
            await client.websocket.close(code=1008, reason="too slow: messages were piling up")
        except Exception:
            pass

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def on_event(self, event: Event) -> None:
        """The runtime listener: any thread."""
        self._call_on_loop(self._dispatch, event)

    def _dispatch(self, event: Event) -> None:
        sid = event.client_id
        data = event.data
        if event.type == "preview":
            payload = data.get("data")
            if isinstance(payload, bytes | bytearray) and sid is not None:
                self.send(encode_preview(str(data.get("format", "jpeg")), payload), sid)
            return
        if event.type == "node_done":  # not a ComfyUI message: only the progress display learns of it
            prompt_id = str(data.get("prompt_id", ""))
            self._track_progress(event.type, data, prompt_id, sid)
            return
        if event.type not in FORWARDED:
            return
        prompt_id = str(data.get("prompt_id", ""))
        queued = self._is_queued_run(prompt_id)
        if event.type == "executing" and data.get("node") is None:
            if queued:  # held back until the history entry is written (see queue_changed)
                self._ended[prompt_id] = sid
                return
        elif sid is not None:
            if event.type == "execution_error" and "traceback" in data:
                data = {**data, "traceback": clean_traceback(data["traceback"])}
            self.send(self._json(event.type, data), sid)
        self._track_progress(event.type, data, prompt_id, sid)
        if event.type in ENDS:
            self._progress.pop(prompt_id, None)
            if queued:
                self._ended[prompt_id] = sid
            elif event.type != "execution_success" and sid is not None:
                self._send_end(prompt_id, sid)
        elif event.type == "executing" and data.get("node") is None and sid is not None:
            self.send(self._json(event.type, data), sid)

    def _is_queued_run(self, prompt_id: str) -> bool:
        return self.runtime.is_queued_run(prompt_id)

    def _send_end(self, prompt_id: str, sid: str | None) -> None:
        if sid is not None:
            self.send(self._json("executing", {"node": None, "display_node": None, "prompt_id": prompt_id}), sid)

    def _track_progress(self, type_: str, data: dict[str, Any], prompt_id: str, sid: str | None) -> None:
        node = data.get("node")
        if type_ not in ("executing", "progress", "executed", "node_done") or node is None:
            return
        nodes = self._progress.setdefault(prompt_id, {})
        state = nodes.setdefault(str(node), {"value": 0, "max": 1, "state": "running", "node_id": str(node),
                                             "prompt_id": prompt_id, "display_node_id": str(node),
                                             "parent_node_id": None, "real_node_id": str(node)})
        if type_ == "progress":
            state["value"], state["max"] = data.get("value", 0), data.get("max", 1)
        elif type_ in ("executed", "node_done"):
            if state["state"] == "finished":
                return
            state["state"], state["value"] = "finished", state["max"]
        if sid is not None:
            self.send(self._json("progress_state", {"prompt_id": prompt_id, "nodes": nodes}), sid)

    def _running_node(self, prompt_id: str) -> str | None:
        running = [n for n, s in self._progress.get(prompt_id, {}).items() if s["state"] == "running"]
        return running[-1] if running else None

    async def _status_info(self) -> dict[str, Any]:
        remaining = await asyncio.to_thread(self.runtime.queue.remaining)
        return {"exec_info": {"queue_remaining": remaining}}

    def queue_changed(self) -> None:
        """The queue changed (any thread): finish prompts whose history is written, broadcast ``status``."""
        self._call_on_loop(self._schedule_status)

    def _schedule_status(self) -> None:
        for prompt_id in [p for p in self._ended if not self._is_queued_run(p)]:
            self._send_end(prompt_id, self._ended.pop(prompt_id))
        if self.clients:
            self._spawn(self._broadcast_status())

    async def _broadcast_status(self) -> None:
        try:
            info = await self._status_info()
        except Exception:  # the store closed during shutdown
            return
        self.send(self._json("status", {"status": info}))

    async def close_all(self) -> None:
        for client in list(self.clients.values()):
            client.offer(None)
        self.clients.clear()
