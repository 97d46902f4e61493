"""A hostile client against a real ``main.py`` server (fresh data dir): every bad input gets a clear refusal.

Each case sends one bad request over HTTP, ComfyUI's ``/ws`` or the Talk page's ``/ws/talk`` and asserts the
answer: the status (or WebSocket close code / error message) and that the message says what is wrong. Nothing
may answer 500, hang, or leave a traceback in the server log; after the sweep every route still answers and a
valid prompt still runs. Values that could not be stored or served back (lone surrogates, NaN/Infinity, deep
nesting, over-long names) must be refused at the door, so the routes that list stored data keep working.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.test_server_support import TEST_WORKFLOW, PackInstall, ServerProcess, png_bytes, wav_bytes

LONG = "x" * 300  # a name longer than any file system allows for one path part
DEEP_300 = json.loads("[" * 300 + "]" * 300)  # parses in Python, but is refused by the server
SURROGATE = '"\\ud800"'


# Clients ------------------------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def message(self) -> str:
        data = self.json()
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict):
                details = [f"{e.get('type')}: {e.get('message')} ({e.get('details')})"
                           for n in (data.get("node_errors") or {}).values() for e in n.get("errors", [])]
                return "; ".join([f"{error.get('type', '')}: {error.get('message', '')}", *details])
            if "detail" in data:  # FastAPI's own 404/405
                return str(data["detail"])
        return ""


def call(port: int, method: str, path: str, body: bytes | Iterator[bytes] | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    began = time.monotonic()
    try:
        chunked = body is not None and not isinstance(body, bytes)
        conn.putrequest(method, path, skip_accept_encoding=True, skip_host="Host" in (headers or {}))
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None and "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            if chunked:
                for chunk in body:  # type: ignore[union-attr]
                    conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before the whole body was sent
        response = conn.getresponse()
        return Reply(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()},
                     time.monotonic() - began)
    finally:
        conn.close()


def json_body(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class RawWebSocket:
    """A WebSocket client that can send what a real one never would (bad UTF-8, huge request lines)."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if headers and "Host" in headers:
            lines = [line for line in lines if not line.startswith("Host: 127.0.0.1")]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        self.body = b""
        if self.status != 101:
            length = int(self.headers.get("content-length", "0") or 0)
            while len(self.buffer) < length:
                more = self.sock.recv(65536)
                if not more:
                    break
                self.buffer += more
            self.body = self.buffer[:length]

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError(f"closed during the handshake; got {self.buffer[:200]!r}")
            self.buffer += more
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError("closed")
            self.buffer += more
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
            (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.sock.sendall(header + mask + masked)

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value).encode())

    def recv(self, timeout: float = 10) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame: 1 text, 2 binary, 8 close."""
        self.sock.settimeout(timeout)
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return first & 0x0F, self._read(n)

    def next_message(self, timeout: float = 10) -> dict[str, Any] | tuple[int, str]:
        """The next JSON text message, or (close code, reason) when the server closes."""
        deadline = time.monotonic() + timeout
        while True:
            opcode, payload = self.recv(max(0.1, deadline - time.monotonic()))
            if opcode == 8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode("utf-8", "replace")
            if opcode == 1:
                return json.loads(payload)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# The server ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pack = PackInstall()
    data = tmp_path_factory.mktemp("hostile") / "data"
    data.mkdir(parents=True)
    proc = ServerProcess(data, pack.name)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        pack.remove()


# Expectations -------------------------------------------------------------------------------------------------
def refused(reply: Reply, statuses: set[int] | int, words: str = "") -> None:
    allowed = {statuses} if isinstance(statuses, int) else statuses
    assert reply.status in allowed, (reply.status, reply.body[:300])
    if reply.status >= 400:
        message = reply.message()
        assert message, f"no error message in {reply.body[:300]!r}"
        assert "Internal Server Error" not in message
        for word in words.split("|") if words else []:
            if word.lower() in message.lower():
                break
        else:
            if words:
                raise AssertionError(f"{words!r} not in {message!r}")


def ws_error(ws: RawWebSocket, words: str = "", timeout: float = 10) -> None:
    message = ws.next_message(timeout)
    assert isinstance(message, dict) and message.get("type") == "error", message
    text = str(message.get("message") or message.get("data", {}).get("message", ""))
    assert text, message
    if words:
        assert any(w.lower() in text.lower() for w in words.split("|")), (words, text)


def ws_closed(ws: RawWebSocket, codes: set[int], timeout: float = 10) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = ws.next_message(deadline - time.monotonic())
        except (ConnectionError, OSError):
            return 1006, ""
        if isinstance(message, tuple):
            assert message[0] in codes, message
            return message
    raise AssertionError(f"the server did not close the connection in {timeout}s")


# Cases --------------------------------------------------------------------------------------------------------
CASES: dict[str, Callable[[ServerProcess], None]] = {}


def case(name: str) -> Callable[[Callable[[ServerProcess], None]], Callable[[ServerProcess], None]]:
    def register(fn: Callable[[ServerProcess], None]) -> Callable[[ServerProcess], None]:
        assert name not in CASES, name
        CASES[name] = fn
        return fn
    return register


JSON_HEADERS = {"Content-Type": "application/json"}
# Bodies that are not JSON we accept, whatever the route.
BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "not-json": (b"hello", "JSON"),
    "truncated": (b'{"prompt": {', "JSON"),
    "lone-surrogate": (json_body('{"a": ' + SURROGATE + "}"), "surrogate"),
    "surrogate-key": (json_body("{" + SURROGATE + ": 1}"), "surrogate"),
    "nan": (b'{"a": NaN}', "NaN"),
    "infinity": (b'{"a": Infinity}', "Infinity"),
    "minus-infinity": (b'{"a": -Infinity}', "Infinity"),
    "overflow-float": (b'{"a": 1e400}', "out of range"),
    "deep-arrays-100k": (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    "deep-objects-50k": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deep"),
    "depth-300": (json.dumps({"a": DEEP_300}).encode(), "nested too deep"),
    "invalid-utf8": (b'{"a": "\xff\xfe"}', "UTF-8"),
}
JSON_ROUTES = ["/api/prompt", "/prompt", "/api/settings", "/api/settings/Comfy.Bad", "/api/queue", "/api/history",
               "/api/interrupt", "/api/free"]


def _bad_body_case(route: str, body: bytes, words: str) -> Callable[[ServerProcess], None]:
    def run(srv: ServerProcess) -> None:
        refused(call(srv.port, "POST", route, body, JSON_HEADERS), 400, words)
    return run


for _route in JSON_ROUTES:
    for _name, (_body, _words) in BAD_BODIES.items():
        case(f"http-json {_route} {_name}")(_bad_body_case(_route, _body, _words))


def _post(srv: ServerProcess, path: str, value: Any) -> Reply:
    return call(srv.port, "POST", path, json.dumps(value).encode(), JSON_HEADERS)


def _prompt_case(name: str, body: Any, status: int, words: str = "",
                 error_type: str | None = None) -> None:
    def run(srv: ServerProcess) -> None:
        reply = _post(srv, "/api/prompt", body)
        refused(reply, status, words)
        if error_type is not None:
            data = reply.json()
            types = {e["type"] for n in data["node_errors"].values() for e in n["errors"]} | {data["error"]["type"]}
            assert error_type in types, data
    case(f"prompt {name}")(run)


def _wf(**changes: Any) -> dict[str, Any]:
    workflow = json.loads(json.dumps(TEST_WORKFLOW))
    workflow["3"]["inputs"]["delay"] = 0.0
    for path, value in changes.items():
        node, _, key = path.partition("__")
        if key:
            workflow[node]["inputs"][key] = value
        else:
            workflow[node] = value
    return workflow


_prompt_case("no prompt key", {"client_id": "x"}, 400, "prompt")
_prompt_case("prompt is a list", {"prompt": [1, 2]}, 400, "prompt")
_prompt_case("prompt is a string", {"prompt": "graph"}, 400, "prompt")
_prompt_case("body is a list", [1], 400, "object")
_prompt_case("empty prompt", {"prompt": {}}, 400, "output", "prompt_no_outputs")
_prompt_case("unknown class", {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, 400, "NoSuchNode")
_prompt_case("node without class_type", {"prompt": {"1": {"inputs": {}}}}, 400, "class_type")
_prompt_case("node is a number", {"prompt": {"1": 5}}, 400, "")
_prompt_case("combo value not in list", {"prompt": _wf(**{"1__colour": "purple"})}, 400, "purple|list",
             "value_not_in_list")
_prompt_case("required input missing", {"prompt": _wf(**{"3": {"class_type": "AGTestCompose", "inputs": {
    "audio": ["2", 0]}}})}, 400, "", "required_input_missing")
_prompt_case("value above max", {"prompt": _wf(**{"1__width": 99999})}, 400, "", "value_bigger_than_max")
_prompt_case("value below min", {"prompt": _wf(**{"1__width": 1})}, 400, "", "value_smaller_than_min")
_prompt_case("int input given text", {"prompt": _wf(**{"1__width": "wide"})}, 400, "", "invalid_input_type")
_prompt_case("link to a missing node", {"prompt": _wf(**{"3__image": ["99", 0]})}, 400, "99", "bad_linked_input")
_prompt_case("link to a missing output", {"prompt": _wf(**{"3__image": ["1", 7]})}, 400, "", "bad_linked_input")
_prompt_case("link of the wrong type", {"prompt": _wf(**{"3__image": ["2", 0]})}, 400, "",
             "return_type_mismatch")
_prompt_case("number is huge", {"prompt": _wf(), "number": 10**30}, 400, "number")
_prompt_case("number is a bool", {"prompt": _wf(), "number": True}, 400, "number")
_prompt_case("front is a string", {"prompt": _wf(), "front": "yes"}, 400, "front")
_prompt_case("client_id is a number", {"prompt": _wf(), "client_id": 5}, 400, "client_id")
_prompt_case("prompt_id too long", {"prompt": _wf(), "prompt_id": LONG}, 400, "prompt_id")
_prompt_case("prompt_id is a number", {"prompt": _wf(), "prompt_id": 7}, 400, "prompt_id")
_prompt_case("extra_data is a list", {"prompt": _wf(), "extra_data": [1]}, 400, "extra_data")
_prompt_case("targets not a list", {"prompt": _wf(), "partial_execution_targets": "3"}, 400, "partial")
_prompt_case("live-only node (MicInput from the session)", {"prompt": {
    "1": {"class_type": "MicInput", "inputs": {"source": "session"}},
    "2": {"class_type": "Whisper", "inputs": {"audio_stream": ["1", 1]}},
    "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}}, 400, "Talk", "custom_validation_failed")
_prompt_case("unknown target", {"prompt": _wf(), "partial_execution_targets": ["42"]}, 400, "42")


@case("prompt extra_data nested 300 deep is refused before it is stored")
def _deep_extra(srv: ServerProcess) -> None:
    refused(_post(srv, "/api/prompt", {"prompt": _wf(), "extra_data": {"deep": DEEP_300}}), 400, "nested")
    assert call(srv.port, "GET", "/api/history").status == 200


@case("prompt with a lone surrogate in class_type")
def _surrogate_class(srv: ServerProcess) -> None:
    body = json_body('{"prompt": {"1": {"class_type": ' + SURROGATE + ', "inputs": {}}}}')
    refused(call(srv.port, "POST", "/api/prompt", body, JSON_HEADERS), 400, "surrogate")


@case("prompt with Infinity is refused and not queued")
def _infinity_not_queued(srv: ServerProcess) -> None:
    before = call(srv.port, "GET", "/api/queue").json()
    body = json.dumps({"prompt": _wf()}).replace('"delay": 0.0', '"delay": Infinity').encode()
    refused(call(srv.port, "POST", "/api/prompt", body, JSON_HEADERS), 400, "Infinity")
    after = call(srv.port, "GET", "/api/queue").json()
    assert len(after["queue_pending"]) == len(before["queue_pending"])


# Query parameters -----------------------------------------------------------------------------------------------
QUERY_CASES = {
    "/api/history?max_items=100000000000000000000": (400, "max_items"),
    "/api/history?offset=100000000000000000000": (400, "offset"),
    "/api/history?max_items=-5": (400, "max_items"),
    "/api/history?offset=-7": (400, "offset"),
    "/api/history?max_items=abc": (400, "max_items"),
    "/api/jobs?limit=100000000000000000000": (400, "limit"),
    "/api/jobs?offset=100000000000000000000": (400, "offset"),
    "/api/jobs?status=exploded": (400, "status"),
    "/api/jobs?sort_by=colour": (400, "sort_by"),
    "/api/jobs?limit=-1": (400, "limit"),
    f"/api/history/{LONG}": (200, ""),
    f"/api/jobs/{LONG}": (404, "job"),
    "/api/object_info/NoSuchNode": (404, "NoSuchNode"),
    "/api/models/nowhere": (404, "nowhere"),
    "/api/workflow_templates/avatargraph/..%2F..%2Fmain.py": (404, "template|not found"),
    "/api/workflow_templates/nosource/x.json": (404, "template"),
    "/api/no/such/route": (404, "Not Found"),
    "/talk/..%2F..%2F..%2Fetc%2Fpasswd": (404, "not found"),
    "/api/settings/" + "s" * 300: (200, ""),
}
for _path, (_status, _words) in QUERY_CASES.items():
    case(f"http-get {_path[:60]}")(lambda srv, p=_path, s=_status, w=_words: refused(call(srv.port, "GET", p), s, w))


# /view -------------------------------------------------------------------------------------------------------------
VIEW_CASES = {
    "no filename": ("/api/view", 400, "filename"),
    "300-char filename": (f"/api/view?filename={LONG}.png&type=input", 400, "name"),
    "300-char subfolder": (f"/api/view?filename=a.png&type=input&subfolder={LONG}", 400, "name"),
    "2000-char path": ("/api/view?filename=a.png&type=input&subfolder=" + "/".join(["abcdefgh"] * 222), 400,
                       "name"),
    "traversal": ("/api/view?filename=../../main.py&type=input", 403, "folder"),
    "absolute path": ("/api/view?filename=/etc/passwd&type=input", 403, "folder"),
    "traversal subfolder": ("/api/view?filename=passwd&type=input&subfolder=../../../etc", 403, "folder"),
    "NUL byte": ("/api/view?filename=a%00b.png&type=input", 400, "NUL"),
    "unknown type": ("/api/view?filename=a.png&type=secrets", 400, "type"),
    "missing file": ("/api/view?filename=nothing.png&type=output", 404, "nothing.png"),
    "annotated missing file": ("/api/view?filename=nothing.png%20%5Binput%5D", 404, "nothing.png"),
}
for _name, (_path, _status, _words) in VIEW_CASES.items():
    case(f"view {_name}")(lambda srv, p=_path, s=_status, w=_words: refused(call(srv.port, "GET", p), s, w))


# Uploads -------------------------------------------------------------------------------------------------------
def multipart_body(fields: dict[str, str], filename: str | None, content: bytes) -> tuple[bytes, str]:
    boundary = "agtestboundary0123456789"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    if filename is not None:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _upload(srv: ServerProcess, filename: str | None, content: bytes, **fields: str) -> Reply:
    body, ctype = multipart_body(fields, filename, content)
    return call(srv.port, "POST", "/api/upload/image", body, {"Content-Type": ctype})


def _huge_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


def _lying_wav() -> bytes:
    data = wav_bytes(0.05)  # 1600 frames of PCM16 = 3200 bytes of data
    riff = bytearray(data)
    at = riff.find(b"data")
    struct.pack_into("<I", riff, at + 4, 2 * 10**9)  # the header claims 2 GB of samples
    struct.pack_into("<I", riff, 4, 2 * 10**9 + 36)
    return bytes(riff)


UPLOAD_CASES: dict[str, tuple[Callable[[ServerProcess], Reply], set[int] | int, str]] = {
    "not multipart": (lambda s: call(s.port, "POST", "/api/upload/image", b"raw", {"Content-Type": "image/png"}),
                      400, "multipart"),
    "no image field": (lambda s: _upload(s, None, b"", type="input"), 400, "image"),
    "empty file": (lambda s: _upload(s, "a.png", b""), 415, "empty"),
    "text file": (lambda s: _upload(s, "a.png", b"hello world, not an image"), 415, "not an image"),
    "html as png": (lambda s: _upload(s, "a.png", b"<html><script>alert(1)</script></html>"), 415, "image"),
    "300-char filename": (lambda s: _upload(s, LONG + ".png", png_bytes(8, 8)), 400, "name"),
    "300-char subfolder": (lambda s: _upload(s, "a.png", png_bytes(8, 8), subfolder=LONG), 400, "name"),
    "traversal subfolder": (lambda s: _upload(s, "a.png", png_bytes(8, 8), subfolder="../../x"), 400, "folder"),
    "unknown type": (lambda s: _upload(s, "a.png", png_bytes(8, 8), type="models"), 400, "type"),
    "12000x12000 png": (lambda s: _upload(s, "big.png", _huge_png()), 415, "megapixels"),
    "truncated jpeg": (lambda s: _upload(s, "cut.jpg", _truncated_jpeg()), 415, "truncated|decoded"),
    "wav header claims 2 GB": (lambda s: _upload(s, "lie.wav", _lying_wav()), 415, "truncated"),
    "declared 200 MB": (lambda s: call(s.port, "POST", "/api/upload/image", b"", {
        "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(200 * 2**20)}), 413, "limited"),
    "valid png is accepted": (lambda s: _upload(s, "ok.png", png_bytes(32, 24)), 200, ""),
    "valid wav is accepted": (lambda s: _upload(s, "ok.wav", wav_bytes(0.3)), 200, ""),
}
for _name, (_send, _status, _words) in UPLOAD_CASES.items():
    case(f"upload {_name}")(lambda srv, f=_send, s=_status, w=_words: refused(f(srv), s, w))


@contextmanager
def server_cpu(srv: ServerProcess) -> Iterator[list[float]]:
    """The server process's CPU seconds spent inside the block (robust to a busy machine, unlike wall time)."""
    import psutil

    proc = psutil.Process(srv.proc.pid)
    before = sum(proc.cpu_times()[:2])
    used = [0.0]
    yield used
    used[0] = sum(proc.cpu_times()[:2]) - before


def _chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    block = b"a" * size
    for _ in range(total // size):
        yield block


@case("upload chunked 101 MB is refused fast")
def _chunked_upload(srv: ServerProcess) -> None:
    boundary = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"

    def body() -> Iterator[bytes]:
        yield boundary
        yield from _chunks(101 * 2**20)
    with server_cpu(srv) as used:
        reply = call(srv.port, "POST", "/api/upload/image", body(), {"Content-Type": "multipart/form-data; boundary=b"})
    refused(reply, 413, "limited")
    assert used[0] < 4.0 and reply.seconds < 60, (used, reply.seconds)  # linear, not quadratic, in the body


@case("userdata chunked 101 MB is refused fast")
def _chunked_userdata(srv: ServerProcess) -> None:
    with server_cpu(srv) as used:
        reply = call(srv.port, "POST", "/api/userdata/big.bin", _chunks(101 * 2**20))
    refused(reply, 413, "larger")
    assert used[0] < 4.0 and reply.seconds < 60, (used, reply.seconds)  # it was 13-15 s of server CPU


# Userdata ------------------------------------------------------------------------------------------------------
USERDATA_CASES: dict[str, tuple[str, str, bytes | None, set[int] | int, str]] = {
    "300-char name": ("POST", f"/api/userdata/{LONG}.json", b"{}", 400, "name"),
    "300-char folder": ("POST", f"/api/userdata/workflows%2F{LONG}%2Fa.json", b"{}", 400, "name"),
    "traversal": ("POST", "/api/userdata/..%2F..%2Fescape.json", b"{}", 403, "folder"),
    "NUL byte": ("POST", "/api/userdata/a%00b.json", b"{}", 400, "NUL"),
    "trailing slash": ("POST", "/api/userdata/workflows%2F", b"{}", 400, "file"),
    "get missing": ("GET", "/api/userdata/nothing.json", None, 404, "nothing"),
    "get 300-char name": ("GET", f"/api/userdata/{LONG}", None, 400, "name"),
    "delete missing": ("DELETE", "/api/userdata/nothing.json", None, 404, "nothing"),
    "list without dir": ("GET", "/api/userdata", None, 400, "dir"),
    "list 300-char dir": ("GET", f"/api/userdata?dir={LONG}", None, 400, "name"),
    "list traversal": ("GET", "/api/userdata?dir=../..", None, 403, "folder"),
    "move to 300-char name": ("POST", f"/api/userdata/ok.json/move/{LONG}.json", None, {400, 404}, "name|no user"),
}
for _name, (_method, _path, _body, _status, _words) in USERDATA_CASES.items():
    case(f"userdata {_name}")(lambda srv, m=_method, p=_path, b=_body, s=_status, w=_words:
                              refused(call(srv.port, m, p, b), s, w))


@case("userdata overwrite=false on an existing file")
def _userdata_exists(srv: ServerProcess) -> None:
    assert call(srv.port, "POST", "/api/userdata/keep.json", b"{}").status == 200
    refused(call(srv.port, "POST", "/api/userdata/keep.json?overwrite=false", b"{}"), 409, "exists")


# Settings --------------------------------------------------------------------------------------------------------
@case("settings nested 300 deep is refused; GET /settings still works")
def _settings_deep(srv: ServerProcess) -> None:
    refused(_post(srv, "/api/settings", {"Comfy.Deep": DEEP_300}), 400, "nested")
    assert call(srv.port, "GET", "/api/settings").status == 200


@case("setting NaN is refused; GET /settings still works")
def _setting_nan(srv: ServerProcess) -> None:
    refused(call(srv.port, "POST", "/api/settings/Comfy.Nan", b"NaN", JSON_HEADERS), 400, "NaN")
    assert call(srv.port, "GET", "/api/settings").status == 200


@case("settings lone surrogate value")
def _settings_surrogate(srv: ServerProcess) -> None:
    body = json_body('{"Comfy.Name": ' + SURROGATE + "}")
    refused(call(srv.port, "POST", "/api/settings", body, JSON_HEADERS), 400, "surrogate")
    assert call(srv.port, "GET", "/api/settings").status == 200


@case("settings body is a list")
def _settings_list(srv: ServerProcess) -> None:
    refused(_post(srv, "/api/settings", [1, 2]), 400, "object")


# Queue and history bodies --------------------------------------------------------------------------------------
for _path, _value, _words in [("/api/queue", {"delete": "abc"}, "list"), ("/api/queue", {"nothing": 1}, "clear"),
                              ("/api/history", {"delete": [{}]}, "list"), ("/api/history", {}, "clear"),
                              ("/api/interrupt", [1], "prompt_id"), ("/api/interrupt", {"prompt_id": 5}, "prompt_id"),
                              ("/api/interrupt", {"session_id": "nope"}, "session"),
                              ("/api/free", [1], "unload")]:
    case(f"body {_path} {json.dumps(_value)}")(lambda srv, p=_path, v=_value, w=_words:
                                               refused(_post(srv, p, v), {400, 404}, w))


# Origin, Host, methods, sizes ------------------------------------------------------------------------------------
HEADER_CASES = {
    "foreign Host": ("GET", "/api/system_stats", {"Host": "evil.example:8188"}, 403, "Host"),
    "foreign Origin on POST": ("POST", "/api/settings", {"Origin": "http://evil.example",
                                                         "Content-Type": "application/json"}, 403, "origin"),
    "Origin null on POST": ("POST", "/api/prompt", {"Origin": "null"}, 403, "origin"),
    "cross-site fetch": ("POST", "/api/interrupt", {"Sec-Fetch-Site": "cross-site"}, 403, "origin"),
    "Origin with another port": ("POST", "/api/interrupt", {"Origin": "http://127.0.0.1:1"}, 403, "origin"),
    "PUT /prompt": ("PUT", "/api/prompt", {}, 405, "Method"),
    "DELETE /history": ("DELETE", "/api/history", {}, 405, "Method"),
}
for _name, (_method, _path, _headers, _status, _words) in HEADER_CASES.items():
    case(f"headers {_name}")(lambda srv, m=_method, p=_path, h=_headers, s=_status, w=_words:
                             refused(call(srv.port, m, p, b"{}" if m in ("POST", "PUT") else None, h), s, w))


@case("a 20 KB request line")
def _long_url(srv: ServerProcess) -> None:
    reply = call(srv.port, "GET", "/api/view?filename=" + "a" * 20_000)
    assert reply.status in (400, 404, 414, 431), reply.status


# ComfyUI's /ws -------------------------------------------------------------------------------------------------------
def _ws(srv: ServerProcess, path: str = "/ws?clientId=hostile", **headers: str) -> RawWebSocket:
    ws = RawWebSocket(srv.port, path, headers)
    if ws.status == 101:
        first = ws.next_message()
        assert isinstance(first, dict) and first["type"] == "status", first
    return ws


def _ws_case(name: str, payload: bytes, opcode: int = 1, words: str = "") -> None:
    def run(srv: ServerProcess) -> None:
        ws = _ws(srv)
        try:
            assert ws.status == 101
            ws.send(payload, opcode)
            ws_error(ws, words)
        finally:
            ws.close()
    case(f"ws {name}")(run)


_ws_case("binary frame", b"\x00\x01", opcode=2, words="binary")
_ws_case("not JSON", b"hello", words="JSON")
_ws_case("JSON array", b"[1, 2]", words="object")
_ws_case("type is a number", b'{"type": 5}', words="type")
_ws_case("unknown type", b'{"type": "rm -rf"}', words="unknown")
_ws_case("deep nesting 100k", b"[" * 100_000 + b"]" * 100_000, words="nested")
_ws_case("nested 300 in feature_flags", json.dumps({"type": "feature_flags", "data": {"x": DEEP_300}}).encode(),
         words="nested")
_ws_case("lone surrogate", json_body('{"type": ' + SURROGATE + "}"), words="surrogate")
_ws_case("NaN", b'{"type": "feature_flags", "data": {"a": NaN}}', words="NaN")


@case("ws invalid UTF-8 text frame closes with 1007")
def _ws_bad_utf8(srv: ServerProcess) -> None:
    ws = _ws(srv)
    try:
        ws.send(b'{"type": "\xff\xfe"}')
        ws_closed(ws, {1007})
    finally:
        ws.close()


@case("ws 300-char clientId is replaced")
def _ws_long_client(srv: ServerProcess) -> None:
    ws = RawWebSocket(srv.port, f"/ws?clientId={LONG}")
    try:
        assert ws.status == 101
        first = ws.next_message()
        assert isinstance(first, dict) and first["data"]["sid"] != LONG
    finally:
        ws.close()


def _refused_upgrade(path: str, headers: dict[str, str], words: str) -> Callable[[ServerProcess], None]:
    def run(srv: ServerProcess) -> None:
        ws = RawWebSocket(srv.port, path, headers)
        try:
            assert ws.status == 403, (ws.status, ws.body)
            body = json.loads(ws.body)
            assert words.lower() in body["error"]["message"].lower(), body
        finally:
            ws.close()
    return run


for _path in ("/ws", "/ws/talk"):
    case(f"upgrade {_path} foreign Origin")(_refused_upgrade(_path, {"Origin": "http://evil.example"}, "origin"))
    case(f"upgrade {_path} foreign Host")(_refused_upgrade(_path, {"Host": "evil.example"}, "Host"))
    case(f"upgrade {_path} Origin null")(_refused_upgrade(_path, {"Origin": "null"}, "origin"))


def _long_upgrade(path: str) -> Callable[[ServerProcess], None]:
    def run(srv: ServerProcess) -> None:
        began = time.monotonic()
        try:
            ws = RawWebSocket(srv.port, path + "?pad=" + "p" * 9000, timeout=10)
        except (ConnectionError, OSError):
            assert time.monotonic() - began < 10  # closed without an answer, but at once
            return
        try:
            assert ws.status in (400, 414, 431), ws.status
        finally:
            ws.close()
    return run


case("upgrade /ws with a 9 KB request line")(_long_upgrade("/ws"))
case("upgrade /ws/talk with a 9 KB request line")(_long_upgrade("/ws/talk"))


# The Talk page's /ws/talk -----------------------------------------------------------------------------------------
def _talk_case(name: str, payloads: list[tuple[bytes, int]], words: str) -> None:
    def run(srv: ServerProcess) -> None:
        ws = RawWebSocket(srv.port, "/ws/talk")
        try:
            assert ws.status == 101
            for payload, opcode in payloads:
                ws.send(payload, opcode)
            ws_error(ws, words)
        finally:
            ws.close()
    case(f"talk {name}")(run)


def _start(**fields: Any) -> tuple[bytes, int]:
    return json.dumps({"type": "start", **fields}).encode(), 1


_talk_case("mic audio before start", [(b"\x00\x00" * 160, 2)], "start")
_talk_case("text before start", [(b'{"type": "text", "text": "hi"}', 1)], "start")
_talk_case("interrupt before start", [(b'{"type": "interrupt"}', 1)], "start")
_talk_case("not JSON", [(b"hello", 1)], "bad message")
_talk_case("unknown type", [(b'{"type": "explode"}', 1)], "bad message")
_talk_case("deep nesting 100k", [(b"[" * 100_000 + b"]" * 100_000, 1)], "bad message")
_talk_case("nested 300 in start", [(json.dumps({"type": "start", "persona": DEEP_300}).encode(), 1)], "bad message")
_talk_case("lone surrogate text", [(json_body('{"type": "text", "text": ' + SURROGATE + "}"), 1)], "bad message")
_talk_case("played NaN", [(b'{"type": "played", "turn": 1, "first_audio_played": NaN}', 1)], "bad message")
_talk_case("played Infinity", [(b'{"type": "played", "turn": 1, "first_frame_played": 1e400}', 1)], "bad message")
_talk_case("played turn 2**40", [(json.dumps({"type": "played", "turn": 2**40}).encode(), 1)], "bad message")
_talk_case("played turn 0", [(b'{"type": "played", "turn": 0}', 1)], "bad message")
_talk_case("300-char persona", [_start(persona=LONG)], "bad message")
_talk_case("300-char photo", [_start(photo=LONG)], "bad message")
_talk_case("300-char workflow", [_start(workflow=LONG)], "bad message")
_talk_case("unknown workflow", [_start(workflow="no_such_chat")], "unknown workflow")
_talk_case("workflow traversal", [_start(workflow="../../etc/passwd")], "unknown workflow")
_talk_case("sample rate 44100", [_start(sample_rate=44100)], "16000")
_talk_case("sample rate 0", [_start(sample_rate=0)], "bad message")
_talk_case("text too long", [(json.dumps({"type": "text", "text": "a" * 5000}).encode(), 1)], "bad message")
_talk_case("mute is a string", [(b'{"type": "mute", "muted": "maybe"}', 1)], "bad message")


@case("talk invalid UTF-8 text frame closes with 1007")
def _talk_bad_utf8(srv: ServerProcess) -> None:
    ws = RawWebSocket(srv.port, "/ws/talk")
    try:
        ws.send(b'{"type": "\xff"}')
        ws_closed(ws, {1007})
    finally:
        ws.close()


@case("talk garbage flood closes with 1008 and a reason")
def _talk_flood(srv: ServerProcess) -> None:
    ws = RawWebSocket(srv.port, "/ws/talk")
    try:
        for _ in range(60):
            ws.send(b"garbage")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = ws.next_message(deadline - time.monotonic())
            if isinstance(message, tuple):
                assert message[0] == 1008 and "protocol errors" in message[1], message
                return
        raise AssertionError("not closed")
    finally:
        ws.close()


@case("talk 20 connections closed at once do not stall the server")
def _talk_close_many(srv: ServerProcess) -> None:
    sockets = [RawWebSocket(srv.port, "/ws/talk") for _ in range(20)]
    for ws in sockets:
        ws.close()
    began = time.monotonic()
    reply = call(srv.port, "GET", "/api/system_stats")
    assert reply.status == 200 and time.monotonic() - began < 3.0, time.monotonic() - began  # was 1.3-2.3 s stalled


# The sweep --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(server: ServerProcess, name: str) -> None:
    CASES[name](server)


ROUTES = ["/api/system_stats", "/api/object_info", "/api/history", "/api/history?max_items=5", "/api/settings",
          "/api/queue", "/api/jobs", "/api/prompt", "/api/features", "/api/extensions", "/api/embeddings",
          "/api/models", "/api/userdata?dir=workflows", "/api/users", "/api/talk/options", "/api/avatargraph/info",
          "/api/workflow_templates", "/system_stats", "/history", "/settings"]


def test_every_route_answers_after_the_sweep(server: ServerProcess) -> None:
    """Runs last (pytest keeps file order): nothing the sweep sent broke a route, and a prompt still runs."""
    for path in ROUTES:
        reply = call(server.port, "GET", path)
        assert reply.status == 200, (path, reply.status, reply.body[:300])
    ws = _ws(server)
    ws.close()
    reply = _post(server, "/api/prompt", {"prompt": _wf(), "client_id": "after-sweep"})
    assert reply.status == 200, reply.body
    prompt_id = reply.json()["prompt_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = call(server.port, "GET", f"/api/history/{prompt_id}").json()
        if entry:
            assert entry[prompt_id]["status"]["status_str"] == "success", entry
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the prompt did not finish")
    log = server.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 500: log.index("Traceback") + 3000]
    assert " 500 " not in log and "Internal Server Error" not in log
    errors = [line for line in log.splitlines() if " ERROR " in line or line.startswith("ERROR:")]
    assert not errors, errors[:10]
    print(f"\n{len(CASES)} hostile inputs, no traceback in the server log")


def test_case_count() -> None:
    assert len(CASES) >= 163, len(CASES)
