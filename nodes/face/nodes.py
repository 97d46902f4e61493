"""Face nodes: avatar preprocessing, the talking-head animator (default / Wav2Lip / SadTalker) and SadTalker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from engine.graph import types as T
from engine.graph.node import Input, Node, NodeInputError, NodeResult, Output
from nodes.io.media import Audio, AudioChunk, Frame

log = logging.getLogger(__name__)

BACKENDS = ("default", "wav2lip", "sadtalker", "sadtalker-full")  # sadtalker-full: SadTalker's full mode


class AvatarPrepare(Node):
    CATEGORY = "avatar/face"
    DISPLAY_NAME = "Avatar Prepare"
    DESCRIPTION = ("Find the face in a photo (the largest one when there are several), align a 512x512 crop and "
                   "measure MediaPipe face-mesh landmarks and the mouth, eye and head regions. Cached per photo.")
    INPUTS = (Input.socket("image", T.IMAGE, tooltip="a portrait photo, ideally >= 512x512 and frontal"),)
    OUTPUTS = (Output("face", T.FACE),)
    DETERMINISTIC = True

    def run(self, ctx: Any, image: np.ndarray) -> NodeResult:
        from nodes.face.prepare import PhotoError, prepare_avatar

        if not isinstance(image, np.ndarray):
            raise NodeInputError("image", f"expected an IMAGE (numpy array), got {type(image).__name__}")
        try:
            face = prepare_avatar(image)
        except PhotoError as exc:
            raise NodeInputError("image", f"node {self.node_id}: {exc}") from None
        ui = {"warnings": [{"text": w} for w in face.warnings]} if face.warnings else {}
        return NodeResult(outputs=(face,), ui=ui)


PREPROCESS = ("crop", "full")


class PasteBack:
    """FaceBackend wrapper: every frame of the 512x512 crop is pasted back into the whole photo."""

    def __init__(self, backend: Any, face: Any) -> None:
        self.backend = backend
        self.face = face
        self.name = getattr(backend, "name", "?")

    def push(self, item: Any) -> list[np.ndarray]:
        return [self.face.paste_into_photo(img) for img in self.backend.push(item)]

    def flush(self) -> list[np.ndarray]:
        return [self.face.paste_into_photo(img) for img in self.backend.flush()]


def make_backend(name: str, face: Any, ctx: Any = None, seed: int = 0, preprocess: str = "crop", **options: Any):
    """A FaceBackend (nodes.face.stream) for the avatar; neural backends load their weights pinned for the run.

    ``preprocess="full"``: frames are the whole photo (SadTalker renders with its full-mode mapping net,
    mapping_00109, and pastes back itself; the others are pasted back here)."""
    if name == "sadtalker-full":
        name, preprocess = "sadtalker", "full"
    if preprocess not in PREPROCESS:
        raise ValueError(f"unknown preprocess {preprocess!r}: choose one of {', '.join(PREPROCESS)}")
    full = preprocess == "full"
    if name == "default":
        from nodes.face.animator import DefaultAnimator

        backend = DefaultAnimator(face, seed=seed)
        return PasteBack(backend, face) if full else backend
    if name == "wav2lip":
        from nodes.face.wav2lip import Wav2LipBackend

        backend = Wav2LipBackend.from_context(face, ctx, **options)
        return PasteBack(backend, face) if full else backend
    if name == "sadtalker":
        from nodes.face.sadtalker import SadTalkerBackend

        return SadTalkerBackend.from_context(face, ctx, paste_back=full, **options)
    raise ValueError(f"unknown face backend {name!r}: choose one of {', '.join(BACKENDS)}")


def _load_backend_error(exc: Exception) -> bool:
    """Errors a user fixes by placing the right checkpoint (missing file, wrong file)."""
    from nodes.face.sadtalker import CheckpointMismatch as SadTalkerMismatch
    from nodes.face.wav2lip import CheckpointMismatch as Wav2LipMismatch

    return isinstance(exc, (FileNotFoundError, SadTalkerMismatch, Wav2LipMismatch))


async def animate(ctx: Any, backend: Any, audio_stream: AsyncIterator[AudioChunk] | None, audio: Audio | None,
                  idle_seconds: float, live_idle: bool = False) -> AsyncIterator[Frame]:
    """Frames at 25 fps as audio arrives: the stream's chunks (or one AUDIO), then ``idle_seconds`` of idling.

    ``live_idle``: while the stream has no audio for a frame's time, emit an idle frame (blinks, breathing) in
    real time, so a live avatar keeps moving while it listens.
    """
    from nodes.face.stream import FPS, FramePump

    pump = FramePump(backend)

    async def blocking(fn, *args, **kw):
        return await ctx.run_blocking(fn, *args, **kw) if ctx is not None else fn(*args, **kw)

    if audio is not None:
        for frame in await blocking(pump.audio, audio.samples, audio.sample_rate, 0.0):
            yield frame
    if audio_stream is not None:
        chunks = aiter(audio_stream)
        pending: asyncio.Future | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(chunks))
                if live_idle:
                    done, _ = await asyncio.wait({pending}, timeout=1.0 / FPS)
                    if not done:
                        for frame in await blocking(pump.idle, 1.0 / FPS):
                            yield frame
                        continue
                try:
                    chunk = await pending
                except StopAsyncIteration:
                    break
                pending = None
                if ctx is not None:
                    ctx.check_interrupted()
                frames = await blocking(pump.audio, chunk.samples, chunk.sample_rate, chunk.start, chunk.timings,
                                        chunk.emotion, chunk.turn_id)
                for frame in frames:
                    yield frame
                if chunk.final:
                    for frame in await blocking(pump.finish):
                        yield frame
        finally:  # stopped mid-wait (barge-in, interrupt): the read in flight must not outlive us unretrieved
            if pending is not None:
                pending.cancel()
                pending.add_done_callback(lambda f: f.cancelled() or f.exception())
    if idle_seconds > 0:
        step = 1.0
        left = idle_seconds
        while left > 1e-6:
            for frame in await blocking(pump.idle, min(step, left)):
                yield frame
            left -= step
    for frame in await blocking(pump.finish):
        yield frame


class FaceAnimate(Node):
    CATEGORY = "avatar/face"
    DISPLAY_NAME = "Face Animate"
    DESCRIPTION = ("Animate the avatar from speech: 512x512 frames at 25 fps as the audio arrives, each carrying the "
                   "audio that plays with it. default: landmark warping in real time on a CPU (visemes from phoneme "
                   "timings, blinks, head motion, expression from the emotion tag); wav2lip / sadtalker: the "
                   "official checkpoints in models/wav2lip/wav2lip-gan/ (or models/wav2lip/wav2lip/) and "
                   "models/sadtalker/sadtalker-v0.0.2/.")
    INPUTS = (
        Input.socket("face", T.FACE, tooltip="the avatar from Avatar Prepare"),
        Input.combo("backend", list(BACKENDS), default="default",
                    tooltip="default: real time on a CPU, no weights; wav2lip: models/wav2lip/wav2lip-gan/ or "
                            "models/wav2lip/wav2lip/; sadtalker: models/sadtalker/sadtalker-v0.0.2/ (slow), 512x512 "
                            "face crops; sadtalker-full: SadTalker's full mode (mapping_00109-model.pth.tar), "
                            "frames of the whole photo"),
        Input.socket("audio_stream", T.AUDIO_STREAM, required=False, tooltip="speech chunks (live)"),
        Input.socket("audio", T.AUDIO, required=False, tooltip="a whole recording (batch)"),
        Input.number("idle_seconds", default=0.0, min=0.0, max=600.0, step=0.5,
                     tooltip="idle frames (blinks, breathing) after the audio"),
        Input.integer("seed", default=0, min=0, max=2**31 - 1, tooltip="blink and head-motion randomness"),
        Input.boolean("live_idle", default=False, tooltip="live sessions: idle frames in real time while no "
                                                            "speech arrives"),
    )
    OUTPUTS = (Output("frames", T.FRAME_STREAM),)
    DETERMINISTIC = False

    async def run(self, ctx: Any, face: Any, backend: str = "default", audio_stream: Any = None,
                  audio: Audio | None = None, idle_seconds: float = 0.0, seed: int = 0,
                  live_idle: bool = False) -> tuple[AsyncIterator[Frame]]:
        from nodes.face.avatar import FaceAvatar

        if not isinstance(face, FaceAvatar):
            raise NodeInputError("face", f"node {self.node_id}: expected a FACE from Avatar Prepare, "
                                         f"got {type(face).__name__}")
        if audio_stream is None and audio is None and idle_seconds <= 0:
            raise NodeInputError("audio", f"node {self.node_id}: connect audio_stream or audio, or set idle_seconds")
        try:
            impl = await ctx.run_blocking(make_backend, backend, face, ctx, int(seed))
        except Exception as exc:
            if not _load_backend_error(exc):
                raise
            raise NodeInputError("backend", f"node {self.node_id}: {exc}") from None
        return (animate(ctx, impl, audio_stream, audio, float(idle_seconds), bool(live_idle)),)


class SadTalker(Node):
    CATEGORY = "avatar/face"
    DISPLAY_NAME = "SadTalker"
    DESCRIPTION = ("SadTalker: audio -> expression and pose coefficients -> face renderer, from the official "
                   "checkpoints in models/sadtalker/sadtalker-v0.0.2/. Slower than real time: for the render "
                   "workflow.")
    INPUTS = (
        Input.socket("image", T.IMAGE, tooltip="a portrait photo"),
        Input.socket("audio", T.AUDIO, tooltip="the speech to animate"),
        Input.combo("size", [256, 512], default=256,
                    tooltip="renderer resolution: SadTalker_V0.0.2_256 or _512.safetensors"),
        Input.combo("preprocess", list(PREPROCESS), default="crop",
                    tooltip="crop: the face crop (mapping_00229, 70 coefficients); full: the whole photo "
                            "(mapping_00109, 73 coefficients)"),
    )
    OUTPUTS = (Output("frames", T.FRAME_STREAM),)
    DETERMINISTIC = False

    async def run(self, ctx: Any, image: np.ndarray, audio: Audio, size: int = 256,
                  preprocess: str = "crop") -> tuple[AsyncIterator[Frame]]:
        from nodes.face.prepare import PhotoError, prepare_avatar

        try:
            face = await ctx.run_blocking(prepare_avatar, image)
        except PhotoError as exc:
            raise NodeInputError("image", f"node {self.node_id}: {exc}") from None
        try:
            impl = await ctx.run_blocking(make_backend, "sadtalker", face, ctx, 0, preprocess, size=int(size))
        except Exception as exc:
            if not _load_backend_error(exc):
                raise
            raise NodeInputError("preprocess", f"node {self.node_id}: {exc}") from None
        return (animate(ctx, impl, None, audio, 0.0),)
