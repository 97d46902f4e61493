"""What the model manager is told about a model (``ModelSpec``), what it reports (``LoadedInfo``), and its
errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ModelSpec:
    """How to load one model and how much memory it takes."""

    id: str
    kind: str
    size_bytes: int  # estimate of the weights in memory
    load: Callable[[str], Any]  # torch device string -> model object
    to_device: Callable[[Any, str], Any] | None = None  # move a loaded model; None = can only be dropped and reloaded
    inference_bytes: int = 0  # extra working memory while it runs
    device: str | None = None  # force a device ("cpu" keeps it in RAM; a GPU device forces the GPU)


@dataclass(frozen=True)
class LoadedInfo:
    id: str
    kind: str
    device: str
    size_bytes: int
    pinned_by: tuple[str, ...]
    last_used: float  # time.time() of the last get()


class ModelDoesNotFit(RuntimeError):
    """Raised when a model does not fit its device's budget even after evicting every unpinned model."""


class ModelPinned(RuntimeError):
    """Raised by ``unload`` for a model a live session has pinned."""


def estimate_module_bytes(module: Any) -> int:
    """Bytes of a torch module's parameters and buffers (a size_bytes estimate for a ModelSpec)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
