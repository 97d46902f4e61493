"""The FastAPI app: ComfyUI's HTTP/WebSocket contract over our engine, and ComfyUI's frontend as the editor.

Every API route is served twice, under ``/`` and under ``/api`` (as ComfyUI does); ``/ws`` carries the
execution messages; ``/extensions/<name>/`` serves our editor extension and the packs' JS; the pinned
frontend's static files are served at ``/`` after everything else (mounted when the app starts, so routes
that other modules add to the app before then, such as the Talk page, take precedence).

    python main.py [--listen ADDR] [--port N] [--token T]   ->   serve(runtime, host, port, token, local_worker)
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from engine.app.runtime import Runtime
from server import api_files, api_prompts, api_system
from server.errors import ApiError, error_response
from server.frontend import extension_dirs, static_dir, template_sources, workflow_templates
from server.security import SecurityMiddleware, SecurityPolicy, is_loopback
from server.ws import ClientHub

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD = 100 * 2**20
MAX_UPLOAD_ENV = "AVATARGRAPH_MAX_UPLOAD_MB"  # uploads and saved user files larger than this are refused
# Set to 1 to let the editor's pages contact other hosts (the frontend's cloud features); off by default.
ALLOW_INTERNET_ENV = "AVATARGRAPH_ALLOW_INTERNET"


def max_upload_bytes() -> int:
    value = os.environ.get(MAX_UPLOAD_ENV)
    if not value:
        return DEFAULT_MAX_UPLOAD
    try:
        return max(1, int(float(value) * 2**20))
    except ValueError:
        log.warning("%s=%r is not a number of MiB; using %d MiB", MAX_UPLOAD_ENV, value, DEFAULT_MAX_UPLOAD // 2**20)
        return DEFAULT_MAX_UPLOAD


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8188
    token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    local_worker: bool = True
    serve_frontend: bool = True


def create_app(runtime: Runtime, config: ServerConfig | None = None) -> FastAPI:
    """The app over ``runtime``; starting it (its lifespan) starts the runtime's worker, stopping it stops it."""
    config = config or ServerConfig()
    if not is_loopback(config.host) and not config.token:
        raise ValueError(f"listening on {config.host} (not loopback) requires a token")
    hub = ClientHub(runtime, max_upload_size=config.max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        hub.bind(asyncio.get_running_loop())
        runtime.listeners.append(hub.on_event)
        await runtime.start(local_worker=config.local_worker)
        samples = asyncio.create_task(asyncio.to_thread(write_sample_inputs), name="sample-inputs")
        runtime.queue_listeners.append(hub.queue_changed)
        if runtime.worker is not None:
            previous = runtime.worker.on_queue_change

            def on_queue_change() -> None:
                previous()
                hub.queue_changed()
            runtime.worker.on_queue_change = on_queue_change
        # The editor's static files go last, after any route added to the app before it started (the Talk
        # page, for one): a mount at "/" matches every path.
        static = static_dir() if config.serve_frontend else None
        if static is not None and not any(getattr(r, "name", None) == "frontend" for r in app.router.routes):
            app.mount("/", StaticFiles(directory=static, html=True), name="frontend")
        try:
            yield
        finally:
            await asyncio.gather(samples, return_exceptions=True)
            await hub.close_all()
            if hub.on_event in runtime.listeners:
                runtime.listeners.remove(hub.on_event)
            await runtime.stop()

    app = FastAPI(title="AvatarGraph", lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.runtime = runtime
    app.state.hub = hub
    app.state.config = config

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    if runtime.cluster is not None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from engine.queue.cluster import redact

        async def queue_unreachable(_: Request, exc: Exception) -> JSONResponse:
            return error_response(503, "queue_unavailable",
                                  f"the queue (Redis at {redact(runtime.cluster.url)}) is unreachable ({exc}); "
                                  "reconnecting: try again shortly")
        app.add_exception_handler(RedisConnectionError, queue_unreachable)
        app.add_exception_handler(RedisTimeoutError, queue_unreachable)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(400, "invalid_request", f"bad request parameters: {problems}")

    for router in (api_prompts.router, api_files.router, api_system.router):
        app.include_router(router)
        app.include_router(router, prefix="/api")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, clientId: str | None = None) -> None:  # noqa: N803 (ComfyUI's name)
        await hub.serve(websocket, clientId)

    @app.get("/user.css")
    async def user_css() -> Response:  # the page links it; ComfyUI users may add one in their user folder
        from engine.files.folders import folders

        path = folders.get("user") / "default" / "user.css"
        return Response(path.read_text(encoding="utf-8") if path.is_file() else "", media_type="text/css")

    @app.get("/templates/index.json")
    async def template_index() -> list[Any]:
        return []  # the frontend's own gallery; ours are listed by /workflow_templates and in the AvatarGraph bar

    @app.get("/templates/index_logo.json")
    async def template_logos() -> dict[str, Any]:
        return {}

    _mount_talk(app, runtime)
    for name, folder in extension_dirs(runtime.registry.web_directories).items():
        if folder.is_dir():
            app.mount(f"/extensions/{name}", StaticFiles(directory=folder), name=f"extension-{name}")
    offline = os.environ.get(ALLOW_INTERNET_ENV, "") not in ("1", "true", "yes")
    app.add_middleware(SecurityMiddleware, policy=SecurityPolicy(config.host, config.token, offline=offline))
    log.info("templates: %s", ", ".join(t["name"] for t in workflow_templates(template_sources(runtime))) or "none")
    return app


def write_sample_inputs() -> list[str]:
    """The sample inputs the shipped workflows name (portrait.png, speech.wav), written into this data dir's input
    folder when missing, so every template runs on a fresh data dir (blocking: run off the event loop)."""
    import importlib

    from engine.files.folders import folders

    for module_name in ("nodes.io.samples", "nodes.samples"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            written = module.ensure_sample_inputs(folders.get("input"))
        except Exception as exc:  # the server works without them; the templates then say what is missing
            log.warning("sample inputs could not be written: %s", exc)
            return []
        written += _default_talk_portrait(folders.get("input"))
        for path in written:
            log.info("sample input written: %s", path)
        return [str(p) for p in written]
    log.warning("no sample inputs: nodes.io.samples is not available")
    return []


def _default_talk_portrait(input_dir: Any) -> list[Any]:
    """The photo avatar_chat names (the Talk page's "default portrait"), so the workflow opens without a missing
    file in the editor too."""
    import shutil

    try:
        from server.talk.options import DEFAULT_PHOTO_FILE, default_portrait
    except Exception:
        return []
    target, source = input_dir / DEFAULT_PHOTO_FILE, default_portrait()
    if target.exists() or source is None:
        return []
    shutil.copyfile(source, target)
    return [target]


def _mount_talk(app: FastAPI, runtime: Runtime) -> None:
    """The Talk page (``/talk``, ``/ws/talk``; ``server.talk``), which the editor's Talk button opens."""
    try:
        from server.talk import mount_talk
    except Exception:  # the editor and the API keep working without it
        log.exception("the Talk page is not available: server.talk failed to import")
        return
    mount_talk(app, runtime)


def serve(runtime: Runtime, host: str = "127.0.0.1", port: int = 8188, token: str | None = None,
          local_worker: bool = True) -> int:
    """Run the server until interrupted (``main.py``'s default command). Returns the exit status."""
    import uvicorn

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
        print(f"--listen {host} is reachable from other machines: clients must send this token "
              f"(generated for this run; pass --token to choose one):\n  {token}", flush=True)
    config = ServerConfig(host=host, port=port, token=token, local_worker=local_worker,
                          max_upload_bytes=max_upload_bytes())
    app = create_app(runtime, config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    # uvicorn's "websockets" (legacy) WebSocket implementation, not its newer sans-I/O one, which leaves an upgrade
    # with a request line over 8 KB unanswered and open, logs a traceback for a text frame that is not UTF-8, and
    # cannot refuse an upgrade with a reason (the ASGI denial response our Origin/Host check sends).
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", ws_max_size=16 * 2**20,
                                           lifespan="on", ws="websockets"))
    _announce_when_started(server, url)
    try:
        server.run()
    except KeyboardInterrupt:
        return 130
    return 0 if server.started else 1


def _announce_when_started(server: Any, url: str) -> None:
    original = server.startup

    async def startup(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        if server.started:
            print(f"AvatarGraph is serving at {url}", flush=True)
            sys.stdout.flush()
    server.startup = startup
