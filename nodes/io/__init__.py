"""Workflow inputs and outputs: loaders for the input folder, typed values (primitives), and ComfyUI's core
output nodes (SaveImage, PreviewImage, SaveAudio, PreviewAudio, PreviewAny), in ComfyUI's class types, input
names and UI formats, accepting both our values and ComfyUI's tensors. ``media`` defines the values that
travel between built-in nodes; ``samples`` writes the sample inputs the shipped workflows name."""
