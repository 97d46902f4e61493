"""AvatarGraph's HTTP/WebSocket server: ComfyUI's API contract on FastAPI (see ``server.app``).

This package's ``__init__`` imports no web framework, so that ``import server`` stays cheap; the app is
built by ``server.app.create_app`` and started by ``server.app.serve``.
"""

from engine.comfy.shims.comfy_server import PromptServer  # noqa: E402,F401  (ComfyUI packs: `from server import PromptServer`)
