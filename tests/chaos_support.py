"""Chaos on a real cluster: a redis-server, one server, N workers sharing input/output folders, several API clients
queuing mixed prompts in bursts while workers are SIGKILLed and restarted at random moments and Redis is
restarted; then every promise is checked: each prompt once in history with a valid MP4, nothing overwritten or
truncated, no orphaned temporary files or claims, the queue drained.

Used by ``tests/test_chaos.py`` (the CI version) and ``benchmarks/chaos.py`` (long runs, the three-prompt
scenario of issue #18).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster_support import RENDER_WORKFLOW, ROOT, LocalCluster
from tests.test_server_support import multipart, request

log = logging.getLogger(__name__)

SAY_WORKFLOW = ROOT / "workflows" / "say_text.api.json"
FPS = 25
SIZE = 512
AUDIO_TOLERANCE_S = 0.04
SPEECH_SECONDS = (0.4, 0.6, 0.8, 1.0, 1.3, 1.7)  # render_avatar soundtracks of different lengths
SAY_TEXTS = ("Hello there.", "Good morning, how are you?", "This is a short test.", "One, two, three.",
             "The queue keeps going.", "Nice to meet you!")


@dataclass
class ChaosPlan:
    prompts: int = 60  # stop queuing after this many (or when ``minutes`` have passed, if set)
    minutes: float | None = None
    workers: int = 3
    clients: int = 3
    burst: tuple[int, int] = (2, 5)
    burst_pause_s: tuple[float, float] = (6.0, 16.0)
    kill_every_s: tuple[float, float] = (3.0, 9.0)
    restart_after_s: tuple[float, float] = (0.5, 3.0)
    redis_restarts: int = 1
    max_backlog: int = 12  # clients wait while more prompts than this are queued or running
    say_share: float = 0.3  # share of say_text prompts (TTS) among the render_avatar ones
    seed: int = 0
    drain_timeout_s: float = 600.0


@dataclass
class Submitted:
    prompt_id: str
    workflow: str  # render_avatar | say_text
    expected_audio_s: float | None  # render_avatar: the soundtrack's length
    client: int
    at: float


@dataclass
class ChaosReport:
    prompts: int = 0
    completed: int = 0
    failures: int = 0  # prompts that ended in error, or whose MP4 is missing or invalid
    missing: int = 0  # prompts never in history
    duplicates: int = 0  # output files claimed by more than one prompt, or outputs no prompt refers to
    overwritten: int = 0  # outputs whose content changed after their prompt finished
    orphans: int = 0  # .part files and claims still "writing" after the drain
    queue_left: int = 0
    kills: int = 0
    worker_restarts: int = 0
    redis_restarts: int = 0
    reruns: int = 0  # prompts queued again after their worker was killed (from the members' logs)
    submit_retries: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failures or self.missing or self.duplicates or self.overwritten or self.orphans
                    or self.queue_left)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = self.problems[:20]
        out["ok"] = self.ok
        return out


# MP4 checks -----------------------------------------------------------------------------------------------------
@dataclass
class Probe:
    width: int
    height: int
    fps: float
    frames: int
    video_s: float
    audio_s: float


def probe_mp4(path: Path) -> Probe:
    """Decode every video frame and read both tracks' lengths (PyAV)."""
    import av

    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        frames = sum(1 for _ in c.decode(video=0))
        return Probe(v.codec_context.width, v.codec_context.height, float(v.average_rate), frames,
                     float(v.duration * v.time_base), float(a.duration * a.time_base))


def check_mp4(path: Path, expected_audio_s: float | None) -> str | None:
    """What is wrong with the MP4 at ``path`` (None: 512x512, 25 fps, complete, audio of the right length)."""
    try:
        p = probe_mp4(path)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the finding
        return f"{path.name}: does not decode ({exc})"
    if (p.width, p.height) != (SIZE, SIZE) or abs(p.fps - FPS) > 1e-6:
        return f"{path.name}: {p.width}x{p.height} at {p.fps} fps"
    if abs(p.frames / FPS - p.video_s) > 1.0 / FPS:
        return f"{path.name}: {p.frames} frames decode but the track says {p.video_s:.3f} s (truncated?)"
    if abs(p.audio_s - p.video_s) > AUDIO_TOLERANCE_S:
        return f"{path.name}: audio {p.audio_s:.3f} s against video {p.video_s:.3f} s"
    if expected_audio_s is not None:
        if abs(p.audio_s - expected_audio_s) > AUDIO_TOLERANCE_S:
            return f"{path.name}: audio {p.audio_s:.3f} s, the soundtrack was {expected_audio_s:.3f} s"
        if p.frames != math.ceil(round(expected_audio_s * FPS, 6)):
            return f"{path.name}: {p.frames} frames for {expected_audio_s:.3f} s of audio"
    return None


def leftovers(folder: Path) -> list[str]:
    """Temporary files and unfinished claims below ``folder`` (relative paths)."""
    from engine.files.output_names import CLAIM_SUFFIX, PART_SUFFIX, ClaimRecord

    found = []
    for path in folder.rglob("*"):
        name = path.name
        if name.endswith(PART_SUFFIX) or (name.endswith(".tmp") and CLAIM_SUFFIX in name):
            found.append(path.relative_to(folder).as_posix())
        elif name.endswith(CLAIM_SUFFIX):
            record = ClaimRecord.loads(path.read_bytes())
            if record is None or record.state != "published":
                found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def video_item(entry: dict[str, Any]) -> dict[str, Any] | None:
    for ui in (entry.get("outputs") or {}).values():
        for item in ui.get("images", []) or []:
            if str(item.get("filename", "")).endswith(".mp4"):
                return item
    return None


# Workload --------------------------------------------------------------------------------------------------------
def speech_wav(seconds: float, rate: int = 16000) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(int(round(seconds * rate))) / rate
    tone = 0.3 * np.sin(2 * np.pi * (180 + 60 * seconds) * t) * np.hanning(len(t))
    buf = io.BytesIO()
    sf.write(buf, tone.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def portrait_png() -> bytes:
    import io

    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def upload(base: str, filename: str, content: bytes, ctype: str) -> str:
    """Upload through the server's /upload/image (as ComfyUI's frontend does); returns the stored name."""
    body, content_type = multipart({"type": "input"}, {"image": (filename, content, ctype)})
    status, reply = request(base, "POST", "/api/upload/image", raw=body, headers={"Content-Type": content_type})
    if status != 200:
        raise RuntimeError(f"upload of {filename} failed: {status} {reply}")
    return reply["name"]


@dataclass
class Inputs:
    portrait: str
    speech: dict[float, str]  # seconds -> uploaded name


def upload_inputs(base: str) -> Inputs:
    portrait = upload(base, "portrait.png", portrait_png(), "image/png")
    speech = {s: upload(base, f"speech_{s}.wav", speech_wav(s), "audio/wav") for s in SPEECH_SECONDS}
    return Inputs(portrait, speech)


def render_prompt(inputs: Inputs, seconds: float, seed: int, prefix: str = "avatar") -> dict[str, Any]:
    prompt = json.loads(RENDER_WORKFLOW.read_text())
    for node in prompt.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = inputs.portrait
        elif node["class_type"] == "LoadAudio":
            node["inputs"]["audio"] = inputs.speech[seconds]
        elif node["class_type"] == "FaceAnimate":
            node["inputs"]["seed"] = seed
        elif node["class_type"] == "VideoOut":
            node["inputs"]["filename_prefix"] = prefix
    return prompt


def say_prompt(inputs: Inputs, text: str, seed: int) -> dict[str, Any]:
    prompt = json.loads(SAY_WORKFLOW.read_text())
    for node in prompt.values():
        if node["class_type"] == "PrimitiveStringMultiline":
            node["inputs"]["value"] = text
        elif node["class_type"] == "LoadImage":
            node["inputs"]["image"] = inputs.portrait
        elif node["class_type"] == "FaceAnimate":
            node["inputs"]["seed"] = seed
        elif node["class_type"] == "VideoOut":
            node["inputs"]["filename_prefix"] = "avatar"  # the same prefix as render_avatar: names collide
    return prompt


def submit(base: str, prompt: dict[str, Any], prompt_id: str, client: str, deadline_s: float = 120) -> int:
    """Queue with our own prompt id, retrying while Redis is away (503) or the server does not answer; returns the
    number of retries. A retry of a request that did arrive is refused as 'already queued' (no duplicate)."""
    retries = 0
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            status, body = request(base, "POST", "/api/prompt", {"prompt": prompt, "client_id": client,
                                                                 "prompt_id": prompt_id}, timeout=20)
        except OSError as exc:
            status, body = 0, str(exc)
        if status == 200:
            return retries
        if status == 400 and "already" in json.dumps(body):
            return retries
        if time.monotonic() > deadline:
            raise RuntimeError(f"prompt {prompt_id} not accepted: {status} {body}")
        retries += 1
        time.sleep(min(2.0, 0.2 * retries))


# The run ---------------------------------------------------------------------------------------------------------
class Chaos:
    """One chaos run on ``cluster`` (started by the caller with ``plan.workers`` workers)."""

    def __init__(self, cluster: LocalCluster, plan: ChaosPlan):
        self.cluster, self.plan = cluster, plan
        self.rng = random.Random(plan.seed)
        self.report = ChaosReport()
        self.submitted: list[Submitted] = []
        self._lock = threading.Lock()
        self._queuing_done = threading.Event()
        self._stop_chaos = threading.Event()
        self._started = 0.0
        self._first_seen: dict[str, str] = {}  # output path -> sha256 when its prompt was first seen finished

    # queuing ----------------------------------------------------------------------------------------------------
    def _want_more(self) -> bool:
        if self.plan.minutes is not None:
            return time.monotonic() - self._started < self.plan.minutes * 60
        return len(self.submitted) < self.plan.prompts

    def _client(self, index: int, inputs: Inputs) -> None:
        rng = random.Random(self.plan.seed * 1000 + index)
        client_id = f"chaos-client-{index}"
        while True:
            while self._want_more() and self._remaining() > self.plan.max_backlog:
                time.sleep(1.0)  # a long run queues no faster than the cluster renders (the backlog stays bounded)
            for _ in range(rng.randint(*self.plan.burst)):
                with self._lock:
                    if not self._want_more():
                        return
                    n = len(self.submitted)
                    prompt_id = f"chaos-{index}-{n}-{uuid.uuid4().hex[:8]}"
                    if rng.random() < self.plan.say_share:
                        entry = Submitted(prompt_id, "say_text", None, index, time.monotonic())
                        prompt = say_prompt(inputs, SAY_TEXTS[n % len(SAY_TEXTS)], seed=n)
                    else:
                        seconds = SPEECH_SECONDS[n % len(SPEECH_SECONDS)]
                        entry = Submitted(prompt_id, "render_avatar", seconds, index, time.monotonic())
                        prompt = render_prompt(inputs, seconds, seed=n)
                    self.submitted.append(entry)
                retries = submit(self.cluster.url, prompt, prompt_id, client_id)
                with self._lock:
                    self.report.submit_retries += retries
            time.sleep(rng.uniform(*self.plan.burst_pause_s))

    # chaos ------------------------------------------------------------------------------------------------------
    def _chaos(self) -> None:
        redis_at = sorted(self.rng.uniform(0.25, 0.6) for _ in range(self.plan.redis_restarts))
        while not self._stop_chaos.wait(self.rng.uniform(*self.plan.kill_every_s)):
            progress = self._progress()
            if redis_at and progress >= redis_at[0]:
                redis_at.pop(0)
                log.info("chaos: restarting Redis (SIGKILL)")
                self.cluster.redis.stop(kill=True)
                time.sleep(self.rng.uniform(0.5, 2.0))
                self.cluster.redis.start()
                self.report.redis_restarts += 1
                continue
            name = self._victim()
            member = self.cluster.workers[name]
            if not member.alive:
                continue
            log.info("chaos: SIGKILL worker %s", name)
            member.kill()
            self.report.kills += 1
            time.sleep(self.rng.uniform(*self.plan.restart_after_s))
            self.cluster.start_worker(name)
            self.report.worker_restarts += 1

    def _victim(self) -> str:
        """Mostly a worker in the middle of a prompt (the interesting moment), sometimes any worker."""
        if self.rng.random() < 0.75:
            try:
                status, body = request(self.cluster.url, "GET", "/api/queue", timeout=10)
            except OSError:
                status, body = 0, {}
            busy = sorted({w for w in (body.get("running_on") or {}).values() if w} & set(self.cluster.workers)) \
                if status == 200 else []
            if busy:
                return self.rng.choice(busy)
        return self.rng.choice(sorted(self.cluster.workers))

    def _progress(self) -> float:
        if self.plan.minutes is not None:
            return (time.monotonic() - self._started) / (self.plan.minutes * 60)
        return len(self.submitted) / max(1, self.plan.prompts)

    # waiting and checking ------------------------------------------------------------------------------------------
    def _history(self, prompt_id: str) -> dict[str, Any] | None:
        try:
            status, body = request(self.cluster.url, "GET", f"/api/history/{prompt_id}", timeout=10)
        except OSError:
            return None
        return body[prompt_id] if status == 200 and isinstance(body, dict) and body else None

    def _note_finished(self, entry: dict[str, Any]) -> None:
        item = video_item(entry)
        if item is None:
            return
        path = self.cluster.outputs / item.get("subfolder", "") / item["filename"]
        if path.is_file() and str(path) not in self._first_seen:
            self._first_seen[str(path)] = sha256(path)

    def _wait_all(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        deadline: float | None = None  # drain_timeout_s counts from the end of queuing
        while True:
            with self._lock:
                ids = [s.prompt_id for s in self.submitted]
            for prompt_id in ids:
                if prompt_id not in done:
                    entry = self._history(prompt_id)
                    if entry is not None:
                        done[prompt_id] = entry
                        self._note_finished(entry)
            if self._queuing_done.is_set():
                if len(done) == len(ids):
                    return done
                deadline = deadline or time.monotonic() + self.plan.drain_timeout_s
                if time.monotonic() > deadline:
                    return done
            time.sleep(0.5)

    def run(self) -> ChaosReport:
        self._started = time.monotonic()
        inputs = upload_inputs(self.cluster.url)
        clients = [threading.Thread(target=self._client, args=(i, inputs), name=f"client-{i}", daemon=True)
                   for i in range(self.plan.clients)]
        chaos = threading.Thread(target=self._chaos, name="chaos", daemon=True)
        for thread in (*clients, chaos):
            thread.start()
        waiter_result: dict[str, dict[str, Any]] = {}
        waiter = threading.Thread(target=lambda: waiter_result.update(self._wait_all()), name="waiter", daemon=True)
        waiter.start()
        for thread in clients:
            thread.join()
        self._queuing_done.set()
        # keep the chaos going until most of the queue has run, then let the cluster finish in peace
        deadline = time.monotonic() + self.plan.drain_timeout_s / 2
        while waiter.is_alive() and self._remaining() > self.plan.workers and time.monotonic() < deadline:
            time.sleep(1.0)
        self._stop_chaos.set()
        chaos.join()
        self._ensure_workers()
        waiter.join()
        self.report.seconds = round(time.monotonic() - self._started, 1)
        self._check(waiter_result)
        return self.report

    def _remaining(self) -> int:
        try:
            status, body = request(self.cluster.url, "GET", "/api/queue", timeout=10)
        except OSError:
            return 1 << 30
        if status != 200:
            return 1 << 30
        return len(body.get("queue_pending", [])) + len(body.get("queue_running", []))

    def _ensure_workers(self) -> None:
        for name, member in self.cluster.workers.items():
            if not member.alive:
                self.cluster.start_worker(name)
                self.report.worker_restarts += 1

    def _check(self, done: dict[str, dict[str, Any]]) -> None:
        r = self.report
        r.prompts = len(self.submitted)
        status, history = request(self.cluster.url, "GET", "/api/history", timeout=30)
        if status == 200:
            extra = set(history) - {s.prompt_id for s in self.submitted}
            if extra:
                r.problems.append(f"history has entries nobody queued: {sorted(extra)[:5]}")
                r.duplicates += len(extra)
        outputs: Counter[str] = Counter()
        for s in self.submitted:
            entry = done.get(s.prompt_id)
            if entry is None:
                r.missing += 1
                r.problems.append(f"{s.prompt_id} ({s.workflow}) never finished")
                continue
            if entry["status"]["status_str"] != "success":
                r.failures += 1
                messages = [m for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
                detail = messages[0][1].get("exception_message", "")[:200] if messages else entry["status"]
                r.problems.append(f"{s.prompt_id} ({s.workflow}) failed: {detail}")
                continue
            item = video_item(entry)
            if item is None:
                r.failures += 1
                r.problems.append(f"{s.prompt_id}: no MP4 in its outputs")
                continue
            relative = f"{item.get('subfolder', '')}/{item['filename']}".lstrip("/")
            outputs[relative] += 1
            path = self.cluster.outputs / relative
            problem = check_mp4(path, s.expected_audio_s)
            if problem is not None:
                r.failures += 1
                r.problems.append(f"{s.prompt_id} ({s.workflow}): {problem}")
                continue
            r.completed += 1
            before = self._first_seen.get(str(path))
            if before is not None and before != sha256(path):
                r.overwritten += 1
                r.problems.append(f"{relative} changed after {s.prompt_id} finished")
        shared = [name for name, count in outputs.items() if count > 1]
        stray = sorted(p.relative_to(self.cluster.outputs).as_posix() for p in self.cluster.outputs.rglob("*.mp4")
                       if not p.name.startswith(".")
                       and p.relative_to(self.cluster.outputs).as_posix() not in outputs)
        r.duplicates += len(shared) + len(stray)
        if shared:
            r.problems.append(f"outputs shared by several prompts: {shared[:5]}")
        if stray:
            r.problems.append(f"outputs no prompt refers to: {stray[:5]}")
        requeued = re.compile(r"queue: (\d+) prompt\(s\) of worker \S+ queued again")
        r.reruns = sum(int(m.group(1)) for member in [self.cluster.server, *self.cluster.workers.values()]
                       if member is not None for m in requeued.finditer(member.log()))
        left = leftovers(self.cluster.outputs) + leftovers(self.cluster.inputs)
        r.orphans = len(left)
        if left:
            r.problems.append(f"left behind: {left[:5]}")
        r.queue_left = self._remaining()
        if r.queue_left:
            r.problems.append(f"{r.queue_left} prompt(s) still queued")


def start_chaos_cluster(root: Path, workers: int) -> LocalCluster:
    return LocalCluster(root).start(workers=workers)
