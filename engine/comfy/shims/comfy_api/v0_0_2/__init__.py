"""``comfy_api.v0_0_2``: the versioned names of ``comfy_api.latest``."""

from engine.comfy.shims.comfy_api.latest import (ComfyAPI_latest, ComfyAPISyncLatest, ComfyExtension, Input,
                                                 InputImpl, Types, io, ui)


class ComfyAPIAdapter_v0_0_2(ComfyAPI_latest):  # noqa: N801 (ComfyUI's name)
    VERSION = "0.0.2"


class ComfyAPISync(ComfyAPISyncLatest):
    VERSION = "0.0.2"


ComfyAPI = ComfyAPIAdapter_v0_0_2

__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "InputImpl", "Types", "ComfyExtension", "io", "ui"]
