"""The render stage's node classes: Real-ESRGAN enhancement (``ESRGAN``, ``ESRGANImage``) and the video sinks
(``VideoOut`` writes an MP4 into the output folder as frames arrive; ``VideoOutLive`` hands frames and their audio
to the live session).

``VideoOut``'s sound is the ``audio`` input when it is connected (the whole soundtrack, which also gives the
progress total and the target length), otherwise the samples each ``Frame`` carries. Files are numbered the way
ComfyUI's savers number them: ``<prefix>_00001_.mp4``, claimed across every process and host sharing the
output folder (``nodes.render.output_path``, ``engine.files.output_names``). Helpers live beside this
module: ``esrgan`` (weights, upscaler, enhancement), ``mp4`` (the streaming writer).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from engine.graph import types as T
from engine.graph.node import Input, Node, NodeInputError, NodeResult, Output
from nodes.io.media import Audio, Frame, Video
from nodes.render.esrgan import DEFAULT_MODEL, enhance_image, face_box_from_avatar, load_upscaler, model_choices
from nodes.render.output_path import claim_output_path

log = logging.getLogger(__name__)

VIDEO_FORMAT = "video/h264-mp4"

_MODEL_INPUTS = (
    Input.combo("model", model_choices, default=DEFAULT_MODEL,
                tooltip="realesr-animevideov3 is fast (SRVGG); realesrgan-x4plus is the slow photo model"),
    Input.combo("mode", ["face", "frame"], default="face", tooltip="face: only the face box goes through the "
                "network (the rest is resized); frame: the whole frame"),
    Input.combo("scale", [2, 4], default=2, tooltip="upscaling factor before the final resize"),
    Input.integer("width", default=512, min=0, max=8192, tooltip="final width (0: keep scale x input)"),
    Input.integer("height", default=512, min=0, max=8192, tooltip="final height (0: keep scale x input)"),
    Input.integer("tile", default=256, min=0, max=2048, step=16,
                  tooltip="process in tiles of this size to bound memory (0: whole image at once)"),
    Input.boolean("enabled", default=True, tooltip="off: frames pass through untouched"),
    Input.socket("face", T.FACE, required=False, tooltip="the avatar: its head box is the face region"),
)


def _check_size(inputs: dict[str, Any]) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    if (inputs.get("width") or 0) * (inputs.get("height") or 0) == 0 and (inputs.get("width") or inputs.get("height")):
        errs.append(("width", "set both width and height, or both to 0"))
    return errs


class ESRGAN(Node):
    CATEGORY = "avatar/render"
    DISPLAY_NAME = "ESRGAN"
    DESCRIPTION = ("Real-ESRGAN enhancement of a frame stream: the whole frame or the face region only, tiled, "
                   "then resized to width x height. Off: frames pass through untouched.")
    INPUTS = (Input.socket("frames", T.FRAME_STREAM, tooltip="the animated frames to enhance"), *_MODEL_INPUTS)
    OUTPUTS = (Output("frames", T.FRAME_STREAM),)

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        return _check_size(inputs)

    async def run(self, ctx: Any, frames: Any, model: str = DEFAULT_MODEL, mode: str = "face", scale: int = 2,
                  width: int = 512, height: int = 512, tile: int = 256, enabled: bool = True,
                  face: Any = None) -> tuple[AsyncIterator[Frame]]:
        return (self._enhance(ctx, frames, model, mode, int(scale), width, height, tile, enabled, face),)

    async def _enhance(self, ctx: Any, frames: Any, model: str, mode: str, scale: int, width: int, height: int,
                       tile: int, enabled: bool, face: Any) -> AsyncIterator[Frame]:
        if not enabled:
            async for frame in frames:
                yield frame
            return
        upscaler = await load_upscaler(ctx, model, tile)
        async for frame in frames:
            ctx.check_interrupted()
            h, w = frame.image.shape[:2]
            box = getattr(frame, "face_box", None) or (face_box_from_avatar(face, h, w) if face is not None
                                                       else None)
            try:
                image = await ctx.run_blocking(enhance_image, upscaler, frame.image, mode, scale, box, width,
                                               height)
            except ValueError as exc:
                raise NodeInputError("frames", f"node {self.node_id}, frame {frame.index}: {exc}") from None
            yield dataclasses.replace(frame, image=image)


class ESRGANImage(Node):
    CATEGORY = "avatar/render"
    DISPLAY_NAME = "ESRGAN (Image)"
    DESCRIPTION = "Real-ESRGAN enhancement of one image: the whole image or the face region only."
    INPUTS = (Input.socket("image", T.IMAGE, tooltip="the image to enhance"), *_MODEL_INPUTS)
    OUTPUTS = (Output("image", T.IMAGE),)

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        return _check_size(inputs)

    async def run(self, ctx: Any, image: np.ndarray, model: str = DEFAULT_MODEL, mode: str = "face",
                  scale: int = 2, width: int = 512, height: int = 512, tile: int = 256, enabled: bool = True,
                  face: Any = None) -> tuple[np.ndarray]:
        if not enabled:
            return (image,)
        upscaler = await load_upscaler(ctx, model, tile)
        h, w = image.shape[:2]
        box = face_box_from_avatar(face, h, w) if face is not None else None
        try:
            return (await ctx.run_blocking(enhance_image, upscaler, image, mode, int(scale), box, width, height),)
        except ValueError as exc:
            raise NodeInputError("image", f"node {self.node_id}: {exc}") from None


class VideoOut(Node):
    CATEGORY = "avatar/render"
    DISPLAY_NAME = "Video Out"
    DESCRIPTION = ("Write frames and their audio to an MP4 (H.264 + AAC, faststart) in the output folder, encoding "
                   "each frame as it arrives. Audio and video end together.")
    OUTPUT_NODE = True
    INPUTS = (
        Input.socket("frames", T.FRAME_STREAM, tooltip="the frames to encode, as they arrive"),
        Input.string("filename_prefix", default="avatar", tooltip="file name prefix; may start with subfolders"),
        Input.integer("fps", default=25, min=1, max=60, tooltip="frames per second of the video"),
        Input.integer("width", default=512, min=16, max=4096, step=2,
                      tooltip="video width in pixels (even); frames of another size are resized"),
        Input.integer("height", default=512, min=16, max=4096, step=2,
                      tooltip="video height in pixels (even); frames of another size are resized"),
        Input.integer("crf", default=20, min=0, max=51, tooltip="H.264 quality: lower is better and larger"),
        Input.socket("audio", T.AUDIO, required=False,
                     tooltip="the soundtrack (otherwise the audio the frames carry); also sets the length"),
    )
    OUTPUTS = (Output("video", T.VIDEO),)

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        errs = []
        for name in ("width", "height"):
            value = inputs.get(name)
            if isinstance(value, int) and value % 2:
                errs.append((name, f"H.264 needs an even {name}, got {value}"))
        return errs

    async def run(self, ctx: Any, frames: Any, filename_prefix: str = "avatar", fps: int = 25, width: int = 512,
                  height: int = 512, crf: int = 20, audio: Audio | None = None) -> NodeResult:
        from nodes.render.mp4 import Mp4Writer

        if audio is not None and audio.duration <= 0:
            raise NodeInputError("audio", "the soundtrack is empty (0 seconds): give speech to render")
        # the name is claimed across every process sharing the output folder; a re-run of this prompt (its worker
        # died) takes its own earlier claim over
        claim, subfolder = await ctx.run_blocking(claim_output_path, filename_prefix, f"{ctx.prompt_id}/{ctx.node_id}")
        try:
            writer = await ctx.run_blocking(Mp4Writer, claim.temp, width, height, fps, crf, True)
        except OSError as exc:
            await ctx.run_blocking(claim.abort)
            raise NodeInputError("filename_prefix", f"cannot write {claim.temp}: {exc}; check the output folder's "
                                                    "permissions and free space") from None
        total = math.ceil(round(audio.duration * fps, 6)) if audio is not None else 0
        samples_per_frame = audio.sample_rate / fps if audio is not None else 0.0
        written = dropped = 0
        try:
            async for frame in frames:
                ctx.check_interrupted()
                if total and written >= total:
                    dropped += 1  # the soundtrack sets the length; frames past its end are not shown
                    continue
                if audio is not None:
                    a, b = round(written * samples_per_frame), round((written + 1) * samples_per_frame)
                    chunk, rate = audio.samples[a:b], audio.sample_rate
                else:
                    chunk, rate = frame.audio, frame.sample_rate
                await ctx.run_blocking(self._write, writer, frame.image, chunk, rate)
                written += 1
                ctx.progress(written, total or written + 1)
            if written == 0:
                raise NodeInputError("frames", "no frames arrived: the face animation produced nothing to write")
            if audio is not None and written < total:
                await ctx.run_blocking(writer.add_audio, audio.samples[round(written * samples_per_frame):],
                                       audio.sample_rate)
            summary = await ctx.run_blocking(writer.finish)
            path = await ctx.run_blocking(claim.publish)
        except BaseException:
            await ctx.run_blocking(writer.abort)
            await ctx.run_blocking(claim.abort)
            raise
        filename = path.name
        if dropped:
            log.warning("VideoOut %s: %d frame(s) after the end of the soundtrack were not written", ctx.node_id,
                        dropped)
        ctx.progress(summary.frames, summary.frames)
        video = Video(path=path, width=summary.width, height=summary.height, fps=float(summary.fps),
                      duration=summary.duration, has_audio=summary.has_audio,
                      meta={"frames": summary.frames, "audio_seconds": summary.audio_seconds,
                            "padded_frames": summary.padded_frames, "dropped_frames": dropped,
                            "filename": filename, "subfolder": subfolder, "format": VIDEO_FORMAT})
        item = {"filename": filename, "subfolder": subfolder, "type": "output", "format": VIDEO_FORMAT}
        return NodeResult(outputs=(video,), ui={"images": [item], "animated": [True], "gifs": [dict(item)]})

    @staticmethod
    def _write(writer: Any, image: np.ndarray, chunk: np.ndarray | None, rate: int) -> None:
        writer.write(image)
        if chunk is not None and len(chunk):
            writer.add_audio(chunk, rate)


class VideoOutLive(Node):
    CATEGORY = "avatar/render"
    DISPLAY_NAME = "Video Out (Live)"
    DESCRIPTION = ("Send frames and the audio they carry to the live session's viewer as they arrive "
                   "(ctx.session.send_media). Needs a session; use VideoOut to write a file.")
    OUTPUT_NODE = True
    DETERMINISTIC = False
    INPUTS = (Input.socket("frames", T.FRAME_STREAM, tooltip="the frames (with their audio) to send to the viewer"),)
    OUTPUTS = ()

    async def run(self, ctx: Any, frames: Any) -> NodeResult:
        session = ctx.session
        send = getattr(session, "send_media", None) if session is not None else None
        if send is None:
            raise NodeInputError("frames", "VideoOutLive streams to a live session, and this prompt has none: start "
                                           "a session, or write a file with VideoOut")
        sent = 0
        async for frame in frames:
            ctx.check_interrupted()
            result = send(frame)
            if inspect.isawaitable(result):
                await result
            sent += 1
        return NodeResult(outputs=(), ui={"live": [{"frames_sent": sent}]})
