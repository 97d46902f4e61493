"""Soak test of live conversation: talk to the avatar continuously for N minutes and check that nothing degrades.

The real server runs in-process (as in benchmarks/conversation.py) with the default stack (workflows/avatar_chat);
a Talk-page stand-in speaks espeak-ng utterances (English and Russian, alternating) over the Talk WebSocket in real
time, with silence in between, waits for each reply to play out, and every ``--barge-every``-th turn talks over
the avatar instead (barge-in). Every ``--session-turns`` turns it hangs up and opens a new session, so sessions
are created and freed all along.

Pass criteria: zero errors (error messages, timeouts, turns without a reply, sessions not freed); RSS growth < 5 %
from the end of the warm-up (the first session: models load) to the end; no leaked threads or file descriptors
(counted between sessions, when none is open). Each sample also says where the memory lies (engine/app/malloc.py):
anonymous vs file-backed, glibc heap in use vs free, large mmapped blocks, arenas. Like main.py, it caps glibc's
malloc arenas first (``--malloc-arenas 0`` leaves glibc's default: one per thread, up to 8 per core).

Run: ``.venv/bin/python benchmarks/soak.py --minutes 60``; the last line printed is JSON.

Idle cost: ``.venv/bin/python benchmarks/soak.py --idle 1,4,8`` opens 1, 4, then 8 silent Talk sessions (from a child
process, so only the server's CPU is counted), measures the server's CPU per idle session after a warm-up, how long
the event loop stalls when they all close at once, and the CPU of one spoken turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # ROOT first: benchmarks/engine.py must not shadow engine

from conversation import (  # noqa: E402
    UTTERANCES,
    InProcessServer,
    TalkDriver,
    TurnResult,
    default_workflow,
    espeak,
    one_turn,
)

MAX_RSS_GROWTH = 0.05
LEAK_TOLERANCE = 0  # threads / file descriptors above the post-warm-up count


@dataclass
class Sample:
    at_s: float
    rss_mb: float
    threads: int  # Python threads other than the event loop's worker pool (bounded, grows on demand)
    pool_threads: int  # the loop's default executor workers (at most min(32, cores + 4))
    fds: int
    sessions_open: int
    py_objects: int  # objects the garbage collector tracks: growth here is a leak, not allocator fragmentation
    turns: int = 0
    anon_mb: float = 0.0  # anonymous resident memory (heap, arenas, stacks, native buffers)
    file_mb: float = 0.0  # file-backed resident memory (mapped weights, libraries)
    heap_mb: float = 0.0  # glibc arenas' size (mallinfo2 ``arena``)
    heap_in_use_mb: float = 0.0  # allocated, not freed (``uordblks``)
    heap_free_mb: float = 0.0  # freed but kept by the arenas (``fordblks``)
    mmapped_mb: float = 0.0  # large blocks mmapped one by one (``hblkhd``)
    arenas: int = 0
    cache_entries: int = 0  # the engine's output cache
    models_loaded: int = 0


@dataclass
class SoakReport:
    minutes: float
    turns: int = 0
    barge_ins: int = 0
    sessions: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    warm_up_index: int = 0  # samples[warm_up_index] is the baseline
    reply_ms: list[float] = field(default_factory=list)
    barge_stop_ms: list[float] = field(default_factory=list)  # client: start of the interrupting speech -> flush
    graph_stop_ms: list[float] = field(default_factory=list)  # server: speech_start -> every node stopped

    def verdict(self) -> dict[str, Any]:
        base = self.samples[self.warm_up_index] if self.samples else None
        end = self.samples[-1] if self.samples else None
        growth = (end.rss_mb - base.rss_mb) / base.rss_mb if base and end else None
        leaked_threads = (end.threads - base.threads) if base and end else None
        leaked_fds = (end.fds - base.fds) if base and end else None
        passed = (not self.errors and growth is not None and growth < MAX_RSS_GROWTH
                  and leaked_threads is not None and leaked_threads <= LEAK_TOLERANCE
                  and leaked_fds is not None and leaked_fds <= LEAK_TOLERANCE and end.sessions_open == 0
                  and len(self.samples) - self.warm_up_index >= 2)
        return {"passed": passed, "rss_growth": None if growth is None else round(growth, 4),
                "rss_baseline_mb": base.rss_mb if base else None, "rss_end_mb": end.rss_mb if end else None,
                "rss_max_mb": max((s.rss_mb for s in self.samples), default=None),
                "threads_baseline": base.threads if base else None, "threads_end": end.threads if end else None,
                "fds_baseline": base.fds if base else None, "fds_end": end.fds if end else None}


def sample(started: float, runtime: Any, turns: int = 0) -> Sample:
    import gc

    import psutil

    from engine.app.malloc import memory_report

    proc = psutil.Process()
    names = [t.name for t in threading.enumerate()]
    pool = sum(1 for n in names if n.startswith("asyncio_"))
    mem = memory_report()
    models = getattr(runtime, "models", None)
    cache = getattr(getattr(runtime, "executor", None), "cache", None)
    return Sample(round(time.monotonic() - started, 1), round(proc.memory_info().rss / 2**20, 1),
                  len(names) - pool, pool, proc.num_fds(), len(runtime.sessions), len(gc.get_objects()),
                  turns, mem.get("anon_mb", 0.0), mem.get("file_mb", 0.0), mem.get("heap_mb", 0.0),
                  mem.get("in_use_mb", 0.0), mem.get("free_mb", 0.0), mem.get("mmapped_mb", 0.0),
                  mem.get("arenas", 0), len(cache) if cache is not None else 0,
                  len(models.loaded()) if models is not None else 0)


async def barge_turn(driver: TalkDriver, lang: str, first: tuple[str, Any], second: tuple[str, Any],
                     timeout: float) -> tuple[TurnResult, float | None]:
    """Say ``first``; once the avatar's reply is playing, say ``second`` over it. Returns the second turn and how
    long after the start of the interrupting speech the page was told to flush (ms)."""
    mark = len(driver.messages)
    await driver.say(first[1])
    user = await driver.wait(lambda m: m.get("type") == "transcript" and m.get("role") == "user" and m.get("final"),
                             timeout, start=mark)
    await driver.wait(lambda m: m.get("type") == "state" and m.get("state") == "speaking", timeout,
                      start=driver.messages.index(user))
    began = time.time() * 1000
    flush_mark = len(driver.messages)
    task = asyncio.create_task(one_turn(driver, lang, second[0], second[1], timeout))
    flushed: float | None = None
    try:
        flush = await driver.wait(lambda m: m.get("type") == "flush", timeout, start=flush_mark)
        flushed = flush["_at"] - began
    except TimeoutError:
        pass
    result = await task
    if flushed is None and not result.error:
        result.error = "the barge-in was not flushed"
    return result, flushed


async def soak(minutes: float, session_turns: int = 6, barge_every: int = 5, workflow: dict[str, Any] | None = None,
               registry: Any = None, turn_timeout: float = 120.0, verbose: bool = True) -> SoakReport:
    report = SoakReport(minutes)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        speech = [(lang, text, espeak(text, lang, folder)) for i in range(12) for lang in ("en", "ru")
                  for text in [UTTERANCES[lang][i]]]
        started = time.monotonic()
        deadline = started + minutes * 60
        async with InProcessServer(folder, workflow or default_workflow(), registry) as srv:
            from server.talk import talk_connections

            turn_index = 0
            while time.monotonic() < deadline or report.sessions == 0:
                driver = TalkDriver(srv.url)
                ready = await driver.open(workflow="bench_chat", persona="", photo="default portrait", voice="")
                if ready.get("type") != "ready":
                    report.errors.append(f"session did not start: {ready}")
                    break
                report.sessions += 1
                for _ in range(session_turns):
                    lang, text, samples = speech[turn_index % len(speech)]
                    turn_index += 1
                    if barge_every and turn_index % barge_every == 0:
                        nxt = speech[turn_index % len(speech)]
                        turn_index += 1
                        result, flushed = await barge_turn(driver, lang, (text, samples), (nxt[1], nxt[2]),
                                                           turn_timeout)
                        report.barge_ins += 1
                        if flushed is not None:
                            report.barge_stop_ms.append(round(flushed, 1))
                    else:
                        result = await one_turn(driver, lang, text, samples, turn_timeout)
                    report.turns += 1
                    if result.error or not result.reply:
                        report.errors.append(f"turn {report.turns} ({result.said!r}): {result.error or 'no reply'}")
                    elif result.reply_ms is not None:
                        report.reply_ms.append(round(result.reply_ms))
                    if verbose:
                        print(f"[{time.monotonic() - started:6.0f} s] turn {report.turns}: {result.said!r} -> heard "
                              f"{result.heard!r}; reply {result.reply[:60]!r} after {result.reply_ms} ms "
                              f"{result.error}", flush=True)
                    await asyncio.sleep(0.5)
                    if time.monotonic() >= deadline:
                        break
                for connection in talk_connections(srv.app):  # the server's own barge-in stop times
                    report.graph_stop_ms += [round(b.since_speech_ms, 1) for b in connection.barge_ins]
                await driver.close()
                for _ in range(300):  # the server frees the session
                    if not srv.runtime.sessions and not talk_connections(srv.app):
                        break
                    await asyncio.sleep(0.05)
                if srv.runtime.sessions:
                    report.errors.append(f"session {ready.get('session_id')} was not freed after the client left")
                await asyncio.sleep(1.0)  # worker threads of the closed session wind down
                report.samples.append(sample(started, srv.runtime, report.turns))
                if verbose:
                    print(f"  after session {report.sessions}: {asdict(report.samples[-1])}", flush=True)
    return report


# Idle cost --------------------------------------------------------------------------------------------------
async def drive_idle(url: str, count: int) -> None:
    """(Child process) ``count`` Talk sessions that stay open and silent: the mic sends silence in real time."""
    drivers = [TalkDriver(url) for _ in range(count)]
    for driver in drivers:
        ready = await driver.open(workflow="bench_chat", persona="", photo="default portrait", voice="")
        if ready.get("type") != "ready":
            print(f"session did not start: {ready}", file=sys.stderr, flush=True)
            sys.exit(2)
    print("ready", flush=True)
    while True:
        await asyncio.sleep(3600)


def _cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per kind of thread (Python thread names without their numbers; "native" for the threads of
    onnxruntime, CTranslate2, llama.cpp or OpenMP)."""
    import re

    import psutil

    names = {t.native_id: re.sub(r"[-_ ]?\d+.*$", "", t.name) or t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id)
        if name is None:  # a library's own thread: its Linux name (onnxruntime, OpenMP, llama.cpp, ...)
            try:
                name = "native:" + re.sub(r"[-_ ]?\d+$", "", Path(f"/proc/self/task/{t.id}/comm").read_text().strip())
            except OSError:
                name = "native"
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def _callable_name(fn: Any) -> str:
    import functools

    while isinstance(fn, functools.partial):
        fn = fn.args[0] if fn.func.__name__ == "run" and fn.args else fn.func
    return getattr(fn, "__qualname__", None) or type(fn).__name__


async def _window(seconds: float, breakdown: dict[str, float] | None = None) -> float:
    """Percent of one core this process used over the next ``seconds`` (and per thread kind in ``breakdown``,
    with the functions sent to the loop's thread pool, per second)."""
    loop = asyncio.get_running_loop()
    calls: dict[str, int] = {}
    original = loop.run_in_executor

    def counting(executor: Any, fn: Any, *args: Any) -> Any:
        name = _callable_name(fn)
        calls[name] = calls.get(name, 0) + 1
        return original(executor, fn, *args)
    loop.run_in_executor = counting  # type: ignore[method-assign]
    cpu, wall, threads = _cpu_seconds(), time.monotonic(), _thread_cpu()
    try:
        await asyncio.sleep(seconds)
    finally:
        loop.run_in_executor = original  # type: ignore[method-assign]
    elapsed = time.monotonic() - wall
    if breakdown is not None:
        for name, count in sorted(calls.items(), key=lambda kv: -kv[1])[:6]:
            breakdown[f"pool calls/s: {name}"] = round(count / elapsed, 1)
    if breakdown is not None:
        for name, used in _thread_cpu().items():
            share = 100.0 * (used - threads.get(name, 0.0)) / elapsed
            if share >= 0.1:
                breakdown[name] = round(share, 1)
    return 100.0 * (_cpu_seconds() - cpu) / elapsed


async def settle(warm_s: float, quiet_pct: float = 1.5, limit_s: float = 480.0) -> None:
    """Wait ``warm_s``, then until the models' own threads are quiet (the LLM's prompt prewarm and the first
    Whisper pass run at session start and take minutes on a loaded machine: they are not idle cost)."""
    await asyncio.sleep(warm_s)
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        threads: dict[str, float] = {}
        await _window(10.0, threads)
        native = sum(v for k, v in threads.items() if k.startswith("native"))
        if native < quiet_pct:
            return
    print(f"  (models still busy after {limit_s:.0f} s of warm-up)", flush=True)


async def idle_cost(counts: list[int], warm_s: float, window_s: float, speaking: bool,
                    workflow: dict[str, Any] | None) -> dict[str, Any]:
    """Server CPU (this process) with 0, then each of ``counts`` open silent sessions (driven from a child process,
    so the clients' own CPU is not counted), and during one spoken turn; percent of one core."""
    import os
    import subprocess

    out: dict[str, Any] = {"idle": {}, "close_stall_ms": None}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with InProcessServer(folder, workflow or default_workflow()) as srv:
            from server.talk import talk_connections

            out["no_session_pct"] = round(await _window(min(window_s, 10)), 2)
            for count in counts:
                child = subprocess.Popen([sys.executable, __file__, "--drive-idle", srv.url, str(count)],
                                         stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
                try:
                    line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 600)
                    if line.strip() != "ready":
                        raise RuntimeError(f"{count} idle sessions did not start")
                    await settle(warm_s)
                    threads: dict[str, float] = {}
                    total = await _window(window_s, threads)
                    out["idle"][count] = {"total_pct": round(total, 2), "per_session_pct":
                                          round((total - out["no_session_pct"]) / count, 2),
                                          "threads_pct": dict(sorted(threads.items(), key=lambda kv: -kv[1]))}
                    print(f"  {count} idle session(s): server {total:.1f} % of one core, "
                          f"{out['idle'][count]['per_session_pct']:.1f} % per session; by thread "
                          f"{out['idle'][count]['threads_pct']}", flush=True)
                finally:
                    began = time.monotonic()
                    child.terminate()  # its sessions close at once
                    await asyncio.to_thread(child.wait, 30)
                    stall = 0.0
                    while talk_connections(srv.app) and time.monotonic() - began < 60:
                        tick = time.monotonic()
                        await asyncio.sleep(0.01)
                        stall = max(stall, (time.monotonic() - tick - 0.01) * 1000)
                    if count == max(counts):
                        out["close_stall_ms"] = round(stall, 1)
                    await asyncio.sleep(3.0)
            if speaking:
                driver = TalkDriver(srv.url)
                await driver.open(workflow="bench_chat", persona="", photo="default portrait", voice="")
                await asyncio.sleep(warm_s)
                text = UTTERANCES["en"][0]
                samples = espeak(text, "en", folder)
                cpu, wall = _cpu_seconds(), time.monotonic()
                result = await one_turn(driver, "en", text, samples, 180)
                pct = 100.0 * (_cpu_seconds() - cpu) / (time.monotonic() - wall)
                out["speaking"] = {"turn_pct": round(pct, 1), "turn_s": round(time.monotonic() - wall, 1),
                                   "error": result.error}
                print(f"  1 speaking session: {pct:.0f} % of one core over its turn "
                      f"({time.monotonic() - wall:.1f} s)", flush=True)
                await driver.close()
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--drive-idle":
        asyncio.run(drive_idle(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--session-turns", type=int, default=6)
    parser.add_argument("--barge-every", type=int, default=5)
    parser.add_argument("--workflow", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--malloc-arenas", type=int, default=None,
                        help="cap glibc's malloc arenas (engine.app.malloc.limit_malloc_arenas; 0: leave the default)")
    parser.add_argument("--idle", default=None, metavar="COUNTS",
                        help="measure the server's CPU per open silent session instead, e.g. --idle 1,4,8")
    parser.add_argument("--idle-warm", type=float, default=30.0, help="seconds before each idle window")
    parser.add_argument("--idle-window", type=float, default=20.0, help="seconds each idle window lasts")
    parser.add_argument("--no-speaking", action="store_true", help="with --idle: skip the spoken turn")
    args = parser.parse_args()
    if args.idle:
        import os

        logging.basicConfig(level=logging.WARNING)
        counts = [int(c) for c in args.idle.split(",")]
        workflow = json.loads(args.workflow.read_text()) if args.workflow else None
        result = asyncio.run(idle_cost(counts, args.idle_warm, args.idle_window, not args.no_speaking, workflow))
        load = os.getloadavg()
        print(json.dumps({"benchmark": "soak-idle", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          "machine": "2-core CPU, no GPU", "load_average": [round(x, 2) for x in load],
                          "idle_target_pct": 5.0, **result}))
        return
    if args.malloc_arenas != 0:
        from engine.app.malloc import limit_malloc_arenas

        limit_malloc_arenas(args.malloc_arenas)  # before any thread starts, as main.py does
    logging.basicConfig(level=logging.WARNING)
    workflow = json.loads(args.workflow.read_text()) if args.workflow else None
    report = asyncio.run(soak(args.minutes, args.session_turns, args.barge_every, workflow, verbose=not args.quiet))
    verdict = report.verdict()
    print(f"\nsoak {args.minutes} min, 2-core CPU, no GPU, {time.strftime('%Y-%m-%d')}: {report.turns} turns, "
          f"{report.barge_ins} barge-ins, {report.sessions} sessions, {len(report.errors)} errors")
    for error in report.errors[:20]:
        print("  error:", error)
    print(f"  RSS {verdict['rss_baseline_mb']} MB after warm-up -> {verdict['rss_end_mb']} MB at the end "
          f"(growth {verdict['rss_growth']}), max {verdict['rss_max_mb']} MB")
    print(f"  threads {verdict['threads_baseline']} -> {verdict['threads_end']}; file descriptors "
          f"{verdict['fds_baseline']} -> {verdict['fds_end']}")
    if report.graph_stop_ms:
        print(f"  barge-in: speech_start -> reply stopped (server) max {max(report.graph_stop_ms)} ms, "
              f"{report.graph_stop_ms}; start of speech -> page told to flush (client) {report.barge_stop_ms} ms")
    print("  PASS" if verdict["passed"] else "  FAIL")
    print(json.dumps({"benchmark": "soak", "date": time.strftime("%Y-%m-%d"), "machine": "2-core CPU, no GPU",
                      "minutes": args.minutes, "turns": report.turns, "barge_ins": report.barge_ins,
                      "sessions": report.sessions, "errors": report.errors, **verdict,
                      "reply_ms": report.reply_ms, "barge_flush_ms": report.barge_stop_ms,
                      "barge_graph_stop_ms": report.graph_stop_ms,
                      "samples": [asdict(s) for s in report.samples]}, ensure_ascii=False))
    sys.exit(0 if verdict["passed"] else 1)


if __name__ == "__main__":
    main()
