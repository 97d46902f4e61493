"""Video sinks: ``VideoOut`` writes an MP4 into the output folder as frames arrive; ``VideoOutLive`` hands
frames and their audio to the live session.

``VideoOut``'s sound is the ``audio`` input when it is connected (the whole soundtrack, which also gives the
progress total and the target length), otherwise the samples each ``Frame`` carries. Files are numbered the way
ComfyUI's savers number them: ``<prefix>_00001_.mp4``, where the prefix may name a subfolder (``videos/avatar``).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from engine import types as T
from engine.folders import UnsafePath, folders
from engine.node import Input, Node, NodeInputError, NodeResult, Output
from nodes.media import Audio, Video

log = logging.getLogger(__name__)

VIDEO_FORMAT = "video/h264-mp4"


def next_output_path(prefix: str, extension: str = "mp4") -> tuple[Path, str, str]:
    """(path, filename, subfolder) for the next free ``<prefix>_NNNNN_.<ext>`` in the output folder."""
    prefix = prefix.strip().replace("\\", "/") or "avatar"
    subfolder, _, base = prefix.rpartition("/")
    if not base:
        raise NodeInputError("filename_prefix", f"{prefix!r} names a folder but no file name")
    try:
        probe = folders.resolve("output", f"{base}_00001_.{extension}", subfolder)
    except UnsafePath as exc:
        raise NodeInputError("filename_prefix", f"{exc}: use a plain name such as 'avatar' or 'videos/avatar'") \
            from None
    directory = probe.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NodeInputError("filename_prefix", f"cannot create the output folder {directory}: {exc.strerror}; "
                                                "check its permissions or choose another data directory") from None
    pattern = re.compile(rf"^{re.escape(base)}_(\d+)_\.{re.escape(extension)}(\.part)?$")
    used = [int(m.group(1)) for name in os.listdir(directory) if (m := pattern.match(name))]
    counter = max(used, default=0) + 1
    filename = f"{base}_{counter:05}_.{extension}"
    return directory / filename, filename, subfolder


def _check_writable(directory: Path) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise NodeInputError("filename_prefix", f"the output folder {directory} is not writable; check its "
                                                "permissions or choose another data directory")


class VideoOut(Node):
    CATEGORY = "avatar/render"
    DESCRIPTION = ("Write frames and their audio to an MP4 (H.264 + AAC, faststart) in the output folder, encoding "
                   "each frame as it arrives. Audio and video end together.")
    OUTPUT_NODE = True
    INPUTS = (
        Input.socket("frames", T.FRAME_STREAM),
        Input.string("filename_prefix", default="avatar", tooltip="file name prefix; may start with subfolders"),
        Input.integer("fps", default=25, min=1, max=60),
        Input.integer("width", default=512, min=16, max=4096, step=2),
        Input.integer("height", default=512, min=16, max=4096, step=2),
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

        path, filename, subfolder = next_output_path(filename_prefix)
        _check_writable(path.parent)
        if audio is not None and audio.duration <= 0:
            raise NodeInputError("audio", "the soundtrack is empty (0 seconds): give speech to render")
        try:
            writer = await ctx.run_blocking(Mp4Writer, path, width, height, fps, crf)
        except OSError as exc:
            raise NodeInputError("filename_prefix", f"cannot write {path}: {exc}; check the output folder's "
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
        except BaseException:
            await ctx.run_blocking(writer.abort)
            raise
        if dropped:
            log.warning("VideoOut %s: %d frame(s) after the end of the soundtrack were not written", ctx.node_id,
                        dropped)
        ctx.progress(summary.frames, summary.frames)
        video = Video(path=summary.path, width=summary.width, height=summary.height, fps=float(summary.fps),
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
    DISPLAY_NAME = "Video Out (live)"
    DESCRIPTION = ("Send frames and the audio they carry to the live session's viewer as they arrive "
                   "(ctx.session.send_media). Needs a session; use VideoOut to write a file.")
    OUTPUT_NODE = True
    DETERMINISTIC = False
    INPUTS = (Input.socket("frames", T.FRAME_STREAM),)
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
