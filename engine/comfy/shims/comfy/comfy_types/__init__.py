"""``comfy.comfy_types``: the typing helpers ComfyUI node packs import (``IO``, ``ComfyNodeABC``, ...)."""

from engine.comfy.shims.comfy.comfy_types.node_typing import (CheckLazyMixin, ComfyNodeABC, FileLocator,
                                                               InputTypeDict, InputTypeOptions, IO)

__all__ = ["IO", "InputTypeDict", "InputTypeOptions", "ComfyNodeABC", "CheckLazyMixin", "FileLocator"]
