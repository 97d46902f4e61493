"""Everything else the editor asks for: node definitions, system stats, extensions, settings, users, models,
templates, and the small boot-time endpoints of ComfyUI's frontend (features, i18n, subgraphs, logs)."""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from engine import types as T
from engine.version import VERSION
from server.errors import ApiError, error_response, read_json
from server.frontend import FRONTEND_VERSION, extension_urls, template_sources, workflow_file, workflow_templates
from server.node_info import node_info, object_info

router = APIRouter()
USER = "default"


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


# Nodes -----------------------------------------------------------------------------------------------------
@router.get("/object_info")
async def get_object_info(request: Request) -> dict[str, Any]:
    # Combo choices of file pickers list folders: off the event loop.
    return await asyncio.to_thread(object_info, _runtime(request).registry)


@router.get("/object_info/{node_class}")
async def get_node_info(request: Request, node_class: str) -> Response:
    cls = _runtime(request).registry.nodes.get(node_class)
    if cls is None:
        return error_response(404, "not_found", f"unknown node type {node_class!r}")
    return JSONResponse({node_class: await asyncio.to_thread(node_info, cls)})


@router.get("/embeddings")
async def embeddings() -> list[str]:
    return []


# System ----------------------------------------------------------------------------------------------------
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


@router.get("/system_stats")
async def system_stats(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    stats = await asyncio.to_thread(runtime.models.stats)
    budget = stats.get("budget", {})
    return {
        "system": {
            "os": "posix" if sys.platform != "win32" else "nt",
            "platform": platform.platform(),
            "ram_total": budget.get("ram_total", 0),
            "ram_free": budget.get("ram_free", 0),
            "comfyui_version": VERSION,
            "avatargraph_version": VERSION,
            "required_frontend_version": FRONTEND_VERSION,
            "python_version": sys.version,
            "pytorch_version": _version("torch"),
            "embedded_python": False,
            # The frontend checks for releases on the internet unless it sees this flag.
            "argv": ["main.py", "--disable-api-nodes"],
        },
        "devices": stats.get("devices", []),
        "models": {"loaded": stats.get("loaded", []), "budget": budget},
        **(await _cluster_stats(runtime)),
    }


async def _cluster_stats(runtime: Any) -> dict[str, Any]:
    """The workers of a distributed queue (an AvatarGraph addition to ComfyUI's answer)."""
    if runtime.cluster is None:
        return {}
    from engine.cluster import redact

    queue = {"backend": "redis", "url": redact(runtime.cluster.url), "member": runtime.cluster.name}
    try:
        return {"queue": queue, "workers": await asyncio.to_thread(runtime.workers)}
    except Exception as exc:  # Redis away: the server still answers
        return {"queue": {**queue, "error": f"unreachable ({exc})"}, "workers": []}


@router.get("/features")
async def features(request: Request) -> dict[str, Any]:
    return dict(request.app.state.hub.features)


@router.get("/extensions")
async def extensions(request: Request) -> list[str]:
    return extension_urls(_runtime(request).registry.web_directories)


@router.get("/i18n")
async def i18n() -> dict[str, Any]:
    return {}


@router.get("/global_subgraphs")
async def global_subgraphs() -> dict[str, Any]:
    return {}


@router.get("/internal/logs")
async def logs() -> str:
    return ""


@router.get("/internal/logs/raw")
async def logs_raw() -> dict[str, Any]:
    return {"entries": [], "size": {"cols": 80, "rows": 24}}


@router.patch("/internal/logs/subscribe")
async def logs_subscribe() -> Response:
    return Response(status_code=200)


@router.get("/internal/folder_paths")
async def folder_paths() -> dict[str, Any]:
    from engine.folders import folders

    return {kind: [str(folders.data_dir / kind)] for kind in ("input", "output", "temp")}


# Settings and users ----------------------------------------------------------------------------------------
@router.get("/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(_runtime(request).store.get_settings, USER)


@router.post("/settings")
async def post_settings(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "send a JSON object of settings")
    await asyncio.to_thread(_runtime(request).store.set_settings, body, USER)
    return Response(status_code=200)


@router.get("/settings/{setting_id}")
async def get_setting(request: Request, setting_id: str) -> Response:
    value = await asyncio.to_thread(_runtime(request).store.get_setting, setting_id, USER)
    return JSONResponse(value)


@router.post("/settings/{setting_id}")
async def post_setting(request: Request, setting_id: str) -> Response:
    value = await read_json(request)
    await asyncio.to_thread(_runtime(request).store.set_setting, setting_id, value, USER)
    return Response(status_code=200)


@router.get("/users")
async def users() -> dict[str, Any]:
    return {"storage": "server", "migrated": True}  # no "users" key: single-user mode, no login


@router.post("/users")
async def create_user() -> Response:
    return error_response(400, "single_user", "this server runs in single-user mode; there are no accounts")


# Models ----------------------------------------------------------------------------------------------------
def _model_folders() -> dict[str, list[str]]:
    from engine.folders import folders

    root = folders.models_dir
    out: dict[str, list[str]] = {}
    if root.is_dir():
        for kind in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            out[kind.name] = sorted(f.relative_to(kind).as_posix() for f in kind.rglob("*")
                                    if f.is_file() and not f.name.startswith("."))
    return out


@router.get("/models")
async def models() -> list[str]:
    return list(await asyncio.to_thread(_model_folders))


@router.get("/models/{folder}")
async def model_files(folder: str) -> Response:
    found = await asyncio.to_thread(_model_folders)
    if folder not in found:
        return error_response(404, "not_found", f"no model folder {folder!r}")
    return JSONResponse(found[folder])


@router.get("/experiment/models")
async def experiment_models() -> list[dict[str, Any]]:
    from engine.folders import folders

    found = await asyncio.to_thread(_model_folders)
    return [{"name": name, "folders": [str(folders.models_dir / name)]} for name in found]


@router.get("/experiment/models/{folder}")
async def experiment_model_files(folder: str) -> Response:
    found = await asyncio.to_thread(_model_folders)
    if folder not in found:
        return error_response(404, "not_found", f"no model folder {folder!r}")
    return JSONResponse([{"name": name, "pathIndex": 0} for name in found[folder]])


@router.get("/view_metadata/{folder}")
async def view_metadata(folder: str, filename: str = "") -> Response:
    return error_response(404, "not_found", "model metadata is not available")


# Templates and our own extension's data ----------------------------------------------------------------------
@router.get("/workflow_templates")
async def get_workflow_templates(request: Request) -> dict[str, list[str]]:
    """ComfyUI's custom-node templates: ``{source: [names]}`` (editor-format workflows only)."""
    out: dict[str, list[str]] = {}
    for t in workflow_templates(template_sources(_runtime(request))):
        if t["format"] == "ui":
            out.setdefault(t["source"], []).append(t["name"])
    return out


@router.get("/workflow_templates/{source}/{filename}")
async def get_workflow_template(request: Request, source: str, filename: str) -> Response:
    """A template's JSON, or (``<name>.jpg``) its thumbnail for the frontend's template browser."""
    stem, dot, ext = filename.rpartition(".")
    thumbnail = dot and ext.lower() in ("jpg", "jpeg")
    wanted = f"{stem}.json" if thumbnail else (filename if filename.endswith(".json") else filename + ".json")
    path = workflow_file(template_sources(_runtime(request)), source, wanted)
    if path is None:
        return error_response(404, "not_found", f"no workflow template {source}/{filename}")
    if thumbnail:
        from server.thumbnails import render

        data = json.loads(path.read_text(encoding="utf-8"))
        title = stem.removesuffix(".api").replace("_", " ").capitalize()
        jpeg = await asyncio.to_thread(render, data if isinstance(data, dict) else {}, title)
        return Response(jpeg, media_type="image/jpeg")
    return FileResponse(path, media_type="application/json")


@router.get("/avatargraph/info")
async def avatargraph_info(request: Request) -> dict[str, Any]:
    """What our editor extension needs: socket colours, templates, the Talk page's address."""
    return {"version": VERSION, "socket_colours": dict(T.TYPE_COLOURS),
            "templates": workflow_templates(template_sources(_runtime(request))),
            "talk_url": "/talk", "stream_types": sorted(T.STREAM_TYPES)}
