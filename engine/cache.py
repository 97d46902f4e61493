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
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value).encode()
    if isinstance(value, list | tuple):
        return b"[" + b",".join(_canonical(v) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b",".join(repr(k).encode() + b":" + _canonical(value[k]) for k in sorted(value, key=repr)) + b"}"
    return repr(value).encode()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


@dataclass
class OutputCache:
    """LRU cache of node results, also trimmed when free RAM falls below ``ram_headroom_bytes``."""

    max_entries: int = 512
    ram_headroom_bytes: int = 2 * 1024**3
    poll_interval_s: float = 1.0
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[CacheKey, Any] = field(default_factory=OrderedDict)
    _last_poll: float = 0.0

    def get(self, key: CacheKey) -> Any | None:
        value = self._entries.get(key)
        if value is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return value

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._entries

    def put(self, key: CacheKey, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
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
