"""The Real-ESRGAN networks, imported from the ``realesrgan`` / ``basicsr`` packages.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, which torchvision removed in 0.17; a tiny
module that re-exports ``rgb_to_grayscale`` (the one name basicsr takes from it) is registered first.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings
from collections.abc import Iterator


def apply_torchvision_shim() -> None:
    """Make ``torchvision.transforms.functional_tensor`` importable again (before basicsr's first import)."""
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision: nothing to do)
        return
    except ImportError:
        pass
    import torchvision.transforms.functional as F

    shim = types.ModuleType(name)
    shim.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules[name] = shim


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """basicsr's first import warns about deprecated scipy/torchvision names it uses; not ours to fix."""
    apply_torchvision_shim()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def srvgg_class() -> type:
    with _quiet_import():
        from realesrgan.archs.srvgg_arch import SRVGGNetCompact

    return SRVGGNetCompact


def rrdbnet_class() -> type:
    with _quiet_import():
        from basicsr.archs.rrdbnet_arch import RRDBNet

    return RRDBNet


def realesrganer_class() -> type:
    with _quiet_import():
        from realesrgan import RealESRGANer

    return RealESRGANer
