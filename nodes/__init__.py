"""AvatarGraph's built-in nodes. The engine discovers every module below this package.

ComfyUI packs do ``import nodes`` and read ``nodes.NODE_CLASS_MAPPINGS``: while packs load, the engine's
ComfyUI shims (``engine.comfy.shims``) add those names to this module as live views of the registry the packs
are loaded into.
"""
