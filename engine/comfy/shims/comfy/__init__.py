"""ComfyUI's ``comfy`` package as far as packs use it without ComfyUI's model code.

Provided: ``comfy.model_management`` (devices, memory, interruption), ``comfy.utils`` (ProgressBar,
common_upscale, load_torch_file), ``comfy.comfy_types`` (IO, ComfyNodeABC, InputTypeDict) and ``comfy.samplers``
(the sampler and scheduler names only, for combo widgets). Anything else (``comfy.sd``, ``comfy.model_patcher``)
is absent on purpose, so a pack that needs ComfyUI's diffusion internals fails to import with a clear
``No module named 'comfy.sd'`` and is reported, instead of half-working.
"""
