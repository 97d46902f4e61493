"""Process memory: the C allocator's settings and statistics (glibc), and where the resident memory lies.

A long-running server allocates from many threads (the event loop's worker pool, onnxruntime, CTranslate2,
llama.cpp, PyAV). glibc gives each thread its own malloc arena, up to 8 per core, and ``malloc_trim`` never
shrinks the top of an arena other than the main one: the resident set creeps up session after session although
nothing leaks (measured: 16 arenas, their free memory 93 -> 189 MB in 10 min of soak). ``limit_malloc_arenas``
(call it at start-up, before threads start) caps the arenas; ``release_free_memory`` hands freed pages back to
the OS (after a session closes). Both are no-ops without glibc. ``memory_report`` says where the resident memory
is: allocator heap in use vs free, anonymous vs file-backed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import re
import tempfile
import threading
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
DEFAULT_ARENA_MAX = 2


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@cache
def _libc() -> Any | None:
    """glibc, or None (musl, macOS, Windows): the functions below then do nothing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int | None = None, mmap_threshold: int | None = None,
                        trim_threshold: int | None = None) -> bool:
    """Cap glibc's malloc arenas and, if asked, fix its mmap and trim thresholds (call it first thing at start-up:
    arenas that threads have already created stay).

    - ``arenas`` (default 2): glibc creates one arena per thread, up to 8 per core, and ``malloc_trim`` never
      shrinks the top of an arena other than the main one, so each keeps its high-water mark resident.
    - ``mmap_threshold``: blocks at least this big are mmapped one by one and go back to the OS when freed. Setting
      it (or ``trim_threshold``) stops glibc from raising it (up to 32 MiB) each time such a block is freed; ``None``
      (the default) keeps glibc's dynamic thresholds: fixing them low made big transient tensors (a Piper run
      without onnxruntime's arena) page-fault on every call, +60 % CPU, and the arena cap alone kept the heap flat.
    - ``trim_threshold``: an arena shrinks when more than this is free at its top (up to 64 MiB otherwise).

    glibc's own environment variables win where set (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``). Returns whether every setting was accepted (False without glibc)."""
    libc = _libc()
    if libc is None:
        return False
    settings = [("MALLOC_ARENA_MAX", M_ARENA_MAX, arenas or DEFAULT_ARENA_MAX),
                ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, mmap_threshold),
                ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, trim_threshold)]
    ok = True
    for env, param, value in settings:
        if value is None or os.environ.get(env):
            continue
        if not libc.mallopt(param, value):
            log.warning("mallopt(%s, %d) was refused; the allocator keeps its default", env, value)
            ok = False
    return ok


_trim_lock = threading.Lock()


def release_free_memory() -> None:
    """Collect Python garbage and give the allocator's free pages back to the OS (glibc ``malloc_trim``, which
    walks every arena). Blocking (tens of ms on a large heap): call it off the event loop."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        with _trim_lock:
            libc.malloc_trim(0)


@dataclass
class HeapStats:
    """glibc ``mallinfo2`` (all arenas) in MiB, and the number of arenas."""
    heap_mb: float  # bytes the arenas took from the OS with brk/mmap (``arena``)
    mmapped_mb: float  # large blocks mmapped one by one (``hblkhd``): freed back to the OS at once
    in_use_mb: float  # allocated and not freed (``uordblks``)
    free_mb: float  # freed but kept by the arenas (``fordblks``): fragmentation or not yet trimmed
    arenas: int


def heap_stats() -> HeapStats | None:
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mb = 2 ** 20
    return HeapStats(round(info.arena / mb, 1), round(info.hblkhd / mb, 1), round(info.uordblks / mb, 1),
                     round(info.fordblks / mb, 1), arena_count())


def arena_count() -> int:
    """Arenas glibc has created so far (``malloc_info``'s heaps)."""
    libc = _libc()
    if libc is None:
        return 0
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.TemporaryDirectory(prefix="malloc-info-") as tmp:
        path = Path(tmp) / "info.xml"
        stream = libc.fopen(str(path).encode(), b"w")
        if not stream:
            return 0
        try:
            libc.malloc_info(0, stream)
        finally:
            libc.fclose(stream)
        return len(re.findall(r"<heap nr=", path.read_text()))


def resident_breakdown() -> dict[str, float]:
    """/proc/self/smaps_rollup in MiB: ``Rss``, ``Anonymous`` (heap, arenas, thread stacks, native buffers) and
    file-backed (mapped weights and libraries: Rss - Anonymous). Empty where there is no /proc."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return {}
    kb = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+):\s+(\d+) kB", text, re.M)}
    rss, anon = kb.get("Rss", 0), kb.get("Anonymous", 0)
    return {"rss_mb": round(rss / 1024, 1), "anon_mb": round(anon / 1024, 1),
            "file_mb": round((rss - anon) / 1024, 1)}


def memory_report() -> dict[str, Any]:
    """Resident breakdown and heap statistics together (one flat dict, for logs and benchmarks)."""
    report: dict[str, Any] = dict(resident_breakdown())
    heap = heap_stats()
    if heap is not None:
        report.update(asdict(heap))
    return report
