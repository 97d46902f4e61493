"""Output cache in the manner of ComfyUI, with keys built from the parents' keys.

A node output's key is a digest of (class, declared input values, the keys of the linked parents and
which output of each, the node's fingerprint). ComfyUI rebuilds the whole ancestry for every node, so
its cost grows with depth; building each key from the parents' digests keeps it constant per node.
Non-deterministic nodes and nodes with streams get a fresh key on every run: they and everything
downstream of them re-execute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import psutil

log = logging.getLogger(__name__)

CacheKey = bytes


def make_key(class_type: str, values: dict[str, Any], parents: dict[str, tuple[CacheKey, int]],
             fingerprint: Any = None) -> CacheKey:
    """Digest of one node's inputs; ``parents`` maps input name -> (parent key, output index)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(class_type.encode())
    for name in sorted(values):
        h.update(b"\x00v" + name.encode() + b"=" + _canonical(values[name]))
    for name in sorted(parents):
        key, index = parents[name]
        h.update(b"\x00l" + name.encode() + b"=" + key + index.to_bytes(2, "little"))
    if fingerprint is not None:
        h.update(b"\x00f" + _canonical(fingerprint))
    return h.digest()


def unique_key() -> CacheKey:
    """A key that never matches: for non-deterministic nodes and streams."""
    return os.urandom(16)


def _canonical(value: Any) -> bytes:
    if isinstance(value, float) and value != value:  # NaN never equals itself: never a cache hit
        return os.urandom(16)
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value).encode()
    if isinstance(value, list | tuple):
        return b"[" + b",".join(_canonical(v) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b",".join(repr(k).encode() + b":" + _canonical(value[k]) for k in sorted(value, key=repr)) + b"}"
    # Anything else (a tensor handed to an expanded node, say) has no trustworthy text form: never a hit,
    # as ComfyUI's "Unhashable".
    return b"<object>" + os.urandom(16)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


CACHE_POLICIES = ("ram", "classic", "lru", "none")


@dataclass
class OutputCache:
    """LRU cache of node results, also trimmed when free RAM falls below ``ram_headroom_bytes``.

    ``policy`` says what outlives a prompt run:

    - ``"ram"`` (ours, the default): up to ``max_entries`` results, least recently used dropped first, and
      fewer while free RAM is below the headroom;
    - ``"classic"`` (ComfyUI's classic cache): only the results the last run produced or reused;
    - ``"lru"`` (ComfyUI's ``--cache-lru N``): up to ``max_entries`` results, least recently used first out;
    - ``"none"`` (``--cache-none``): nothing; every run computes every node (within a run, each node still
      runs once).
    """

    max_entries: int = 512
    ram_headroom_bytes: int = 2 * 1024**3
    poll_interval_s: float = 1.0
    policy: str = "ram"
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[CacheKey, Any] = field(default_factory=OrderedDict)
    _last_poll: float = 0.0
    _active_runs: int = 0
    _touched: set[CacheKey] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.policy not in CACHE_POLICIES:
            raise ValueError(f"unknown cache policy {self.policy!r}: use one of {', '.join(CACHE_POLICIES)}")

    def get(self, key: CacheKey) -> Any | None:
        value = self._entries.get(key)
        if value is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        if self._active_runs:
            self._touched.add(key)
        return value

    def begin_run(self) -> None:
        """A prompt run starts (runs may overlap: a live session beside the queue)."""
        self._active_runs += 1

    def end_run(self) -> None:
        """A prompt run ended; under ``classic``, once no run is active, drop what the runs did not use."""
        self._active_runs = max(0, self._active_runs - 1)
        if self._active_runs:
            return
        if self.policy == "classic":
            for key in [k for k in self._entries if k not in self._touched]:
                del self._entries[key]
                self.stats.evictions += 1
        self._touched.clear()

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._entries

    def put(self, key: CacheKey, value: Any) -> None:
        if self.policy == "none":
            return
        if self._active_runs:
            self._touched.add(key)
        self._entries[key] = value
        self._entries.move_to_end(key)
        while self.policy != "classic" and len(self._entries) > self.max_entries:
            self._evict_oldest()
        now = time.monotonic()
        if now - self._last_poll >= self.poll_interval_s:
            self._last_poll = now
            self.poll_ram()

    def poll_ram(self) -> int:
        """Evict least-recently-used entries while free RAM is below the headroom; returns how many."""
        evicted = 0
        available = psutil.virtual_memory().available
        if available >= self.ram_headroom_bytes:
            return 0
        target = int(self.ram_headroom_bytes * 1.1)
        while self._entries and psutil.virtual_memory().available < target:
            self._evict_oldest()
            evicted += 1
            if evicted % 8 == 0:
                import gc
                gc.collect()
        if evicted:
            log.info("RAM pressure: evicted %d cached node outputs", evicted)
        return evicted

    def _evict_oldest(self) -> None:
        self._entries.popitem(last=False)
        self.stats.evictions += 1

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
