"""The Talk page's routes: ``GET /api/talk/options``, ``WS /ws/talk`` and the built page at ``/talk/``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, RedirectResponse

from engine.files.folders import PROJECT_ROOT
from engine.app.runtime import Runtime
from server.talk.connection import TalkConnection
from server.talk.memory import MemoryRelease
from server.talk.options import talk_options

PAGE_DIR = PROJECT_ROOT / "ui" / "talk" / "dist"

router = APIRouter()


def _runtime(app: Any) -> Runtime:
    runtime = getattr(app.state, "runtime", None)
    if runtime is None:
        raise RuntimeError("the Talk router needs app.state.runtime (use mount_talk(app, runtime))")
    return runtime


# Routes ----------------------------------------------------------------------------------------------------------
@router.get("/api/talk/options")
async def get_options(request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(talk_options, _runtime(request.app))


@router.websocket("/ws/talk")
async def ws_talk(websocket: WebSocket) -> None:
    await websocket.accept()
    runtime = _runtime(websocket.app)
    if runtime.cluster is not None and runtime.worker is None:  # this server runs no graphs: a worker hosts it
        from server.talk.relay import relay_talk

        await relay_talk(websocket, runtime)
        return
    connection = TalkConnection(websocket, runtime, memory_release(websocket.app))
    active = talk_connections(websocket.app)
    active.add(connection)
    try:
        await connection.serve()
    finally:
        active.discard(connection)


@router.get("/talk", include_in_schema=False)
async def talk_page_redirect(request: Request) -> RedirectResponse:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/talk/{query}")


@router.get("/talk/{path:path}", include_in_schema=False)
async def talk_page(path: str) -> FileResponse:
    root = PAGE_DIR.resolve()
    if not (root / "index.html").is_file():
        raise HTTPException(404, "the Talk page is not built: cd ui/talk && npm ci && npm run build")
    target = (root / path).resolve() if path else root / "index.html"
    if target != root and root not in target.parents:
        raise HTTPException(404, "not found")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(target)


def mount_talk(app: FastAPI, runtime: Runtime) -> None:
    """Add the Talk routes to ``app`` (before any catch-all static mount at ``/``)."""
    app.state.runtime = runtime
    app.include_router(router)


def talk_connections(app: FastAPI) -> set[TalkConnection]:
    """The open Talk connections (for tests and diagnostics)."""
    active = getattr(app.state, "talk_connections", None)
    if active is None:
        active = app.state.talk_connections = set()
    return active


def memory_release(app: FastAPI) -> MemoryRelease:
    """The app's one coalescing memory hand-back for closed Talk sessions."""
    release = getattr(app.state, "talk_memory_release", None)
    if release is None:
        release = app.state.talk_memory_release = MemoryRelease()
    return release
