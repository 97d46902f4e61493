"""A real distributed set-up for tests and benchmarks: a private redis-server, a server (``--queue``), N workers,
each a child process stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.queue.redis_server import LocalRedis, free_port
from tests.test_server_support import request

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RENDER_WORKFLOW = ROOT / "workflows" / "render_avatar.api.json"


def write_render_inputs(folder: Path, seconds: float = 0.6) -> None:
    """``portrait.png`` (skimage's astronaut) and ``speech.wav`` (a 220 Hz tone, 16 kHz) for render_avatar."""
    import numpy as np
    import soundfile as sf
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(folder / "portrait.png")
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(folder / "speech.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(len(t))).astype(np.float32),
             16000, subtype="PCM_16")


def render_prompt(seed: int) -> dict[str, Any]:
    """render_avatar with its own seed and file prefix (so no cache serves it)."""
    import json

    prompt = json.loads(RENDER_WORKFLOW.read_text())
    for node in prompt.values():
        if node["class_type"] == "FaceAnimate":
            node["inputs"]["seed"] = seed
        if node["class_type"] == "VideoOut":
            node["inputs"]["filename_prefix"] = f"render_{seed}"
    return prompt


@dataclass
class Member:
    """One ``main.py`` process (server or worker) with its log."""
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Member:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PYTHON, "main.py", *self.args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.alive:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LocalCluster:
    """``root/redis``, ``root/shared/{input,output}``, one server (no local worker) and workers ``w1``, ``w2``…"""
    root: Path
    pack: str | None = None
    heartbeat_s: float = 1.0  # lost after 3 s of silence: tolerant of a loaded 2-core CI machine
    redis: LocalRedis | None = None
    server: Member | None = None
    workers: dict[str, Member] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def inputs(self) -> Path:
        return self.root / "shared" / "input"

    @property
    def outputs(self) -> Path:
        return self.root / "shared" / "output"

    def _common(self, name: str) -> list[str]:
        args = ["--queue", self.redis.url, "--output-dir", str(self.outputs), "--input-dir", str(self.inputs),
                "--heartbeat", str(self.heartbeat_s)]
        if self.pack:
            args += ["--enable-pack", self.pack]
        return args

    def start(self, workers: int = 2, server: bool = True) -> LocalCluster:
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.redis = LocalRedis(self.root / "redis").start()
        if server:
            self.start_server()
        for i in range(workers):
            self.start_worker(f"w{i + 1}")
        if workers:
            self.wait_workers(len(self.workers))
        return self

    def start_server(self, timeout: float = 90, embedded: bool = False) -> Member:
        """The server on the Redis queue without a local worker, or (``embedded``) the single-machine default:
        SQLite queue, prompts run in the server process."""
        data = self.root / "server"
        if embedded:
            args = ["--port", str(self.port), "--data-dir", str(data), "--output-dir", str(self.outputs),
                    "--input-dir", str(self.inputs), *(["--enable-pack", self.pack] if self.pack else [])]
        else:
            args = ["--port", str(self.port), "--data-dir", str(data), "--no-local-worker", *self._common("server")]
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.server = Member("server", args, self.root / "server.log").start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server.alive:
                raise RuntimeError(f"the server exited:\n{self.server.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/api/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return self.server
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise TimeoutError(f"the server did not start:\n{self.server.log()[-3000:]}")

    def start_worker(self, name: str) -> Member:
        member = Member(name, ["worker", "--name", name, "--data-dir", str(self.root / name), *self._common(name)],
                        self.root / f"{name}.log").start()
        self.workers[name] = member
        return member

    def live_workers(self) -> dict[str, dict[str, Any]]:
        status, stats = request(self.url, "GET", "/api/system_stats")
        assert status == 200, stats
        return {w["name"]: w for w in stats.get("workers", []) if w["alive"]}

    def wait_workers(self, count: int, timeout: float = 120) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.workers.values():
                if member.proc is not None and member.proc.poll() not in (None, -9):
                    raise RuntimeError(f"worker {member.name} exited:\n{member.log()[-3000:]}")
            live = self.live_workers()
            if len(live) >= count:
                return live
            time.sleep(0.3)
        raise TimeoutError(f"{count} workers did not announce themselves: {self.live_workers()}")

    def submit(self, prompt: dict[str, Any], client_id: str = "cluster-test") -> str:
        status, body = request(self.url, "POST", "/api/prompt", {"prompt": prompt, "client_id": client_id})
        assert status == 200, body
        return body["prompt_id"]

    def wait_done(self, prompt_ids: list[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        done: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(done) < len(prompt_ids):
            for prompt_id in prompt_ids:
                if prompt_id not in done:
                    status, body = request(self.url, "GET", f"/api/history/{prompt_id}")
                    if status == 200 and body:
                        done[prompt_id] = body[prompt_id]
            time.sleep(0.2)
        missing = [p for p in prompt_ids if p not in done]
        if missing:
            logs = "\n".join(f"--- {m.name}\n{m.log()[-2000:]}" for m in [self.server, *self.workers.values()] if m)
            raise TimeoutError(f"not done after {timeout}s: {missing}\n{logs}")
        return done

    def stop(self) -> None:
        for member in [*self.workers.values(), self.server]:
            if member is not None:
                member.stop()
        if self.redis is not None:
            self.redis.stop()
