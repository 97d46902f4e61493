"""Helpers for the server tests (no tests here): the test node pack, a real ``main.py`` server process on a
free 127.0.0.1 port (stopped by its PID), and small HTTP/WebSocket clients written the way ComfyUI users
script its API (``urllib`` + ``websocket-client``)."""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.queue.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

PACK_INIT = "from tests.test_server_nodes import NODES  # noqa: F401  (the server tests' node pack)\n"

TEST_WORKFLOW = {
    "1": {"class_type": "AGTestSolidImage", "inputs": {"width": 96, "height": 64, "colour": "teal"}},
    "2": {"class_type": "AGTestTone", "inputs": {"seconds": 0.5, "frequency": 440}},
    "3": {"class_type": "AGTestCompose", "inputs": {"image": ["1", 0], "audio": ["2", 0], "gain": 1.0, "steps": 3,
                                                    "delay": 0.3, "fail": False, "filename_prefix": "agtest"}},
}



def install_pack(custom_nodes: Path) -> str:
    """Write the test pack (a one-line import of ``tests.test_server_nodes``) into ``custom_nodes``."""
    name = f"agtest_{uuid.uuid4().hex[:8]}"
    folder = custom_nodes / name
    (folder / "example_workflows").mkdir(parents=True)
    (folder / "__init__.py").write_text(PACK_INIT)
    (folder / "example_workflows" / "agtest_compose.json").write_text(json.dumps(TEST_WORKFLOW, indent=1))
    return name


@dataclass
class ServerProcess:
    """``python main.py --port N --data-dir D --enable-pack P`` as a child process."""

    data_dir: Path
    pack: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PYTHON, "main.py", "--port", str(self.port), "--data-dir", str(self.data_dir),
                                      "--enable-pack", self.pack], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/api/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"the server did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the server can tell."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class PackInstall:
    """The test pack in the project's ``custom_nodes/`` (git-ignored), removed again by ``remove``."""

    def __init__(self) -> None:
        self.custom_nodes = ROOT / "custom_nodes"
        self.custom_nodes.mkdir(exist_ok=True)
        self.name = install_pack(self.custom_nodes)
        atexit.register(self.remove)  # also when a run is cut short before the fixture's teardown

    def remove(self) -> None:
        shutil.rmtree(self.custom_nodes / self.name, ignore_errors=True)


# ComfyUI-style client helpers -------------------------------------------------------------------------------
def request(base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            raw: bytes | None = None, timeout: float = 30) -> tuple[int, Any]:
    """(status, parsed JSON or bytes); HTTP errors are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if body is not None and raw is None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, payload, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, payload, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(payload or b"null")
    return status, payload


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    for name, (filename, content, ctype) in files.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                  f"Content-Type: {ctype}\r\n\r\n".encode())
        out.write(content)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def upload(base: str, filename: str, content: bytes, ctype: str = "application/octet-stream",
           **fields: str) -> tuple[int, Any]:
    body, content_type = multipart(fields, {"image": (filename, content, ctype)})
    return request(base, "POST", "/upload/image", raw=body, headers={"Content-Type": content_type})


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate, format="WAV",
                    subtype="PCM_16")
    return buf.getvalue()


def follow(ws: Any, prompt_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Read messages until ``executing`` with ``node: null`` for ``prompt_id`` (ComfyUI's websocket example)."""
    messages = []
    deadline = time.monotonic() + timeout
    ws.settimeout(5)
    while time.monotonic() < deadline:
        try:
            frame = ws.recv()
        except Exception as exc:  # websocket timeout: keep waiting until the deadline
            if "timed out" in str(exc).lower():
                continue
            raise
        if isinstance(frame, bytes):
            messages.append({"type": "<binary>", "data": frame})
            continue
        message = json.loads(frame)
        messages.append(message)
        data = message.get("data", {})
        if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return messages
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s; got {[m['type'] for m in messages]}")


def wait_history(base: str, prompt_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = request(base, "GET", f"/history/{prompt_id}")
        if status == 200 and body:
            return body[prompt_id]
        time.sleep(0.2)
    raise TimeoutError(f"no history entry for {prompt_id} after {timeout}s")
