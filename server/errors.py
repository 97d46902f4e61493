"""Error responses: one JSON shape for every refusal, ``{"error": {"type", "message", ...}}``.

``POST /prompt`` adds ComfyUI's ``node_errors``; everything else carries an empty one too, so ComfyUI
clients that read ``node_errors`` unconditionally keep working.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from server import safe_json

MAX_JSON_BODY = 32 * 2**20


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        return error_response(self.status, self.type, self.message, **self.extra)


def error_response(status: int, type_: str, message: str, node_errors: dict[str, Any] | None = None,
                   **extra: Any) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "details": extra.pop("details", ""),
                      "extra_info": extra}, "node_errors": node_errors or {}}
    return JSONResponse(body, status_code=status)


async def read_json(request: Request, limit: int = MAX_JSON_BODY, allow_empty: bool = False) -> Any:
    """The request body as JSON, or ``ApiError`` 400/413 saying what is wrong with it."""
    body = await read_body(request, limit)
    if not body.strip():
        if allow_empty:
            return None
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return safe_json.loads(body)
    except safe_json.UnsafeJson as exc:
        raise ApiError(400, "invalid_json", f"the request body is refused: {exc}") from None


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole request body, or ``ApiError`` 413 as soon as it passes ``limit`` bytes (declared or chunked);
    the rest of a refused body is read and dropped (up to 64 MiB more) so the client gets the answer."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
    body = bytearray()
    stream = request.stream()
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            dropped = 0
            async for rest in stream:
                dropped += len(rest)
                if dropped > 64 * 2**20:
                    break
            raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
    return body
