"""What the model manager asks of the machine: whether a GPU driver is there, torch if installed, and whether
an error was an out-of-memory error."""

from __future__ import annotations

import os
import sys
from typing import Any


def gpu_driver_present() -> bool:
    """NVIDIA (or ROCm) driver device files: without them torch cannot see a GPU."""
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd"))


def torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/torch out-of-memory errors, RuntimeErrors saying "out of memory" and MemoryError
    (also when found in the exception's cause chain)."""
    torch = sys.modules.get("torch")
    oom_types: tuple[type[BaseException], ...] = (MemoryError,)
    if torch is not None:
        oom_types += tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                       getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
                           if isinstance(t, type))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, oom_types):
            return True
        if isinstance(current, RuntimeError) and "out of memory" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def cuda_free(device: str) -> tuple[int, int, int, int]:
    """(free incl. torch's cached-but-unused, total, torch reserved, torch reserved-but-unused) of a CUDA device."""
    torch = torch_or_none()
    dev = torch.device(device)
    free, total = torch.cuda.mem_get_info(dev)
    reserved = torch.cuda.memory_reserved(dev)
    cached_free = reserved - torch.cuda.memory_allocated(dev)
    return free + cached_free, total, reserved, cached_free


def allocated_bytes(device: str) -> int | None:
    """Bytes torch has allocated on a CUDA device (None on a CPU, a simulated GPU, or without torch)."""
    torch = torch_or_none()
    if torch is None or not device.startswith("cuda") or device == "cuda-sim" or not torch.cuda.is_available():
        return None
    return int(torch.cuda.memory_allocated(torch.device(device)))


def tensor_bytes(model: Any) -> int | None:
    """Bytes of the torch tensors a loaded model holds: the parameters and buffers of the modules in it (a module,
    a dict/list/tuple of modules, or an object's attributes one level down); None when it holds no module."""
    torch = torch_or_none()
    if torch is None:
        return None
    found: dict[int, Any] = {}
    items = list(model.values()) if isinstance(model, dict) else list(model) if isinstance(model, (list, tuple)) \
        else [model, *getattr(model, "__dict__", {}).values()]
    for item in items:
        if isinstance(item, torch.nn.Module):
            for t in [*item.parameters(), *item.buffers()]:
                found[id(t)] = t
    if not found:
        return None
    return sum(t.numel() * t.element_size() for t in found.values())


def measured_bytes(model: Any, device: str, allocated_before: int | None) -> int | None:
    """What a freshly loaded model takes: on CUDA the allocation its load added (what the GPU really lost), else
    its tensors' bytes; None when neither can be measured (the declared size stays the estimate)."""
    after = allocated_bytes(device)
    if after is not None and allocated_before is not None and after > allocated_before:
        return after - allocated_before
    return tensor_bytes(model)
