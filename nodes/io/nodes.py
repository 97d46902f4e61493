"""Workflow inputs and outputs, with ComfyUI's class types and input names so ComfyUI workflows and packs use them
as they are: loaders (LoadImage.image, LoadAudio.audio), typed values (the Primitive* nodes), and the core
output nodes (SaveImage, PreviewImage, RebatchImages, SaveAudio, PreviewAudio, PreviewAny).

The output nodes take our values and ComfyUI's tensors alike (``nodes.io.convert``), list values (one entry per
item) and skip items a blocker switched off; what they show goes into the prompt's history as ComfyUI's UI form
(``images`` / ``audio`` / ``text``), which the editor renders.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from engine.graph import types as T
from engine.graph.flow import ExecutionBlocker, ValueList
from engine.graph.node import Input, Node, NodeInputError, NodeResult, Output
from nodes.io import convert
from nodes.io.files import file_fingerprint, input_audio, input_file, input_images, load_image_file
from nodes.io.media import Audio, AudioChunk, TextChunk
from nodes.io.writers import png_bytes, save_output, save_temp, wav_writer

AUDIO_RATE = 16000  # speech models downstream (ASR, face animation) take 16 kHz mono


# Loaders --------------------------------------------------------------------------------------------------
class LoadImage(Node):
    CATEGORY = "avatar/io"
    DISPLAY_NAME = "Load Image"
    DESCRIPTION = "Load a photo (PNG/JPG/WebP...) from the input folder as RGB, upright as its EXIF says."
    INPUTS = (Input.file("image", "image", input_images, tooltip="a file in the input folder; upload to add one"),)
    OUTPUTS = (Output("image", T.IMAGE),)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        return file_fingerprint("image", inputs)

    def run(self, ctx: Any, image: str) -> tuple[np.ndarray]:
        path = input_file("image", image)
        try:
            return (load_image_file(path),)
        except ValueError as exc:  # PhotoError and PIL's decoding errors say what is wrong with the file
            raise NodeInputError("image", f"{image}: {exc}") from None


class LoadAudio(Node):
    CATEGORY = "avatar/io"
    DISPLAY_NAME = "Load Audio"
    DESCRIPTION = "Load speech (WAV/MP3/FLAC/OGG, any rate or layout) from the input folder as 16 kHz mono."
    INPUTS = (Input.file("audio", "audio", input_audio, tooltip="a file in the input folder; upload to add one"),)
    OUTPUTS = (Output("audio", T.AUDIO),)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        return file_fingerprint("audio", inputs)

    def run(self, ctx: Any, audio: str) -> tuple[Any]:
        from nodes.common.audio import load_audio

        path = input_file("audio", audio)
        try:
            loaded = load_audio(path, AUDIO_RATE)
        except ValueError as exc:
            raise NodeInputError("audio", f"{audio}: {exc}") from None
        if loaded.duration <= 0:
            raise NodeInputError("audio", f"{audio} holds no audio (0 seconds): record or pick a file with speech")
        return (loaded,)


# Primitives -----------------------------------------------------------------------------------------------
class PrimitiveStringMultiline(Node):
    """ComfyUI's core multiline string node (same class_type and input name), here the source of TEXT."""

    CATEGORY = "avatar/io"
    DISPLAY_NAME = "Text"
    DESCRIPTION = "Typed text, e.g. what the avatar should say (feeds TTS.text)."
    INPUTS = (Input.string("value", default="", multiline=True, tooltip="the text; several lines are fine"),)
    OUTPUTS = (Output("STRING", T.STRING),)

    def run(self, ctx: Any, value: str = "") -> tuple[str]:
        return (value,)


class PrimitiveString(Node):
    CATEGORY = "utils/primitive"
    DISPLAY_NAME = "String"
    DESCRIPTION = "A one-line string to feed into other nodes' inputs."
    INPUTS = (Input.string("value", default="", tooltip="the string"),)
    OUTPUTS = (Output("STRING", T.STRING),)

    def run(self, ctx: Any, value: str = "") -> tuple[str]:
        return (value,)


class PrimitiveInt(Node):
    CATEGORY = "utils/primitive"
    DISPLAY_NAME = "Int"
    DESCRIPTION = "A whole number to feed into other nodes' inputs."
    INPUTS = (Input.integer("value", default=0, min=-sys.maxsize, max=sys.maxsize, tooltip="the number"),)
    OUTPUTS = (Output("INT", T.INT),)

    def run(self, ctx: Any, value: int = 0) -> tuple[int]:
        return (value,)


class PrimitiveFloat(Node):
    CATEGORY = "utils/primitive"
    DISPLAY_NAME = "Float"
    DESCRIPTION = "A number with decimals to feed into other nodes' inputs."
    INPUTS = (Input.number("value", default=0.0, min=-sys.maxsize, max=sys.maxsize, tooltip="the number"),)
    OUTPUTS = (Output("FLOAT", T.FLOAT),)

    def run(self, ctx: Any, value: float = 0.0) -> tuple[float]:
        return (value,)


class PrimitiveBoolean(Node):
    CATEGORY = "utils/primitive"
    DISPLAY_NAME = "Boolean"
    DESCRIPTION = "True or false, to feed into other nodes' inputs."
    INPUTS = (Input.boolean("value", default=False, tooltip="on or off"),)
    OUTPUTS = (Output("BOOLEAN", T.BOOLEAN),)

    def run(self, ctx: Any, value: bool = False) -> tuple[bool]:
        return (value,)


# Images ---------------------------------------------------------------------------------------------------
def _png_text(ctx: Any) -> dict[str, str]:
    """The prompt and the editor's workflow, embedded in saved PNGs so they can be dragged back in."""
    if ctx.run is None:
        return {}
    text = {"prompt": json.dumps(ctx.run.prompt(), default=str)}
    for key, value in (ctx.run.extra_data.get("extra_pnginfo") or {}).items():
        text[str(key)] = json.dumps(value, default=str)
    return text


def _images(value: Any) -> list[np.ndarray]:
    try:
        return convert.images(value)
    except ValueError as exc:
        raise NodeInputError("images", str(exc)) from None


class SaveImage(Node):
    CATEGORY = "image"
    DISPLAY_NAME = "Save Image"
    DESCRIPTION = "Save the images as PNG files in the output folder (with the workflow embedded)."
    OUTPUT_NODE = True
    INPUTS = (Input.socket("images", T.IMAGE, tooltip="the images to save: one file per image of the batch"),
              Input.string("filename_prefix", default="ComfyUI",
                           tooltip="file name start; may name a subfolder (portraits/me)"))

    def run(self, ctx: Any, images: Any, filename_prefix: str = "ComfyUI") -> NodeResult:
        text = _png_text(ctx)
        entries = [save_output(filename_prefix, "png", lambda f, data=png_bytes(image, text): f.write(data),
                               key=f"{ctx.prompt_id}/{ctx.node_id}/{index}")
                   for index, image in enumerate(_images(images))]
        return NodeResult((), {"images": entries})


class PreviewImage(Node):
    CATEGORY = "image"
    DISPLAY_NAME = "Preview Image"
    DESCRIPTION = "Show the images in the editor (kept in the temp folder, not saved)."
    OUTPUT_NODE = True
    INPUTS = (Input.socket("images", T.IMAGE, tooltip="the images to show"),)

    def run(self, ctx: Any, images: Any) -> NodeResult:
        entries = [save_temp("png", lambda f, data=png_bytes(image, compress_level=1): f.write(data))
                   for image in _images(images)]
        return NodeResult((), {"images": entries})


class RebatchImages(Node):
    """ComfyUI's RebatchImages: every image of every input batch (and list item), regrouped into batches."""

    CATEGORY = "image/batch"
    DISPLAY_NAME = "Rebatch Images"
    DESCRIPTION = "Regroup images into batches of the given size (a list of batches)."
    INPUTS = (Input.socket("images", T.IMAGE, tooltip="images, batches or a list of them"),
              Input.integer("batch_size", default=1, min=1, max=4096, tooltip="images per output batch"))
    OUTPUTS = (Output("IMAGE", T.IMAGE, tooltip="a list of batches", is_list=True),)

    def run(self, ctx: Any, images: Any, batch_size: Any = 1) -> tuple[ValueList]:
        import torch

        size = int(batch_size[0] if isinstance(batch_size, list) else batch_size)
        singles = [batch[i:i + 1] for batch in convert.image_tensors(images) for i in range(batch.shape[0])]
        return (ValueList(torch.cat(singles[i:i + size], dim=0) for i in range(0, len(singles), size)),)


# Audio ----------------------------------------------------------------------------------------------------
async def _collect_audio(value: Any) -> Any:
    """An AUDIO_STREAM (chunks) gathered into one clip; other values as they are."""
    if not hasattr(value, "__aiter__"):
        return value
    parts: list[np.ndarray] = []
    rate = AUDIO_RATE
    async for chunk in value:
        if isinstance(chunk, AudioChunk):
            parts.append(np.asarray(chunk.samples, np.float32))
            rate = chunk.sample_rate
    return Audio(np.concatenate(parts) if parts else np.zeros(0, np.float32), rate)


def _clips(value: Any) -> list[convert.Clip]:
    try:
        return [clip for clip in convert.clips(value) if clip.samples.shape[-1] > 0]
    except ValueError as exc:
        raise NodeInputError("audio", str(exc)) from None


class SaveAudio(Node):
    CATEGORY = "audio"
    DISPLAY_NAME = "Save Audio"
    DESCRIPTION = "Save the audio as WAV files in the output folder."
    OUTPUT_NODE = True
    INPUTS = (Input.socket("audio", f"{T.AUDIO},{T.AUDIO_STREAM}", tooltip="the audio (or a stream of it) to save"),
              Input.string("filename_prefix", default="audio/ComfyUI",
                           tooltip="file name start; may name a subfolder (audio/me)"))

    async def run(self, ctx: Any, audio: Any, filename_prefix: str = "audio/ComfyUI") -> NodeResult:
        clips = _clips(await _collect_audio(audio))
        entries = [await ctx.run_blocking(save_output, filename_prefix, "wav", wav_writer(clip),
                                          f"{ctx.prompt_id}/{ctx.node_id}/{index}")
                   for index, clip in enumerate(clips)]
        return NodeResult((), {"audio": entries})


class PreviewAudio(Node):
    CATEGORY = "audio"
    DISPLAY_NAME = "Preview Audio"
    DESCRIPTION = "Play the audio in the editor (kept in the temp folder, not saved)."
    OUTPUT_NODE = True
    INPUTS = (Input.socket("audio", f"{T.AUDIO},{T.AUDIO_STREAM}", tooltip="the audio (or a stream of it) to play"),)

    async def run(self, ctx: Any, audio: Any) -> NodeResult:
        clips = _clips(await _collect_audio(audio))
        entries = [await ctx.run_blocking(save_temp, "wav", wav_writer(clip)) for clip in clips]
        return NodeResult((), {"audio": entries})


# Any value ------------------------------------------------------------------------------------------------
async def _stream_text(stream: AsyncIterator[Any]) -> str:
    """A stream shown as text: the words of a TEXT_STREAM, else how many chunks (and seconds) went by."""
    words: list[str] = []
    count, seconds = 0, 0.0
    async for chunk in stream:
        count += 1
        if isinstance(chunk, TextChunk):
            words.append(chunk.text)
        elif isinstance(chunk, str):
            words.append(chunk)
        elif isinstance(chunk, AudioChunk):
            seconds += chunk.duration
    if words:
        return " ".join(w.strip() for w in words if w.strip())
    return f"{count} chunk(s)" + (f", {seconds:.2f} s of audio" if seconds else "")


class PreviewAny(Node):
    """ComfyUI's PreviewAny: shows any value as text in the editor (strings, numbers, JSON, streams)."""

    CATEGORY = "utils"
    DISPLAY_NAME = "Preview Any"
    DESCRIPTION = "Show any value as text: a transcript, a reply, a number, a JSON structure."
    OUTPUT_NODE = True
    INPUTS = (Input.socket("source", T.ANY, tooltip="the value to show (text, number, list, stream...)"),)

    async def run(self, ctx: Any, source: Any = None) -> NodeResult:
        if hasattr(source, "__aiter__"):
            text = await _stream_text(source)
        elif isinstance(source, ValueList):
            text = "\n".join(convert.describe(item) for item in source if not isinstance(item, ExecutionBlocker))
        else:
            text = convert.describe(source)
        return NodeResult((), {"text": [text]})
