"""Scale-out benchmark: a short render workflow through the distributed queue with 1, 2 and 3 workers.

    .venv/bin/python benchmarks/scale.py [--prompts 30] [--sequential 15] [--workers 1 2 3]

Every configuration is real processes: a private redis-server, ``main.py --queue … --no-local-worker`` and N
``main.py worker`` processes (and, as the baseline, the embedded default: ``main.py`` with its SQLite queue,
running prompts in the server process). The workflow is ``workflows/render_avatar.api.json`` on a 0.6 s clip (a
different seed per prompt, so nothing is served from a cache).

* **throughput**: ``--prompts`` prompts submitted at once; prompts per minute from the first submission to the
  last completion (as a ComfyUI client sees it: the ``executing``/``node: null`` WebSocket message);
* **scheduling overhead**: ``--sequential`` prompts one at a time; per prompt, client-seen latency (POST /prompt
  → that WebSocket message) minus the executor's own run time (``timings.total`` in history). It covers HTTP,
  validation, the queue, the hand-over to the worker, loading the prompt, recording history and the messages back.

This machine has 2 cores, so more than 2 workers cannot add throughput here; the overhead is the number that
carries over.

* **overlapping prompts** (``--overlap``, not with 1 worker): three clients queue prompts in staggered waves, every
  prompt naming its output ``avatar`` in the one shared folder; reports failed prompts (must be 0) and names
  shared by two prompts (must be 0) beside the throughput. ``--skip-throughput`` runs only this.

Prints figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ROOT first: benchmarks/engine.py must not shadow the engine package

import websocket  # noqa: E402  (websocket-client, as ComfyUI's API examples use)

from tests.cluster_support import RENDER_WORKFLOW, LocalCluster, render_prompt, write_render_inputs  # noqa: E402
from tests.test_server_support import request  # noqa: E402

class Client:
    """A ComfyUI API client: POST /prompt, then wait for ``executing`` with ``node: null`` on the WebSocket."""

    def __init__(self, base: str):
        self.base = base
        self.client_id = uuid.uuid4().hex
        self.ws = websocket.WebSocket()
        self.ws.connect(base.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}", timeout=30)
        self.done_at: dict[str, float] = {}
        self.done_wall: dict[str, float] = {}  # time.time(), to compare with the worker's history timings

    def submit(self, prompt: dict[str, Any]) -> tuple[str, float]:
        self.sent_wall = time.time()
        sent = time.perf_counter()
        status, body = request(self.base, "POST", "/api/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise RuntimeError(f"POST /prompt answered {status}: {body}")
        return body["prompt_id"], sent

    def wait(self, prompt_ids: set[str], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not prompt_ids <= set(self.done_at):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done: {prompt_ids - set(self.done_at)}")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            message = self.ws.recv()
            if not isinstance(message, str):
                continue
            data = json.loads(message)
            body = data.get("data", {})
            if data.get("type") == "executing" and body.get("node") is None and body.get("prompt_id"):
                self.done_at.setdefault(body["prompt_id"], time.perf_counter())
                self.done_wall.setdefault(body["prompt_id"], time.time())
            elif data.get("type") == "execution_error":
                raise RuntimeError(f"prompt failed: {body.get('exception_message')}")

    def close(self) -> None:
        self.ws.close()


def measure(cluster: LocalCluster, prompts: int, sequential: int, seed0: int) -> dict[str, Any]:
    client = Client(cluster.url)
    try:
        # warm-up: each worker loads what the workflow needs (the face mesh, codecs)
        warm = [client.submit(render_prompt(seed0 + i))[0] for i in range(max(1, len(cluster.workers)))]
        client.wait(set(warm))
        overheads, latencies, runs, before, after = [], [], [], [], []
        for i in range(sequential):
            prompt_id, sent = client.submit(render_prompt(seed0 + 100 + i))
            client.wait({prompt_id})
            latency = client.done_at[prompt_id] - sent
            entry = request(cluster.url, "GET", f"/api/history/{prompt_id}")[1][prompt_id]
            run = float(entry["timings"]["total"])
            latencies.append(latency)
            runs.append(run)
            overheads.append(latency - run)
            started = float(entry["timings"].get("started", client.sent_wall))
            before.append(started - client.sent_wall)  # POST -> the worker starts the prompt
            after.append(client.done_wall[prompt_id] - started - run)  # run done -> the client is told
        started = time.perf_counter()
        ids = {client.submit(render_prompt(seed0 + 1000 + i))[0] for i in range(prompts)}
        client.wait(ids)
        wall = max(client.done_at[p] for p in ids) - started
        history = request(cluster.url, "GET", "/api/history")[1]
        per_worker: dict[str, int] = {}
        for prompt_id in ids:
            worker = history[prompt_id].get("meta", {}).get("worker", "server")
            per_worker[worker] = per_worker.get(worker, 0) + 1
        return {"prompts_per_min": round(prompts / wall * 60, 1), "wall_s": round(wall, 2),
                "overhead_ms_median": round(statistics.median(overheads) * 1000, 1),
                "overhead_ms_p90": round(sorted(overheads)[int(0.9 * (len(overheads) - 1))] * 1000, 1),
                "to_start_ms": round(statistics.median(before) * 1000, 1),
                "after_run_ms": round(statistics.median(after) * 1000, 1),
                "latency_s_median": round(statistics.median(latencies), 3),
                "run_s_median": round(statistics.median(runs), 3), "per_worker": per_worker}
    finally:
        client.close()


def overlap_prompt(seed: int) -> dict[str, Any]:
    """render_avatar where every prompt writes ``avatar_NNNNN_.mp4`` into the one shared output folder."""
    prompt = render_prompt(seed)
    for node in prompt.values():
        if node["class_type"] == "VideoOut":
            node["inputs"]["filename_prefix"] = "avatar"
    return prompt


def measure_overlap(cluster: LocalCluster, prompts: int, clients: int, seed0: int) -> dict[str, Any]:
    """``clients`` API clients queue ``prompts`` prompts in overlapping waves (every prompt naming its output
    ``avatar``, so the workers' names would collide without claims); failed prompts must be 0."""
    import threading

    ids: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        time.sleep(0.15 * index)  # staggered: the waves overlap instead of arriving as one batch
        for i in range(index, prompts, clients):
            status, body = request(cluster.url, "POST", "/api/prompt",
                                   {"prompt": overlap_prompt(seed0 + i), "client_id": f"overlap-{index}"})
            if status != 200:
                raise RuntimeError(f"POST /prompt answered {status}: {body}")
            with lock:
                ids.append(body["prompt_id"])
            time.sleep(0.05)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = cluster.wait_done(ids, timeout=900)
    wall = time.perf_counter() - started
    failed = [p for p, e in done.items() if e["status"]["status_str"] != "success"]
    names = [item["filename"] for e in done.values() for ui in e.get("outputs", {}).values()
             for item in ui.get("images", []) if str(item.get("filename", "")).endswith(".mp4")]
    return {"prompts": len(ids), "clients": clients, "failed_prompts": len(failed),
            "shared_names": len(names) - len(set(names)), "prompts_per_min": round(len(ids) / wall * 60, 1),
            "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--sequential", type=int, default=15)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--overlap", type=int, default=30,
                        help="prompts in the overlapping run (3 clients, one output prefix; 0 skips it)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the overlapping-prompts run")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ag-scale-") as tmp:
        root = Path(tmp)
        configs: list[tuple[str, int]] = [("embedded", 0)] + [(f"redis_{n}w", n) for n in args.workers]
        for index, (name, workers) in enumerate(configs):
            cluster = LocalCluster(root / name, heartbeat_s=1.0)
            try:
                if workers == 0:
                    cluster.start_server(embedded=True)
                else:
                    cluster.start(workers=workers)
                write_render_inputs(cluster.inputs)
                load = os.getloadavg()[0]
                if args.skip_throughput:
                    results[name] = {"load_before": round(load, 2)}
                else:
                    results[name] = {**measure(cluster, args.prompts, args.sequential, seed0=index * 10_000),
                                     "load_before": round(load, 2)}
                if args.overlap and workers != 1:
                    o = measure_overlap(cluster, args.overlap, 3, seed0=index * 10_000 + 5000)
                    results[name]["overlap"] = o
                    print(f"{name:>9}: overlapping prompts: {o['prompts']} from {o['clients']} clients into one "
                          f"output prefix, {o['failed_prompts']} failed, {o['shared_names']} shared names, "
                          f"{o['prompts_per_min']} prompts/min ({o['wall_s']} s)", flush=True)
                if args.skip_throughput:
                    continue
                r = results[name]
                print(f"{name:>9}: {r['prompts_per_min']:6.1f} prompts/min ({args.prompts} in {r['wall_s']} s, "
                      f"{r['per_worker']}); overhead per prompt median {r['overhead_ms_median']} ms "
                      f"(p90 {r['overhead_ms_p90']}; to start {r['to_start_ms']}, after run {r['after_run_ms']}), latency {r['latency_s_median']} s of which run "
                      f"{r['run_s_median']} s; load {r['load_before']}", flush=True)
            finally:
                cluster.stop()
    base = results["embedded"]
    for name, r in results.items():
        if name != "embedded" and "prompts_per_min" in r and "prompts_per_min" in base:
            r["throughput_vs_embedded"] = round(r["prompts_per_min"] / base["prompts_per_min"], 2)
            r["extra_overhead_ms"] = round(r["overhead_ms_median"] - base["overhead_ms_median"], 1)
            print(f"{name:>9}: throughput x{r['throughput_vs_embedded']} of the embedded default; overhead "
                  f"{r['extra_overhead_ms']:+} ms per prompt against it")
    print(json.dumps({"benchmark": "scale", "date": datetime.datetime.now().isoformat(timespec="seconds"),
                      "machine": f"{platform.machine()} {os.cpu_count()} cores, no GPU", "workflow": RENDER_WORKFLOW.name,
                      "prompts": args.prompts, "sequential": args.sequential, "results": results}))


if __name__ == "__main__":
    main()
