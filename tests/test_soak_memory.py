"""engine/app/malloc.py: the glibc allocator controls and statistics the soak (benchmarks/soak.py) and the server use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.app import malloc as memory

ROOT = Path(__file__).resolve().parent.parent
glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or memory._libc() is None, reason="needs glibc")


@glibc
def test_heap_stats_see_allocations_and_trim_returns_free_pages():
    before = memory.heap_stats()
    assert before is not None and before.arenas >= 1
    blocks = [bytearray(1000) for _ in range(100_000)]  # ~100 MB of small blocks, from the heap (not mmap)
    held = memory.heap_stats()
    assert held.in_use_mb - before.in_use_mb > 80, (before, held)
    del blocks
    freed = memory.heap_stats()
    assert freed.in_use_mb - before.in_use_mb < 20, (before, freed)
    rss_freed = memory.resident_breakdown()["anon_mb"]
    memory.release_free_memory()
    trimmed = memory.resident_breakdown()["anon_mb"]
    assert rss_freed - trimmed > 50, (rss_freed, trimmed)  # the freed pages went back to the OS


_ARENA_PROBE = """
import sys, threading
from engine.app import malloc as memory
if sys.argv[1] != "default":
    assert memory.limit_malloc_arenas(int(sys.argv[1]))
start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(2000):
        bytearray(4000)
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(memory.arena_count())
"""


def _arenas_after_eight_threads(cap: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ARENA_PROBE, cap], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={**os.environ, "MALLOC_ARENA_MAX": ""}, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@glibc
def test_limit_malloc_arenas_caps_the_arenas_threads_create():
    assert _arenas_after_eight_threads("default") > 2  # glibc's default: an arena per thread, up to 8 per core
    assert _arenas_after_eight_threads("2") <= 2


def test_resident_breakdown_adds_up():
    parts = memory.resident_breakdown()
    if not parts:
        pytest.skip("no /proc/self/smaps_rollup")
    assert parts["anon_mb"] > 0 and parts["file_mb"] > 0
    assert abs(parts["anon_mb"] + parts["file_mb"] - parts["rss_mb"]) < 0.2


