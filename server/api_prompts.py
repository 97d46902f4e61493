"""Prompt routes: ``/prompt``, ``/queue``, ``/interrupt``, ``/history``, ``/jobs``, ``/free``.

Request and response bodies are ComfyUI's, so scripts written against ComfyUI's API work unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from engine.graph.prompt import PromptFormatError
from engine.graph.validation import PromptInvalid
from server import jobs as J
from server.comfy_errors import live_only_errors, prompt_error_body
from server.errors import ApiError, error_response, read_json

log = logging.getLogger(__name__)
router = APIRouter()


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _hub(request: Request) -> Any:
    return request.app.state.hub


MAX_COUNT = 10**9  # the largest max_items / limit / offset / number a client may send (SQLite holds 64 bits)


def _count(value: int | None, what: str, lowest: int = 0) -> None:
    if value is not None and not lowest <= value <= MAX_COUNT:
        raise ApiError(400, "invalid_request", f"'{what}' must be between {lowest} and {MAX_COUNT}; got {value}")


def _id_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ApiError(400, "invalid_request", f"'{what}' must be a list of prompt ids")
    return [str(v) for v in value]


# /prompt ---------------------------------------------------------------------------------------------------
@router.get("/prompt")
async def get_prompt(request: Request) -> dict[str, Any]:
    remaining = await asyncio.to_thread(_runtime(request).queue.remaining)
    return {"exec_info": {"queue_remaining": remaining}}


@router.post("/prompt")
async def post_prompt(request: Request) -> Response:
    runtime = _runtime(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object with a 'prompt' key")
    if "prompt" not in body:
        raise ApiError(400, "no_prompt", "No prompt provided: the body needs a 'prompt' (the API-format graph)")
    prompt = body["prompt"]
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise ApiError(400, "invalid_request", "'extra_data' must be an object")
    client_id = body.get("client_id")
    if client_id is not None and not isinstance(client_id, str):
        raise ApiError(400, "invalid_request", "'client_id' must be a string")
    number = body.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)
                               or abs(number) > MAX_COUNT):
        raise ApiError(400, "invalid_request", f"'number' must be a number between -{MAX_COUNT} and {MAX_COUNT}")
    front = body.get("front", False)
    if not isinstance(front, bool):
        raise ApiError(400, "invalid_request", "'front' must be true or false")
    targets = body.get("partial_execution_targets")
    if targets is not None:
        targets = _id_list(targets, "partial_execution_targets")
    prompt_id = body.get("prompt_id")
    if prompt_id is not None and (not isinstance(prompt_id, str) or not 0 < len(prompt_id) <= 128):
        raise ApiError(400, "invalid_request", "'prompt_id' must be a non-empty string")
    live = live_only_errors(prompt, runtime.registry)
    if live is not None:
        return JSONResponse(live, status_code=400)
    extra_data = {**extra_data, "create_time": int(time.time() * 1000)}
    if client_id:
        extra_data["client_id"] = client_id
    try:
        item, report = runtime.submit(prompt, extra_data, client_id, front=front, number=number,
                                      targets=targets, prompt_id=prompt_id)
    except PromptInvalid as exc:
        body = prompt_error_body(exc.report, prompt, runtime.registry)
        return JSONResponse(body, status_code=400)
    except PromptFormatError as exc:
        raise ApiError(400, "invalid_prompt", f"the prompt is not an API-format graph: {exc}")
    except ValueError as exc:  # e.g. a prompt_id already queued
        raise ApiError(400, "invalid_prompt", str(exc))
    _hub(request).queue_changed()
    # Partial validity (as ComfyUI): the valid outputs run; the errors of the nodes left out come with the 200.
    node_errors = prompt_error_body(report, prompt, runtime.registry)["node_errors"] if report.issues else {}
    return JSONResponse({"prompt_id": item.prompt_id, "number": item.number, "node_errors": node_errors})


# /queue ----------------------------------------------------------------------------------------------------
@router.get("/queue")
async def get_queue(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    queue = runtime.queue
    running, pending = await asyncio.gather(asyncio.to_thread(queue.running), asyncio.to_thread(queue.pending))
    body: dict[str, Any] = {"queue_running": [i.as_comfy() for i in running],
                            "queue_pending": [i.as_comfy() for i in pending]}
    if runtime.cluster is not None:  # an AvatarGraph addition; ComfyUI clients ignore it
        body["workers"] = await asyncio.to_thread(runtime.workers)
        body["running_on"] = await asyncio.to_thread(lambda: {i.prompt_id: queue.worker_of(i.prompt_id)
                                                             for i in running})
    return body


@router.post("/queue")
async def post_queue(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not ({"clear", "delete"} & body.keys()):
        raise ApiError(400, "invalid_request", "send {\"clear\": true} or {\"delete\": [prompt ids]}")
    removed = 0
    if body.get("clear") is True:
        removed += await asyncio.to_thread(runtime.queue.clear_pending)
    if "delete" in body:
        ids = _id_list(body["delete"], "delete")
        removed += await asyncio.to_thread(runtime.queue.delete_pending, ids)
        for prompt_id in ids:  # as ComfyUI's frontend expects: deleting the running prompt interrupts it
            runtime.interrupt(prompt_id)
    _hub(request).queue_changed()
    return {"deleted": removed}


# /interrupt ------------------------------------------------------------------------------------------------
@router.post("/interrupt")
async def interrupt(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    body = await read_json(request, allow_empty=True)
    if body is not None and not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be empty or {\"prompt_id\": ...}")
    body = body or {}
    session_id = body.get("session_id")
    if session_id is not None:
        session = runtime.sessions.get(str(session_id))
        if session is None:
            raise ApiError(404, "not_found", f"no live session {session_id}")
        await session.interrupt()
        return {"interrupted": True, "session_id": session_id}
    prompt_id = body.get("prompt_id")
    if prompt_id is not None and not isinstance(prompt_id, str):
        raise ApiError(400, "invalid_request", "'prompt_id' must be a string")
    return {"interrupted": runtime.interrupt(prompt_id)}


# /history --------------------------------------------------------------------------------------------------
@router.get("/history")
async def get_history(request: Request, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
    _count(max_items, "max_items")
    _count(offset, "offset", lowest=-1)
    return await asyncio.to_thread(_runtime(request).queue.history, max_items, offset)


@router.get("/history/{prompt_id}")
async def get_history_item(request: Request, prompt_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_runtime(request).queue.history_item, prompt_id)


@router.post("/history")
async def post_history(request: Request) -> dict[str, Any]:
    store = _runtime(request).queue
    body = await read_json(request)
    if not isinstance(body, dict) or not ({"clear", "delete"} & body.keys()):
        raise ApiError(400, "invalid_request", "send {\"clear\": true} or {\"delete\": [prompt ids]}")
    removed = 0
    if body.get("clear") is True:
        removed += await asyncio.to_thread(store.clear_history)
    if "delete" in body:
        removed += await asyncio.to_thread(store.delete_history, _id_list(body["delete"], "delete"))
    return {"deleted": removed}


# /jobs -----------------------------------------------------------------------------------------------------
def _snapshot(store: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    return store.running(), store.pending(), store.history()


@router.get("/jobs")
async def get_jobs(request: Request, status: str | None = None, workflow_id: str | None = None,
                   sort_by: str = "created_at", sort_order: str = "desc", limit: int | None = None,
                   offset: int = 0) -> dict[str, Any]:
    statuses = set(J.ALL_STATUSES) if not status else {s.strip() for s in status.split(",") if s.strip()}
    unknown = statuses - set(J.ALL_STATUSES)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown job status {sorted(unknown)}; known: {list(J.ALL_STATUSES)}")
    if sort_order not in ("asc", "desc") or sort_by not in ("created_at", "execution_duration"):
        raise ApiError(400, "invalid_request", "sort_by is created_at|execution_duration, sort_order asc|desc")
    _count(limit, "limit")
    _count(offset, "offset")
    running, pending, history = await asyncio.to_thread(_snapshot, _runtime(request).queue)
    jobs, total = J.list_jobs(running, pending, history, statuses, workflow_id, sort_by, sort_order, limit, offset)
    return {"jobs": jobs, "pagination": {"offset": offset, "limit": limit, "total": total,
                                         "has_more": offset + len(jobs) < total}}


@router.get("/jobs/{prompt_id}")
async def get_job(request: Request, prompt_id: str) -> Response:
    store = _runtime(request).queue
    entry = await asyncio.to_thread(store.history_item, prompt_id)
    if entry:
        return JSONResponse(J.history_job(prompt_id, entry[prompt_id], include_outputs=True))
    item = await asyncio.to_thread(store.get, prompt_id)
    if item is None:
        return error_response(404, "not_found", f"no job {prompt_id}")
    return JSONResponse(J.queue_job(item, J.IN_PROGRESS if item.status == "running" else J.PENDING))


@router.post("/jobs/{prompt_id}/cancel")
async def cancel_job(request: Request, prompt_id: str) -> dict[str, Any]:
    runtime = _runtime(request)
    removed = await asyncio.to_thread(runtime.queue.delete_pending, [prompt_id])
    interrupted = runtime.interrupt(prompt_id)
    _hub(request).queue_changed()
    return {"cancelled": bool(removed or interrupted)}


# /free -----------------------------------------------------------------------------------------------------
@router.post("/free")
async def free(request: Request) -> dict[str, Any]:
    body = await read_json(request, allow_empty=True) or {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "send {\"unload_models\": true, \"free_memory\": true}")
    models = _runtime(request).models
    unloaded: list[str] = []
    if body.get("unload_models") or body.get("free_memory"):
        for info in models.loaded():
            try:
                if models.unload(info.id):
                    unloaded.append(info.id)
            except Exception as exc:  # pinned by a live session
                log.info("free: %s stays loaded (%s)", info.id, exc)
    return {"unloaded": unloaded}
