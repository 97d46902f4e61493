"""ComfyUI's ``comfy_api`` as node packs import it: ``latest`` (the V3 ``io``/``ui`` schema API, ``ComfyAPI``
with ``execution.set_progress``, ``ComfyExtension``) and the versioned ``v0_0_2`` / ``v0_0_1`` names."""
