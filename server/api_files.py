"""File routes: ``/upload/image`` (images, audio and video, as ComfyUI's frontend uploads all three there),
``/view`` (input/output/temp files) and ``/userdata`` (workflows and other files the editor saves).

Every path a client names goes through ``folders.resolve``, which refuses ``..``, absolute paths and symlinks
leaving the folder.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.datastructures import UploadFile

from engine.files.folders import UnsafePath, folders
from server.errors import ApiError, error_response, read_body
from server.uploads import UPLOAD_KINDS, UploadRejected, store_upload

router = APIRouter()
USER = "default"  # single-user mode: every client is the default user
# Files the page asks for at every start; until the user saves one, an empty one is served.
DEFAULT_USER_FILES = {"user.css": ("", "text/css"), "comfy.templates.json": ("[]", "application/json")}
INLINE_TYPES = ("image/", "audio/", "video/", "text/plain", "application/json")
for _ext, _type in ((".webp", "image/webp"), (".m4a", "audio/mp4"), (".opus", "audio/ogg"), (".flac", "audio/flac"),
                    (".webm", "video/webm"), (".mkv", "video/x-matroska")):
    mimetypes.add_type(_type, _ext)


MAX_NAME_BYTES = 255  # one file or folder name (what Linux file systems allow)
MAX_PATH_BYTES = 1024  # a whole relative path


class _TooLarge(Exception):
    pass


def check_names(**named: str) -> None:
    """Refuse (``ApiError`` 400) names the file system cannot take: a part longer than 255 bytes, a path longer
    than 1024, a NUL byte or text that is not valid Unicode - before any file operation sees them."""
    for what, value in named.items():
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "invalid_name", f"{what} is not valid Unicode (a lone surrogate)") from None
        if b"\x00" in encoded:
            raise ApiError(400, "invalid_name", f"{what} contains a NUL byte")
        if len(encoded) > MAX_PATH_BYTES:
            raise ApiError(400, "name_too_long", f"{what} is {len(encoded)} bytes long; at most {MAX_PATH_BYTES}")
        longest = max((len(part.encode("utf-8")) for part in value.replace("\\", "/").split("/")), default=0)
        if longest > MAX_NAME_BYTES:
            raise ApiError(400, "name_too_long", f"{what} has a name {longest} bytes long; a file or folder name "
                                                 f"is at most {MAX_NAME_BYTES} bytes")


class _LimitedBody:
    """The request's ASGI ``receive``, counting body bytes and raising ``_TooLarge`` past ``limit`` (so chunked
    uploads are limited too, not only those that declare a Content-Length)."""

    def __init__(self, receive: Any, limit: int):
        self.receive = receive
        self.limit = limit
        self.seen = 0
        self.finished = False

    async def __call__(self) -> dict[str, Any]:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.finished = not message.get("more_body", False)
            if self.seen > self.limit:
                raise _TooLarge()
        return message

    async def drain(self, budget: int = 64 * 2**20) -> None:
        """Read and drop the rest of a refused body (up to ``budget`` bytes), so the client reads our answer
        instead of a broken pipe; beyond that the connection is simply closed."""
        dropped = 0
        while not self.finished and dropped <= budget:
            message = await self.receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            self.finished = not message.get("more_body", False)


# /upload/image ---------------------------------------------------------------------------------------------
@router.post("/upload/image")
async def upload_image(request: Request) -> Response:
    limit = request.app.state.config.max_upload_bytes
    too_large = error_response(413, "payload_too_large",
                               f"uploads are limited to {limit} bytes ({limit / 2**20:.0f} MiB)")
    body = _LimitedBody(request.receive, limit + 64 * 1024)  # room for the multipart framing
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body.limit:
        try:  # read and drop what the client sends meanwhile, so it reads our answer, but never wait for long
            await asyncio.wait_for(body.drain(), timeout=10)
        except asyncio.TimeoutError:
            pass
        return too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return error_response(400, "invalid_request", "send multipart/form-data with the file in the field 'image'")
    request._receive = body  # Starlette reads the body through this attribute
    try:
        form = await request.form(max_files=1, max_fields=16)
    except _TooLarge:
        await body.drain()
        return too_large
    except Exception as exc:
        return error_response(400, "invalid_request", f"the multipart body cannot be read: {exc}")
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            return error_response(400, "invalid_request", "the multipart field 'image' must hold a file")
        kind = str(form.get("type") or "input")
        subfolder = str(form.get("subfolder") or "")
        try:
            check_names(subfolder=subfolder, filename=upload.filename or "")
        except ApiError as exc:
            return exc.response()
        if kind not in UPLOAD_KINDS:
            return error_response(400, "invalid_request", f"type must be one of {', '.join(UPLOAD_KINDS)}")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            return too_large
        try:
            stored = await asyncio.to_thread(store_upload, data, upload.filename, kind, subfolder)
        except UploadRejected as exc:
            return error_response(415, "unsupported_media", str(exc))
        except UnsafePath as exc:
            return error_response(400, "unsafe_path", str(exc))
    finally:
        await form.close()
    return JSONResponse({"name": stored.name, "subfolder": stored.subfolder, "type": stored.type,
                         "kind": stored.kind})


# /view -----------------------------------------------------------------------------------------------------
def _annotated(filename: str, kind: str) -> tuple[str, str]:
    for tag in UPLOAD_KINDS:
        if filename.endswith(f" [{tag}]"):
            return filename[: -len(tag) - 3], tag
    return filename, kind


@router.get("/view")
async def view(request: Request, filename: str = "", type: str = "output", subfolder: str = "") -> Response:
    if not filename:
        return error_response(400, "invalid_request", "'filename' is required")
    check_names(filename=filename, subfolder=subfolder)
    filename, kind = _annotated(filename, type)
    if kind not in UPLOAD_KINDS:
        return error_response(400, "invalid_request", f"type must be one of {', '.join(UPLOAD_KINDS)}")
    try:
        path = folders.resolve(kind, filename, subfolder)
    except UnsafePath as exc:
        return error_response(403, "unsafe_path", str(exc))
    if not path.is_file():
        return error_response(404, "not_found", f"no file {subfolder + '/' if subfolder else ''}{filename} in {kind}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    disposition = "inline" if media_type.startswith(INLINE_TYPES) else "attachment"
    return FileResponse(path, media_type=media_type, content_disposition_type=disposition, filename=path.name,
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


# /userdata -------------------------------------------------------------------------------------------------
def _user_root() -> Path:
    root = folders.get("user") / USER
    root.mkdir(parents=True, exist_ok=True)
    return root


def _user_path(relpath: str) -> Path:
    relpath = relpath.strip()
    if not relpath or relpath.endswith("/"):
        raise ApiError(400, "invalid_request", "name a file inside the user folder")
    check_names(name=relpath)
    try:
        return folders.resolve("user", relpath, USER)
    except UnsafePath as exc:
        raise ApiError(403, "unsafe_path", str(exc))


def _file_info(path: Path, root: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": st.st_size, "modified": st.st_mtime,
            "created": st.st_ctime}


@router.get("/userdata")
async def list_userdata(dir: str = "", recurse: bool = False, full_info: bool = False,
                        split: bool = False) -> Response:
    if not dir:
        return error_response(400, "invalid_request", "'dir' is required (e.g. dir=workflows)")
    check_names(dir=dir)
    try:
        base = folders.resolve("user", dir, USER)
    except UnsafePath as exc:
        return error_response(403, "unsafe_path", str(exc))
    if not base.is_dir():
        return JSONResponse([])  # nothing saved there yet (ComfyUI answers 404, which its frontend reads as [])
    root = base.resolve()

    def walk() -> list[Any]:
        found = []
        pattern = base.rglob("*") if recurse else base.glob("*")
        for p in sorted(pattern):
            if not p.is_file():
                continue
            real = p.resolve()
            if real != root and root not in real.parents:  # a symlink leading out: not listed
                continue
            rel = p.relative_to(base).as_posix()
            if full_info:
                found.append({**_file_info(p, base), "path": rel})
            elif split:
                found.append([rel, *rel.split("/")])
            else:
                found.append(rel)
        return found
    return JSONResponse(await asyncio.to_thread(walk))


def _userdata_route(request: Request) -> tuple[str, str | None]:
    """(file, move destination) from the raw path, where a '/' inside a name arrives as %2F."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    raw_text = raw.decode("latin-1")
    marker = "/userdata/"
    rest = raw_text[raw_text.index(marker) + len(marker):] if marker in raw_text else ""
    segments = rest.split("/")
    if len(segments) == 3 and segments[1] == "move":
        return unquote(segments[0]), unquote(segments[2])
    return unquote(rest), None


@router.get("/userdata/{file:path}")
async def get_userdata(request: Request, file: str) -> Response:
    relpath, _ = _userdata_route(request)
    path = _user_path(relpath)
    if not path.is_file():
        if relpath in DEFAULT_USER_FILES:
            content, media_type = DEFAULT_USER_FILES[relpath]
            return Response(content, media_type=media_type)
        return error_response(404, "not_found", f"no user file {relpath!r}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})


@router.post("/userdata/{file:path}")
async def post_userdata(request: Request, file: str, overwrite: bool = True, full_info: bool = False) -> Response:
    relpath, dest = _userdata_route(request)
    source = _user_path(relpath)
    root = _user_root()
    if dest is not None:
        target = _user_path(dest)
        if not source.is_file():
            return error_response(404, "not_found", f"no user file {relpath!r} to move")
        if target.exists() and not overwrite:
            return error_response(409, "exists", f"{dest!r} exists; pass overwrite=true to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, source, target)
        return JSONResponse(_file_info(target, root) if full_info else target.relative_to(root).as_posix())
    limit = request.app.state.config.max_upload_bytes
    body = await read_body(request, limit)
    if source.exists() and not overwrite:
        return error_response(409, "exists", f"{relpath!r} exists; pass overwrite=true to replace it")
    if source.is_dir():
        return error_response(400, "invalid_request", f"{relpath!r} is a folder")

    def write() -> None:
        source.parent.mkdir(parents=True, exist_ok=True)
        tmp = source.with_name(f".{source.name}.{time.monotonic_ns()}.part")
        tmp.write_bytes(body)
        os.replace(tmp, source)
    await asyncio.to_thread(write)
    return JSONResponse(_file_info(source, root) if full_info else source.relative_to(root).as_posix())


@router.delete("/userdata/{file:path}")
async def delete_userdata(request: Request, file: str) -> Response:
    relpath, _ = _userdata_route(request)
    path = _user_path(relpath)
    if not path.is_file():
        return error_response(404, "not_found", f"no user file {relpath!r}")
    await asyncio.to_thread(path.unlink)
    return Response(status_code=204)
