"""AvatarGraph's built-in nodes. The engine discovers every module below this package.

ComfyUI packs do ``import nodes`` and read ``nodes.NODE_CLASS_MAPPINGS``: these names are live views of the
registry in ComfyUI's shape.
"""

from engine.comfy_compat import MAX_RESOLUTION, comfy_mappings_view  # noqa: F401  (ComfyUI packs: `import nodes`)
from engine.registry import registry as _registry

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, EXTENSION_WEB_DIRS = comfy_mappings_view(_registry)
