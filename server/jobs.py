"""The frontend's Jobs API (``/api/jobs``): queue items and history entries as one list of jobs.

Statuses are ComfyUI's: pending, in_progress, completed, failed (and cancelled for interrupted prompts).
A job's ``preview_output`` is its first previewable output (images, video, audio), preferring files in the
output folder, so the queue panel can show a thumbnail.
"""

from __future__ import annotations

from typing import Any

from engine.queue.sqlite_store import QueueItem
from server.comfy_errors import clean_traceback

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "pending", "in_progress", "completed", "failed", "cancelled"
ALL_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
PREVIEWABLE = frozenset({"images", "video", "audio", "gifs"})


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _workflow_id(extra_data: dict[str, Any]) -> str | None:
    pnginfo = extra_data.get("extra_pnginfo") if isinstance(extra_data, dict) else None
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    return workflow.get("id") if isinstance(workflow, dict) else None


def _create_time(extra_data: dict[str, Any], fallback_s: float | None) -> int | None:
    value = extra_data.get("create_time") if isinstance(extra_data, dict) else None
    if isinstance(value, int | float):
        return int(value)
    return int(fallback_s * 1000) if fallback_s else None


def queue_job(item: QueueItem, status: str) -> dict[str, Any]:
    return _prune({"id": item.prompt_id, "status": status, "priority": item.number,
                   "create_time": _create_time(item.extra_data, item.created), "outputs_count": 0,
                   "workflow_id": _workflow_id(item.extra_data)})


def outputs_summary(outputs: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    count, preview, fallback = 0, None, None
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if not isinstance(items, list):
                continue  # e.g. "animated": [true] flags are lists of booleans, skipped below
            for entry in items:
                if not isinstance(entry, dict):
                    continue
                count += 1
                fmt = str(entry.get("format", ""))
                if media_type in PREVIEWABLE or fmt.startswith(("video/", "audio/")):
                    enriched = {**entry, "nodeId": node_id, "mediaType": "video" if media_type == "gifs"
                                else media_type}
                    if preview is None and entry.get("type") == "output":
                        preview = enriched
                    elif fallback is None:
                        fallback = enriched
    return count, preview or fallback


def history_job(prompt_id: str, entry: dict[str, Any], include_outputs: bool = False) -> dict[str, Any]:
    number, _, prompt, extra_data, _ = (entry.get("prompt") or [None, None, {}, {}, []])[:5]
    status_info = entry.get("status") or {}
    status_str = status_info.get("status_str")
    status = {"success": COMPLETED, "error": FAILED, "interrupted": CANCELLED}.get(status_str, COMPLETED)
    if any(isinstance(m, list | tuple) and m and m[0] == "execution_interrupted"
           for m in status_info.get("messages") or []):
        status = CANCELLED  # ComfyUI stores an interrupted prompt as an error
    outputs = entry.get("outputs") or {}
    count, preview = outputs_summary(outputs)
    start = end = error = None
    for message in status_info.get("messages") or []:
        if isinstance(message, list | tuple) and len(message) >= 2 and isinstance(message[1], dict):
            name, data = message[0], message[1]
            if name == "execution_start":
                start = data.get("timestamp")
            elif name in ("execution_success", "execution_error", "execution_interrupted"):
                end = data.get("timestamp")
                if name == "execution_error":
                    error = {**data, "traceback": clean_traceback(data.get("traceback"))}
    timings = entry.get("timings") or {}
    if start is None and isinstance(timings.get("started"), int | float):
        start = int(timings["started"] * 1000)
    if end is None and start is not None and isinstance(timings.get("total"), int | float):
        end = int(start + timings["total"] * 1000)
    job = _prune({"id": prompt_id, "status": status, "priority": number,
                  "create_time": _create_time(extra_data or {}, None) or start,
                  "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                  "outputs_count": count, "preview_output": preview, "workflow_id": _workflow_id(extra_data or {})})
    if include_outputs:
        job["outputs"] = outputs
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def list_jobs(running: list[QueueItem], pending: list[QueueItem], history: dict[str, dict[str, Any]],
              statuses: set[str], workflow_id: str | None = None, sort_by: str = "created_at",
              sort_order: str = "desc", limit: int | None = None, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    jobs: list[dict[str, Any]] = []
    if IN_PROGRESS in statuses:
        jobs += [queue_job(i, IN_PROGRESS) for i in running]
    if PENDING in statuses:
        jobs += [queue_job(i, PENDING) for i in pending]
    if statuses & {COMPLETED, FAILED, CANCELLED}:
        for prompt_id, entry in history.items():
            job = history_job(prompt_id, entry)
            if job["status"] in statuses:
                jobs.append(job)
    if workflow_id:
        jobs = [j for j in jobs if j.get("workflow_id") == workflow_id]
    if sort_by == "execution_duration":
        def key(j: dict[str, Any]) -> float:
            s, e = j.get("execution_start_time"), j.get("execution_end_time")
            return (e - s) if s and e else 0
    else:
        def key(j: dict[str, Any]) -> float:
            return j.get("create_time") or 0
    jobs.sort(key=key, reverse=sort_order != "asc")
    total = len(jobs)
    jobs = jobs[max(0, offset):]
    if limit is not None:
        jobs = jobs[:max(0, limit)]
    return jobs, total
