"""Distributed mode under faults, on real processes (a redis-server, one server, workers sharing folders).

    .venv/bin/python benchmarks/chaos.py --minutes 30          # mixed prompts queued in bursts for 30 minutes
                                                              # while workers are SIGKILLed and Redis restarted
    .venv/bin/python benchmarks/chaos.py --scenario three --runs 50
                                                              # issue #18's scenario: two workers, three
                                                              # render_avatar prompts at once, 50 times over
                                                              # (every other run kills a worker mid-run)

Prints what happened and ends with one JSON line: prompts, kills, Redis restarts, failures, duplicates, orphans.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos_support import (Chaos, ChaosPlan, check_mp4, leftovers, render_prompt, submit,  # noqa: E402
                                 upload_inputs, video_item)
from tests.cluster_support import LocalCluster  # noqa: E402
from tests.test_server_support import request  # noqa: E402


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min), {os.cpu_count()} CPUs"


def run_mixed(args: argparse.Namespace, root: Path) -> dict:
    plan = ChaosPlan(prompts=args.prompts, minutes=args.minutes, workers=args.workers, seed=args.seed,
                     drain_timeout_s=args.drain_timeout)
    cluster = LocalCluster(root).start(workers=plan.workers)
    try:
        report = Chaos(cluster, plan).run()
    finally:
        cluster.stop()
    for problem in report.problems:
        print("  problem:", problem)
    summary = report.summary()
    print(f"mixed chaos: {report.prompts} prompts in {report.seconds:.0f} s, {report.kills} worker kills, "
          f"{report.redis_restarts} Redis restart(s), {report.reruns} re-runs; failures {report.failures}, "
          f"missing {report.missing}, duplicates {report.duplicates}, overwritten {report.overwritten}, "
          f"orphans {report.orphans}, queue left {report.queue_left}")
    return {"scenario": "mixed", **summary}


def run_three(args: argparse.Namespace, root: Path) -> dict:
    """Issue #18's report: one server, two workers sharing the folders, three render_avatar prompts at once."""
    cluster = LocalCluster(root).start(workers=2)
    failed_runs: list[int] = []
    problems: list[str] = []
    kills = 0
    started = time.monotonic()
    try:
        inputs = upload_inputs(cluster.url)
        for run in range(args.runs):
            ids = [f"three-{run}-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
            seconds = (0.6, 0.8, 1.0)
            threads = [threading.Thread(target=submit, args=(cluster.url, render_prompt(inputs, s, seed=run * 3 + i),
                                                              pid, "three"))
                       for i, (pid, s) in enumerate(zip(ids, seconds))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if run % 2 == 1:  # every other run: kill the worker of a running prompt mid-run, then bring it back
                victim = None
                deadline = time.monotonic() + 30
                while victim is None and time.monotonic() < deadline:
                    running = request(cluster.url, "GET", "/api/queue")[1].get("running_on", {})
                    victim = next((w for p, w in running.items() if p in ids and w), None)
                    time.sleep(0.05)
                if victim is not None:
                    cluster.workers[victim].kill()
                    kills += 1
                    cluster.start_worker(victim)
            done = cluster.wait_done(ids, timeout=300)
            names = []
            run_problems = []
            for pid, s in zip(ids, seconds):
                entry = done[pid]
                if entry["status"]["status_str"] != "success":
                    run_problems.append(f"run {run}: {pid} {entry['status']['status_str']}")
                    continue
                item = video_item(entry)
                name = f"{item.get('subfolder', '')}/{item['filename']}".lstrip("/")
                names.append(name)
                problem = check_mp4(cluster.outputs / name, s)
                if problem:
                    run_problems.append(f"run {run}: {problem}")
            if len(set(names)) != len(names):
                run_problems.append(f"run {run}: two prompts got one name: {names}")
            if run_problems:
                failed_runs.append(run)
                problems += run_problems
            print(f"  run {run + 1}/{args.runs}: {'ok' if not run_problems else 'FAILED'} {names}", flush=True)
        cluster.wait_workers(2)
        left = leftovers(cluster.outputs)
    finally:
        cluster.stop()
    for problem in problems:
        print("  problem:", problem)
    print(f"three-prompt scenario: {args.runs} runs, {len(failed_runs)} failed, {kills} worker kills, "
          f"orphans {len(left)}, {time.monotonic() - started:.0f} s")
    return {"scenario": "three", "runs": args.runs, "failed_runs": len(failed_runs), "prompts": args.runs * 3,
            "kills": kills, "orphans": len(left), "seconds": round(time.monotonic() - started, 1),
            "ok": not failed_runs and not left}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("mixed", "three"), default="mixed")
    parser.add_argument("--minutes", type=float, default=None, help="mixed: keep queuing for this long")
    parser.add_argument("--prompts", type=int, default=60, help="mixed without --minutes: how many prompts")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50, help="three: how many runs of three prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, outputs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    root = Path(tempfile.mkdtemp(prefix="avatargraph-chaos-"))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load()}; folder {root}", flush=True)
    try:
        result = run_three(args, root) if args.scenario == "three" else run_mixed(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result["load_after"] = load()
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
