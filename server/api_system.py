"""Everything else the editor asks for: node definitions, system stats, extensions, settings, users, models,
templates, and the small boot-time endpoints of ComfyUI's frontend (features, i18n, subgraphs, logs)."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from engine.graph import types as T
from engine.version import VERSION
from server.errors import ApiError, error_response, read_json
from server.frontend import (EDITOR_DEFAULT_SETTINGS, EMULATED_COMFYUI_VERSION, FRONTEND_VERSION,
                             extension_urls, template_sources, workflow_file, workflow_templates)
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


SECRET_OPTIONS = ("--token",)


def redacted_argv(argv: list[str]) -> list[str]:
    """The command line with secrets replaced by ``***``: ``--token`` values, ``token=`` query values and the
    password of any URL (``redis://:secret@host``)."""
    import re

    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        if arg in SECRET_OPTIONS:
            hide_next = True
            out.append(arg)
            continue
        name, eq, _ = arg.partition("=")
        if eq and name in SECRET_OPTIONS:
            out.append(f"{name}=***")
            continue
        arg = re.sub(r"(token=)[^&\s]+", r"\1***", arg)
        arg = re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", arg)
        out.append(arg)
    return out


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
            "comfyui_version": EMULATED_COMFYUI_VERSION,  # the API we emulate; the About page shows it
            "app": "AvatarGraph",
            "avatargraph_version": VERSION,
            "required_frontend_version": FRONTEND_VERSION,
            "python_version": sys.version,
            "pytorch_version": _version("torch"),
            "embedded_python": False,
            "argv": redacted_argv(sys.argv),  # the real command line; the release check is off by a setting
        },
        "devices": stats.get("devices", []),
        "models": {"loaded": stats.get("loaded", []), "budget": budget},
        **(await _cluster_stats(runtime)),
    }


async def _cluster_stats(runtime: Any) -> dict[str, Any]:
    """The workers of a distributed queue (an AvatarGraph addition to ComfyUI's answer)."""
    if runtime.cluster is None:
        return {}
    from engine.queue.cluster import redact

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


@router.get("/internal/files/{directory_type}")
async def internal_files(directory_type: str) -> Response:
    """The files in input/output/temp, newest first (what the frontend reloads after an upload)."""
    from engine.files.folders import folders

    if directory_type not in ("input", "output", "temp"):
        return error_response(400, "invalid_request", "directory_type is input, output or temp")

    def listing() -> list[str]:
        folder = folders.get(directory_type)
        entries = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")] \
            if folder.is_dir() else []
        return [e.name for e in sorted(entries, key=lambda e: e.stat().st_mtime, reverse=True)]
    return JSONResponse(await asyncio.to_thread(listing))


@router.get("/internal/folder_paths")
async def folder_paths() -> dict[str, Any]:
    from engine.files.folders import folders

    return {kind: [str(folders.data_dir / kind)] for kind in ("input", "output", "temp")}


# Settings and users ----------------------------------------------------------------------------------------
@router.get("/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    stored = await asyncio.to_thread(_runtime(request).store.get_settings, USER)
    return {**EDITOR_DEFAULT_SETTINGS, **stored}


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
    if value is None:
        value = EDITOR_DEFAULT_SETTINGS.get(setting_id)
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
    from engine.files.folders import folders

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
    from engine.files.folders import folders

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
