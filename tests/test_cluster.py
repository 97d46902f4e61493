"""Distributed mode on a real redis-server (started by the fixtures on a free loopback port, stopped by PID):
the Redis queue itself, then a server and workers as separate processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.queue.cluster import Cluster, ClusterUnavailable, ClusterVersionError, WorkerInfo
from engine.queue.redis_server import LocalRedis, free_port
from engine.queue.redis_store import RedisQueue
from tests.cluster_support import ROOT, LocalCluster, render_prompt, write_render_inputs
from tests.test_server_support import TEST_WORKFLOW, PackInstall, request

WORKFLOWS = ROOT / "workflows"


@pytest.fixture
def redis_server(tmp_path: Path):
    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def start_cluster(tmp_path: Path):
    """``start_cluster(workers=N, pack=None)``: a running LocalCluster, stopped (every process by PID) at teardown."""
    started: list[LocalCluster] = []

    def start(workers: int = 2, pack: str | None = None) -> LocalCluster:
        cluster = LocalCluster(tmp_path / f"cluster{len(started)}", pack=pack)
        started.append(cluster)
        return cluster.start(workers=workers)
    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def pack():
    install = PackInstall()
    yield install.name
    install.remove()


def _test_prompt(n: int, delay: float = 0.0, steps: int = 2) -> dict:
    prompt = json.loads(json.dumps(TEST_WORKFLOW))
    prompt["1"]["inputs"]["width"] = 32 + n
    prompt["3"]["inputs"].update(delay=delay, steps=steps)
    return prompt


# The queue on Redis, in process ----------------------------------------------------------------------------------
def test_redis_queue_delivers_once_acknowledges_after_completion_and_requeues_a_lost_worker(redis_server) -> None:
    server_side = Cluster(redis_server.url, "server", heartbeat_s=0.2)
    w1, w2 = Cluster(redis_server.url, "w1", heartbeat_s=0.2), Cluster(redis_server.url, "w2", heartbeat_s=0.2)
    try:
        queue = RedisQueue(server_side)
        q1, q2 = RedisQueue(w1, block_ms=100), RedisQueue(w2, block_ms=100)
        items = [queue.enqueue({"n": {"class_type": "X", "inputs": {"i": i}}}, {"k": i}, "client") for i in range(3)]
        front = queue.enqueue({"n": {"class_type": "X", "inputs": {}}}, front=True)
        with pytest.raises(ValueError, match="already queued"):
            queue.enqueue({}, prompt_id=items[0].prompt_id)
        assert queue.remaining() == 4 and [i.prompt_id for i in queue.pending()][0] == front.prompt_id

        first = q1.claim_next()
        assert first is not None and first.prompt_id == front.prompt_id and first.status == "running"
        second = q2.claim_next()
        assert second is not None and second.prompt_id == items[0].prompt_id and second.extra_data == {"k": 0}
        assert {i.prompt_id for i in queue.running()} == {front.prompt_id, items[0].prompt_id}
        assert queue.delete_pending([items[2].prompt_id, first.prompt_id]) == 1  # a running one is not deleted

        q1.complete(first.prompt_id, "success", {"9": {"images": []}}, [["execution_success", {}]], {"t": 1.0})
        entry = queue.history_item(first.prompt_id)[first.prompt_id]
        assert entry["status"]["completed"] and entry["meta"]["worker"] == "w1" and entry["prompt"][1] == first.prompt_id
        assert queue.remaining() == 2

        # w2 dies holding items[0]: re-queued in front, taken by w1, recorded once
        assert queue.requeue_worker("w2") == 1
        assert queue.get(items[0].prompt_id).status == "pending"
        again = q1.claim_next()
        assert again is not None and again.prompt_id == items[0].prompt_id
        q1.complete(again.prompt_id, "success", {}, [])
        # w2 comes back and finishes its stale copy: history still holds one entry per prompt id
        with pytest.raises(KeyError):
            q2.complete(items[0].prompt_id, "success", {}, [])
        last = q2.claim_next()
        assert last is not None and last.prompt_id == items[1].prompt_id
        q2.complete(last.prompt_id, "error", {}, [], error={"exception_message": "boom"})
        assert q1.claim_next() is None and queue.remaining() == 0  # the deleted item's entry was skipped
        history = queue.history()
        assert list(history) == [first.prompt_id, items[0].prompt_id, items[1].prompt_id]
        assert queue.history(max_items=1) == {items[1].prompt_id: history[items[1].prompt_id]}
        assert history[items[1].prompt_id]["status"]["messages"][-1][0] == "execution_error"
        assert queue.delete_history([first.prompt_id]) == 1 and queue.history_count() == 2
        # a finished prompt id queued again runs again (its new entry replaces the old one)
        queue.enqueue({"n": {"class_type": "X", "inputs": {}}}, prompt_id=last.prompt_id)
        assert queue.history_item(last.prompt_id) == {}
        rerun = q1.claim_next()
        assert rerun is not None and rerun.prompt_id == last.prompt_id
        q1.complete(rerun.prompt_id, "success", {}, [])
        assert list(queue.history()) == [items[0].prompt_id, last.prompt_id]
    finally:
        for c in (server_side, w1, w2):
            c.close()


def test_placement_prefers_an_idle_worker_with_the_models_loaded(redis_server) -> None:
    cluster = Cluster(redis_server.url, "server")
    try:
        cluster.announce(WorkerInfo(name="cold", warm=[]))
        cluster.announce(WorkerInfo(name="warm", warm=["Whisper", "LLMPersona"]))
        cluster.announce(WorkerInfo(name="busy-warm", warm=["Whisper", "LLMPersona", "TTS"], running="p0"))
        assert cluster.choose_worker({"Whisper", "TTS"}, idle_only=True) == "warm"
        assert cluster.choose_worker({"Whisper", "TTS"}, idle_only=False) == "busy-warm"
        assert cluster.choose_worker({"LoadImage"}, idle_only=True) is None  # nobody warm: any worker takes it
        queue = RedisQueue(cluster, router=lambda p: cluster.choose_worker(
            {n["class_type"] for n in p.values()}, idle_only=True, busy=lambda w: queue.waiting_for(w) > 0))
        placed = queue.enqueue({"1": {"class_type": "Whisper", "inputs": {}}})
        assert queue.waiting_for("warm") == 1
        # the warm worker has one waiting: the next goes to the shared stream
        shared = queue.enqueue({"1": {"class_type": "Whisper", "inputs": {}}})
        assert queue.waiting_for("warm") == 1
        warm = RedisQueue(Cluster(redis_server.url, "warm"), block_ms=100)
        assert warm.claim_next().prompt_id == placed.prompt_id
        warm.complete(placed.prompt_id, "success", {}, [])
        assert queue.waiting_for("warm") == 0
        # a warm worker that dies before taking its prompt: the prompt goes back to everyone
        late = queue.enqueue({"1": {"class_type": "LLMPersona", "inputs": {}}})
        assert queue.waiting_for("warm") == 1
        assert queue.requeue_worker("warm") == 1 and queue.waiting_for("warm") == 0
        cold = RedisQueue(Cluster(redis_server.url, "cold"), block_ms=100)
        taken = set()
        for _ in range(4):
            item = cold.claim_next()
            if item is not None:
                taken.add(item.prompt_id)
        assert taken == {late.prompt_id, shared.prompt_id}
    finally:
        cluster.close()


def test_protocol_mismatch_is_refused_and_bus_carries_binary_events(redis_server) -> None:
    from engine.graph.events import Event

    a = Cluster(redis_server.url, "a")
    b = Cluster(redis_server.url, "b")
    try:
        a.check_protocol()
        received: list[dict] = []

        async def listen() -> None:
            task = asyncio.create_task(b.listen({b.keys.events: received.append}))
            await asyncio.sleep(0.3)
            a.publish_event(Event("preview", {"prompt_id": "p", "data": b"\xff\xd8jpeg"}, "client"))
            for _ in range(50):
                if received:
                    break
                await asyncio.sleep(0.05)
            task.cancel()
        asyncio.run(listen())
        assert received and received[0]["data"]["data"] == b"\xff\xd8jpeg" and received[0]["client_id"] == "client"

        a.redis.hset(a.keys.meta, "protocol", 999)
        with pytest.raises(ClusterVersionError, match="protocol 999"):
            b.check_protocol()
    finally:
        a.close()
        b.close()


def test_unreachable_redis_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable, match="cannot reach Redis"):
        Cluster(url)
    assert time.monotonic() - started < 10
    proc = subprocess.run([sys.executable, "main.py", "--queue", url, "--data-dir", str(tmp_path / "d"),
                           "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "cannot reach Redis" in proc.stderr and "start redis-server" in proc.stderr


# Server + workers as processes -------------------------------------------------------------------------------
class _EventCollector:
    """A ComfyUI WebSocket client on the server: keeps every message by prompt id; when a prompt's ``executing``
    ``node: null`` arrives, checks at once that its history entry can be read (ComfyUI clients rely on it)."""

    def __init__(self, base: str, client_id: str):
        import threading

        import websocket

        self.base = base
        self.ws = websocket.create_connection(base.replace("http", "ws", 1) + f"/ws?clientId={client_id}",
                                              timeout=60)
        self.messages: list[dict] = []
        self.history_ready_at_end: dict[str, bool] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                raw = self.ws.recv()
            except Exception:
                return
            if not raw:
                return  # closed
            if not isinstance(raw, str):
                continue
            message = json.loads(raw)
            data = message.get("data", {})
            prompt_id = data.get("prompt_id")
            if prompt_id:
                self.messages.append(message)
                if message["type"] == "executing" and data.get("node") is None:
                    status, body = request(self.base, "GET", f"/api/history/{prompt_id}")
                    self.history_ready_at_end[prompt_id] = status == 200 and bool(body)

    def of(self, prompt_id: str) -> list[dict]:
        return [m for m in self.messages if m["data"].get("prompt_id") == prompt_id]

    def wait_ended(self, prompt_ids: list[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not set(prompt_ids) <= set(self.history_ready_at_end):
            time.sleep(0.1)
        assert set(prompt_ids) <= set(self.history_ready_at_end), set(prompt_ids) - set(self.history_ready_at_end)

    def close(self) -> None:
        self.ws.close()


def test_two_workers_render_ten_prompts_with_outputs_on_the_server(start_cluster) -> None:
    cluster = start_cluster(workers=2)
    write_render_inputs(cluster.inputs)
    events = _EventCollector(cluster.url, "cluster-test")
    ids = [cluster.submit(render_prompt(i)) for i in range(10)]
    status, queue = request(cluster.url, "GET", "/api/queue")
    assert status == 200 and {w["name"] for w in queue["workers"]} == {"w1", "w2"}
    done = cluster.wait_done(ids, timeout=300)
    ran_on = {}
    for prompt_id, entry in done.items():
        assert entry["status"]["status_str"] == "success", entry["status"]
        ran_on[prompt_id] = entry["meta"]["worker"]
        video = next(item for ui in entry["outputs"].values() for item in ui.get("images", []) + ui.get("gifs", [])
                     if str(item.get("filename", "")).endswith(".mp4"))
        status, body = request(cluster.url, "GET", f"/api/view?filename={video['filename']}"
                                                   f"&subfolder={video.get('subfolder', '')}&type=output")
        assert status == 200 and body[4:8] == b"ftyp", (status, body[:100])
    assert set(ran_on.values()) == {"w1", "w2"}, ran_on  # both workers took prompts
    # ComfyUI's WebSocket messages reached the client for prompts of both workers, and "executing null" (done)
    # came only once the history entry could be read
    events.wait_ended(ids)
    for prompt_id in ids:
        kinds = [m["type"] for m in events.of(prompt_id)]
        assert kinds[0] == "execution_start" and "executed" in kinds and "execution_success" in kinds, kinds
        assert events.history_ready_at_end[prompt_id], prompt_id
    events.close()
    history = request(cluster.url, "GET", "/api/history")[1]
    assert sorted(history) == sorted(ids)
    stats = request(cluster.url, "GET", "/api/system_stats")[1]
    workers = {w["name"]: w for w in stats["workers"]}
    assert set(workers) == {"w1", "w2"} and all(w["version"] and w["device"] for w in workers.values())
    # Placement: a prompt whose models one worker has loaded goes to that worker (while it is idle)
    say = json.loads((WORKFLOWS / "say_text.api.json").read_text())
    first = cluster.wait_done([cluster.submit(say)], timeout=120)
    warm_worker = next(iter(first.values()))["meta"]["worker"]
    deadline = time.monotonic() + 10
    while "TTS" not in cluster.live_workers()[warm_worker]["warm"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the next heartbeat carries it
    assert "TTS" in cluster.live_workers()[warm_worker]["warm"]
    assert cluster.live_workers()[warm_worker]["running"] is None
    for n in range(3):
        say["1"]["inputs"]["value"] = f"Placement test number {n}."
        again = cluster.wait_done([cluster.submit(say)], timeout=120)
        assert next(iter(again.values()))["meta"]["worker"] == warm_worker


def test_a_killed_worker_s_prompt_completes_on_the_other_worker_once(start_cluster, pack: str) -> None:
    cluster = start_cluster(workers=2, pack=pack)
    slow = cluster.submit(_test_prompt(1, delay=6.0, steps=30))
    deadline = time.monotonic() + 60
    victim = None
    while time.monotonic() < deadline and victim is None:
        queue = request(cluster.url, "GET", "/api/queue")[1]
        victim = queue.get("running_on", {}).get(slow)
        time.sleep(0.1)
    assert victim in ("w1", "w2"), queue
    others = [cluster.submit(_test_prompt(10 + i)) for i in range(3)]
    time.sleep(1.0)  # mid-prompt
    cluster.workers[victim].kill()
    done = cluster.wait_done([slow, *others], timeout=120)
    survivor = ({"w1", "w2"} - {victim}).pop()
    assert done[slow]["meta"]["worker"] == survivor and done[slow]["status"]["status_str"] == "success"
    history = request(cluster.url, "GET", "/api/history")[1]
    assert sorted(history) == sorted([slow, *others])  # nothing lost, nothing twice
    assert request(cluster.url, "GET", "/api/queue")[1]["queue_pending"] == []
    assert victim not in cluster.live_workers()
    # POST /interrupt on the server stops the prompt on whichever worker runs it
    slow = cluster.submit(_test_prompt(2, delay=20.0, steps=100))
    deadline = time.monotonic() + 60
    while request(cluster.url, "GET", "/api/queue")[1].get("running_on", {}).get(slow) is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    asked = time.monotonic()
    assert request(cluster.url, "POST", "/api/interrupt", {"prompt_id": slow})[1] == {"interrupted": True}
    entry = cluster.wait_done([slow], timeout=30)[slow]
    assert time.monotonic() - asked < 10
    assert entry["status"]["status_str"] == "error" and not entry["status"]["completed"]
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"])


def test_redis_restart_mid_queue_loses_nothing_and_the_server_keeps_answering(start_cluster, pack: str) -> None:
    cluster = start_cluster(workers=1, pack=pack)
    ids = [cluster.submit(_test_prompt(i, delay=0.8, steps=4)) for i in range(5)]
    cluster.wait_done(ids[:1], timeout=60)
    cluster.redis.stop(kill=True)
    started = time.monotonic()
    status, body = request(cluster.url, "GET", "/api/queue", timeout=30)
    assert status == 503 and "unreachable" in body["error"]["message"], body
    assert time.monotonic() - started < 15
    status, body = request(cluster.url, "POST", "/api/prompt", {"prompt": _test_prompt(50)}, timeout=30)
    assert status == 503 and body["error"]["type"] == "queue_unavailable", body
    assert request(cluster.url, "GET", "/api/system_stats")[0] == 200  # the server keeps answering
    assert request(cluster.url, "GET", "/api/object_info/LoadImage")[0] == 200
    time.sleep(1.5)
    cluster.redis.start()
    done = cluster.wait_done(ids, timeout=120)
    assert all(e["status"]["status_str"] == "success" for e in done.values()), done
    assert sorted(request(cluster.url, "GET", "/api/history")[1]) == sorted(ids)
    after = cluster.submit(_test_prompt(99))
    cluster.wait_done([after], timeout=60)


def test_worker_of_another_protocol_is_refused(tmp_path: Path, redis_server) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).hset("avatargraph:meta", mapping={"protocol": 999, "version": "9.9"})
    proc = subprocess.run([sys.executable, "main.py", "worker", "--queue", redis_server.url, "--name", "old",
                           "--data-dir", str(tmp_path / "w")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "refused" in proc.stderr and "protocol 999" in proc.stderr and "same AvatarGraph version" in proc.stderr
    assert not redis.Redis.from_url(redis_server.url).hexists("avatargraph:workers", "old")


def test_a_live_session_stays_on_its_worker_and_moves_when_the_worker_dies(start_cluster) -> None:
    from tests.test_talk_harness import TalkClient

    cluster = start_cluster(workers=2)
    ws_url = cluster.url.replace("http", "ws", 1) + "/ws/talk"

    def hosts() -> dict[str, list[str]]:
        return {name: w["sessions"] for name, w in cluster.live_workers().items()}

    async def turn(client: TalkClient, number: int, text: str) -> None:
        await client.send({"type": "text", "text": text})
        await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "avatar" and m["final"]
                              and m["turn"] == number, timeout=180)
        await client.wait_packets(lambda p: p.turn == number and p.kind == 1, count=3, timeout=60)

    async def talk() -> None:
        client = await TalkClient.connect(ws_url)
        ready = await client.start("avatar_chat", photo="default portrait")
        assert ready["type"] == "ready", ready
        session_id = ready["session_id"]
        await asyncio.sleep(1.5)  # a heartbeat or two
        host = next(name for name, sessions in hosts().items() if session_id in sessions)
        other = ({"w1", "w2"} - {host}).pop()
        for number, text in enumerate(["Hello! What is your name?", "Thank you. Goodbye!"], start=1):
            await turn(client, number, text)
            await asyncio.sleep(1.0)
            now = hosts()
            assert session_id in now[host] and now[other] == [], now  # still on the same worker

        # the worker dies: the page is told to reconnect, and the new session lands on the live worker
        cluster.workers[host].kill()
        error = await client.wait_for(lambda m: m["type"] == "error" and "reconnect" in m["message"], timeout=20)
        assert host in error["message"]
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.05)
        assert client.closed and client.ws.close_code == 1012
        client = await TalkClient.connect(ws_url)
        ready = await client.start("avatar_chat", photo="default portrait")
        assert ready["type"] == "ready", ready
        await turn(client, 1, "Hi again!")
        assert ready["session_id"] in hosts()[other]
        await client.close()
        for _ in range(50):
            if hosts()[other] == []:
                break
            await asyncio.sleep(0.2)
        assert hosts()[other] == []  # the worker freed the session when the page left

    asyncio.run(talk())


def test_a_server_that_missed_the_done_message_still_finishes_the_prompt(redis_server, tmp_path: Path) -> None:
    """Pub/sub drops what is sent while a server is disconnected; the reaper's round asks the queue instead."""
    from engine.app.runtime import Runtime, RuntimeConfig

    async def scenario() -> None:
        runtime = Runtime(RuntimeConfig(data_dir=tmp_path / "server", queue_url=redis_server.url, heartbeat_s=0.2,
                                        worker_name="server"))
        changed: list[int] = []
        runtime.queue_listeners.append(lambda: changed.append(1))
        await runtime.start(local_worker=False)
        try:
            item = runtime.queue.enqueue({"1": {"class_type": "X", "inputs": {}}})
            runtime.remote_running.add(item.prompt_id)  # its execution_start came, its prompt_done never will
            assert runtime.is_queued_run(item.prompt_id)
            worker = RedisQueue(Cluster(redis_server.url, "w"), block_ms=100)
            claimed = worker.claim_next()
            worker.complete(claimed.prompt_id, "success", {}, [])
            for _ in range(50):
                if not runtime.is_queued_run(item.prompt_id):
                    break
                await asyncio.sleep(0.1)
            assert not runtime.is_queued_run(item.prompt_id) and changed
        finally:
            await runtime.stop()
    asyncio.run(scenario())


def test_three_prompts_at_once_on_two_workers_sharing_the_output_folder_never_collide(start_cluster) -> None:
    """Issue #18: every render_avatar prompt writes ``avatar_NNNNN_.mp4`` into one shared folder; three at once on
    two workers, three times (the second time the worker of a running prompt is SIGKILLed and started again)."""
    import threading

    from tests.chaos_support import check_mp4, leftovers, video_item

    cluster = start_cluster(workers=2)
    write_render_inputs(cluster.inputs)
    names: list[str] = []
    for round_ in range(3):
        prompts = []
        for i in range(3):
            prompt = render_prompt(round_ * 3 + i)
            next(n for n in prompt.values() if n["class_type"] == "VideoOut")["inputs"]["filename_prefix"] = "avatar"
            prompts.append(prompt)
        ids: list[str] = []
        threads = [threading.Thread(target=lambda p=p: ids.append(cluster.submit(p))) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if round_ == 1:
            victim, deadline = None, time.monotonic() + 60
            while victim is None and time.monotonic() < deadline:
                running = request(cluster.url, "GET", "/api/queue")[1].get("running_on", {})
                victim = next((w for p, w in running.items() if p in ids and w), None)
                time.sleep(0.02)
            assert victim is not None
            cluster.workers[victim].kill()
            cluster.start_worker(victim)
        done = cluster.wait_done(ids, timeout=240)
        for prompt_id in ids:
            entry = done[prompt_id]
            assert entry["status"]["status_str"] == "success", entry["status"]
            item = video_item(entry)
            assert item is not None and item["filename"].startswith("avatar_")
            assert check_mp4(cluster.outputs / item["filename"], 0.6) is None
            names.append(item["filename"])
    assert len(set(names)) == 9, names  # nobody's file was taken, renamed or overwritten by another prompt
    assert leftovers(cluster.outputs) == []  # the killed run's claim and .part are gone
    on_disk = sorted(p.name for p in cluster.outputs.glob("avatar_*.mp4"))
    assert on_disk == sorted(names)  # and it published nothing twice
