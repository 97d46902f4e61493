"""``comfy.model_management`` basics for packs: devices, memory queries, cache emptying, interruption.

Interruption is per node, not process-wide as in ComfyUI: inside a running V1 node,
``processing_interrupted()`` / ``throw_exception_if_processing_interrupted()`` look at that node's
prompt (or session) interrupt flag, and ``InterruptProcessingException`` is an ``engine.graph.context.Interrupted``,
so the executor treats it as an interruption, not an error. ``interrupt_current_processing()`` called
outside a node goes to the handler the app installs with ``set_interrupt_handler`` (e.g. the executor's
``interrupt``). Device and memory values are computed on call (torch is imported lazily).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

import psutil

from engine.comfy.shims.runtime import current_context
from engine.graph.context import Interrupted

log = logging.getLogger(__name__)


class VRAMState(enum.Enum):
    DISABLED = 0  # no vram present: no need to move models to vram
    NO_VRAM = 1  # very low vram: enable all the options to save vram
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5  # cpu and gpu share the same memory


class CPUState(enum.Enum):
    GPU = 0
    CPU = 1
    MPS = 2


class InterruptProcessingException(Interrupted):
    """Raised by ``throw_exception_if_processing_interrupted`` (an ``engine.graph.context.Interrupted``)."""


_interrupt_handler: list[Callable[[bool], None]] = []  # at most one: the app's interrupt


def set_interrupt_handler(handler: Callable[[bool], None] | None) -> None:
    """Where ``interrupt_current_processing`` goes when no node is running in the caller's context."""
    _interrupt_handler.clear()
    if handler is not None:
        _interrupt_handler.append(handler)


def interrupt_current_processing(value: bool = True) -> None:
    ctx = current_context()
    if ctx is not None:
        if value:
            ctx.interrupted.set()
        else:
            ctx.interrupted.clear()
        return
    if _interrupt_handler:
        _interrupt_handler[0](value)
    else:
        log.warning("interrupt_current_processing(%s) called outside a running node and no interrupt handler "
                    "is installed: nothing to interrupt", value)


def processing_interrupted() -> bool:
    ctx = current_context()
    return bool(ctx is not None and ctx.interrupted.is_set())


def throw_exception_if_processing_interrupted() -> None:
    ctx = current_context()
    if ctx is not None and ctx.interrupted.is_set():
        raise InterruptProcessingException(f"node {ctx.node_id} ({ctx.class_type}) was interrupted")


# Devices --------------------------------------------------------------------------------------------------
def _torch() -> Any:
    import torch

    return torch


def _has_cuda() -> bool:
    return bool(_torch().cuda.is_available())


def _has_mps() -> bool:
    backends = getattr(_torch(), "backends", None)
    mps = getattr(backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_torch_device() -> Any:
    torch = _torch()
    if _has_cuda():
        return torch.device("cuda", torch.cuda.current_device())
    if _has_mps():
        return torch.device("mps")
    return torch.device("cpu")


def intermediate_device() -> Any:
    return _torch().device("cpu")


def unet_offload_device() -> Any:
    return _torch().device("cpu")


def text_encoder_device() -> Any:
    return get_torch_device()


def text_encoder_offload_device() -> Any:
    return _torch().device("cpu")


def vae_device() -> Any:
    return get_torch_device()


def vae_offload_device() -> Any:
    return _torch().device("cpu")


def get_autocast_device(dev: Any) -> str:
    return getattr(dev, "type", "cuda")


def is_device_cpu(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "cpu"


def is_device_mps(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "mps"


def is_device_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "cuda"


def is_nvidia() -> bool:
    return _has_cuda() and getattr(_torch().version, "cuda", None) is not None


def cpu_mode() -> bool:
    return not _has_cuda() and not _has_mps()


def mps_mode() -> bool:
    return not _has_cuda() and _has_mps()


def xformers_enabled() -> bool:
    return False


def pytorch_attention_enabled() -> bool:
    return True


def should_use_fp16(device: Any = None, model_params: int = 0, prioritize_performance: bool = True,
                    manual_cast: bool = False) -> bool:
    device = device if device is not None else get_torch_device()
    return is_device_cuda(device)


def should_use_bf16(device: Any = None, model_params: int = 0, prioritize_performance: bool = True,
                    manual_cast: bool = False) -> bool:
    device = device if device is not None else get_torch_device()
    return is_device_cuda(device) and bool(_torch().cuda.is_bf16_supported())


# Memory ---------------------------------------------------------------------------------------------------
def get_total_memory(dev: Any = None, torch_total_too: bool = False) -> int | tuple[int, int]:
    dev = dev if dev is not None else get_torch_device()
    if is_device_cuda(dev):
        torch = _torch()
        total = int(torch.cuda.get_device_properties(dev).total_memory)
        reserved = int(torch.cuda.memory_reserved(dev))
        return (total, reserved) if torch_total_too else total
    total = int(psutil.virtual_memory().total)
    return (total, total) if torch_total_too else total


def get_free_memory(dev: Any = None, torch_free_too: bool = False) -> int | tuple[int, int]:
    dev = dev if dev is not None else get_torch_device()
    if is_device_cuda(dev):
        torch = _torch()
        free_cuda, _ = torch.cuda.mem_get_info(dev)
        free_torch = int(torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
        total = int(free_cuda) + free_torch
        return (total, free_torch) if torch_free_too else total
    free = int(psutil.virtual_memory().available)
    return (free, free) if torch_free_too else free


def soft_empty_cache(force: bool = False) -> None:
    torch = _torch()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif _has_mps():
        torch.mps.empty_cache()


def unload_all_models() -> None:
    """ComfyUI frees its loaded models here; our models are owned by the model manager, so this only
    returns cached allocator memory to the device."""
    soft_empty_cache()


def __getattr__(name: str) -> Any:  # values ComfyUI computes at import time, computed on access here
    if name == "total_vram":
        return get_total_memory(get_torch_device()) / (1024 * 1024)
    if name == "total_ram":
        return psutil.virtual_memory().total / (1024 * 1024)
    if name == "vram_state":
        return VRAMState.NORMAL_VRAM if _has_cuda() else VRAMState.SHARED if _has_mps() else VRAMState.DISABLED
    if name == "cpu_state":
        return CPUState.GPU if _has_cuda() else CPUState.MPS if _has_mps() else CPUState.CPU
    raise AttributeError(f"module 'comfy.model_management' has no attribute {name!r}")
