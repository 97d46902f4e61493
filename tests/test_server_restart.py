"""A restart with the same ``--data-dir`` shows the same history and resumes the pending queue, after a clean
stop (SIGTERM) and after a crash (SIGKILL, which also re-runs the prompt that was running)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.test_server_support import TEST_WORKFLOW, PackInstall, ServerProcess, request, wait_history


def _prompt(width: int, delay: float = 0.0, steps: int = 2) -> dict:
    prompt = json.loads(json.dumps(TEST_WORKFLOW))
    prompt["1"]["inputs"]["width"] = width
    prompt["3"]["inputs"].update(delay=delay, steps=steps)
    return prompt


def _queue(server: ServerProcess, prompt: dict) -> str:
    status, body = request(server.url, "POST", "/api/prompt", {"prompt": prompt, "client_id": "restart-test"})
    assert status == 200, body
    return body["prompt_id"]


def _wait_running(server: ServerProcess, prompt_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = request(server.url, "GET", "/api/queue")[1]["queue_running"]
        if [item[1] for item in running] == [prompt_id]:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{prompt_id} never ran")


def test_restart_keeps_history_and_resumes_the_queue(tmp_path: Path) -> None:
    pack = PackInstall()
    data = tmp_path / "data"
    servers: list[ServerProcess] = []

    def start() -> ServerProcess:
        servers.append(ServerProcess(data, pack.name).start())
        return servers[-1]
    try:
        first = start()
        done = _queue(first, _prompt(40))
        entry = wait_history(first.url, done)
        assert entry["status"]["status_str"] == "success"
        blocker = _queue(first, _prompt(41, delay=30.0, steps=60))
        _wait_running(first, blocker)
        waiting = [_queue(first, _prompt(50 + i)) for i in range(2)]
        first.stop()  # clean stop: the running prompt is interrupted, the pending ones stay queued

        second = start()
        assert request(second.url, "GET", f"/api/history/{done}")[1] == {done: entry}
        assert wait_history(second.url, blocker)["status"]["status_str"] == "error"  # interrupted by the stop
        for prompt_id in waiting:  # resumed by the restarted worker
            assert wait_history(second.url, prompt_id)["status"]["status_str"] == "success"
        image = entry["outputs"]["3"]["images"][0]
        status, png = request(second.url, "GET", f"/api/view?filename={image['filename']}&type=output")
        assert status == 200 and png[:4] == b"\x89PNG"

        crashed = _queue(second, _prompt(60, delay=3.0, steps=6))
        _wait_running(second, crashed)
        after = [_queue(second, _prompt(70 + i)) for i in range(2)]
        second.kill()  # a crash: nothing gets to clean up

        third = start()
        queued = request(third.url, "GET", "/api/queue")[1]
        ids = [item[1] for item in queued["queue_running"] + queued["queue_pending"]]
        assert ids == [crashed, *after]  # the crashed prompt is back first, the rest in their order
        for prompt_id in [crashed, *after]:
            assert wait_history(third.url, prompt_id, timeout=60)["status"]["status_str"] == "success"
        history = request(third.url, "GET", "/api/history")[1]
        assert list(history)[:1] == [done] and {done, blocker, *waiting, crashed, *after} <= set(history)
        status, jobs = request(third.url, "GET", "/api/jobs?status=completed,failed,cancelled&limit=200&offset=0")
        assert {j["id"] for j in jobs["jobs"]} >= {done, crashed, *after}
    finally:
        for server in servers:
            server.stop()
        pack.remove()
