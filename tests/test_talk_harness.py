"""Test harness (no tests here): a real uvicorn server with the Talk router on 127.0.0.1, and a WebSocket client
that speaks the Talk protocol and records what it receives."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.queue.redis_server import free_port
from engine.graph.registry import NodeRegistry
from engine.app.runtime import Runtime, RuntimeConfig

HEADER = struct.Struct("<BId")



@dataclass
class Served:
    url: str  # http://127.0.0.1:port
    runtime: Runtime
    app: Any  # the FastAPI app (inside the security middleware)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws/talk"


@asynccontextmanager
async def serve_talk(tmp_path: Path, registry: NodeRegistry, workflows: dict[str, dict[str, Any]],
                     monkeypatch: Any, token: str | None = None):
    """Start the server (the app factory of server/app.py with the Talk router) on a free loopback port."""
    import uvicorn

    import server.talk as talk
    from server.app import ServerConfig, create_app

    wf_dir = tmp_path / "workflows"
    wf_dir.mkdir(exist_ok=True)
    for name, prompt in workflows.items():
        (wf_dir / f"{name}.api.json").write_text(json.dumps(prompt))
    monkeypatch.setattr(talk.options, "WORKFLOWS_DIR", wf_dir)
    runtime = Runtime(RuntimeConfig(data_dir=tmp_path / "data", custom_nodes_dir=tmp_path / "custom_nodes"),
                      registry=registry)
    port = free_port()
    wrapped = create_app(runtime, ServerConfig(host="127.0.0.1", port=port, token=token, local_worker=False,
                                               serve_frontend=False))
    app = getattr(wrapped, "app", wrapped)  # the FastAPI app (older factories wrapped it in the middleware)
    talk.mount_talk(app, runtime)
    server = uvicorn.Server(uvicorn.Config(wrapped, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", ws_max_size=16 * 2**20))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "the test server did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", runtime, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@dataclass
class Packet:
    kind: int
    turn: int
    pts: float
    payload: bytes
    at: float  # perf_counter when received


@dataclass
class TalkClient:
    """A Talk protocol client: records every JSON message and media packet with its arrival time."""

    ws: Any
    messages: list[dict[str, Any]] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)
    closed: bool = False
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, origin: str | None = None, **headers: str) -> TalkClient:
        import websockets

        extra = dict(headers)
        ws = await websockets.connect(url, origin=origin, additional_headers=extra, max_size=2**24)
        client = cls(ws)
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    kind, turn, pts = HEADER.unpack_from(message)
                    self.packets.append(Packet(kind, turn, pts, message[HEADER.size:], now))
                else:
                    data = json.loads(message)
                    data["_at"] = now
                    self.messages.append(data)
        except Exception:
            pass
        finally:
            self.closed = True

    async def send(self, message: dict[str, Any] | bytes | str) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def start(self, workflow: str, **choices: Any) -> dict[str, Any]:
        seen = len(self.messages)
        await self.send({"type": "start", "workflow": workflow, "sample_rate": 16000, "persona": "",
                         "photo": "", "voice": "", **choices})
        return await self.wait_for(lambda m: m["type"] in ("ready", "error"), timeout=60, start=seen)

    async def speak(self, chunks: list[bytes], realtime: bool = True) -> None:
        for chunk in chunks:
            await self.ws.send(chunk)
            if realtime:
                await asyncio.sleep(len(chunk) / 32000)

    async def wait_for(self, predicate: Any, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout
        seen = start
        while time.perf_counter() < deadline:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            if self.closed:
                break
            await asyncio.sleep(0.01)
        raise AssertionError(f"no matching message within {timeout} s; got {[m.get('type') for m in self.messages]}"
                             f" {[m for m in self.messages if m.get('type') == 'error']}")

    async def wait_packets(self, predicate: Any, count: int = 1, timeout: float = 10.0) -> list[Packet]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            found = [p for p in self.packets if predicate(p)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError(f"{count} matching packets not received within {timeout} s "
                             f"(got {len(self.packets)} packets)")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
