"""A small test-only node pack for the server tests (no tests here).

The server tests copy a one-line pack into a custom_nodes folder that imports these classes, and start the
server with the pack enabled. The nodes make real files: a PNG (the image with a level bar drawn from the
audio) and a WAV (the audio with a gain), so history, view and the editor's previews have real media.
"""

from __future__ import annotations

import io
import time
import uuid

import numpy as np

from engine.graph import types as T
from engine.files.folders import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, folders
from engine.graph.node import Input, Node, NodeInputError, NodeResult, Output

CATEGORY = "avatar/test"


def _images() -> list[str]:
    return folders.files("input", IMAGE_EXTENSIONS)


def _audio() -> list[str]:
    return folders.files("input", AUDIO_EXTENSIONS)


class AGTestLoadImage(Node):
    CATEGORY = CATEGORY
    INPUTS = (Input.file("image", "image", _images, tooltip="an image in the input folder"),)
    OUTPUTS = (Output("image", T.IMAGE),)

    @classmethod
    def fingerprint(cls, inputs):
        return folders.resolve("input", inputs["image"]).stat().st_mtime_ns

    def run(self, ctx, image):
        from PIL import Image

        with Image.open(folders.resolve("input", image)) as img:
            return (np.asarray(img.convert("RGB")),)


class AGTestLoadAudio(Node):
    CATEGORY = CATEGORY
    INPUTS = (Input.file("audio", "audio", _audio, tooltip="audio in the input folder"),)
    OUTPUTS = (Output("audio", T.AUDIO),)

    def run(self, ctx, audio):
        import soundfile

        samples, rate = soundfile.read(folders.resolve("input", audio), dtype="float32", always_2d=True)
        return ((samples.mean(axis=1), rate),)


class AGTestSolidImage(Node):
    CATEGORY = CATEGORY
    INPUTS = (Input.integer("width", 64, min=8, max=1024), Input.integer("height", 48, min=8, max=1024),
              Input.combo("colour", ["teal", "orange", "grey"], default="teal"))
    OUTPUTS = (Output("image", T.IMAGE),)

    def run(self, ctx, width, height, colour):
        rgb = {"teal": (0, 128, 128), "orange": (255, 140, 0), "grey": (128, 128, 128)}[colour]
        return (np.tile(np.array(rgb, dtype=np.uint8), (height, width, 1)),)


class AGTestInvert(Node):
    CATEGORY = CATEGORY
    INPUTS = (Input.socket("image", T.IMAGE),)
    OUTPUTS = (Output("image", T.IMAGE),)

    def run(self, ctx, image):
        return (255 - np.asarray(image, dtype=np.uint8),)


class AGTestTone(Node):
    CATEGORY = CATEGORY
    INPUTS = (Input.number("seconds", 0.5, min=0.05, max=10.0, step=0.05),
              Input.integer("frequency", 440, min=20, max=8000))
    OUTPUTS = (Output("audio", T.AUDIO),)

    def run(self, ctx, seconds, frequency):
        rate = 16000
        t = np.arange(int(seconds * rate), dtype=np.float32) / rate
        return ((0.3 * np.sin(2 * np.pi * frequency * t).astype(np.float32), rate),)


class AGTestCompose(Node):
    """Writes a PNG (the image with a level bar from the audio) and a WAV (the audio times ``gain``)."""

    CATEGORY = CATEGORY
    OUTPUT_NODE = True
    INPUTS = (Input.socket("image", T.IMAGE), Input.socket("audio", T.AUDIO),
              Input.number("gain", 1.0, min=0.0, max=4.0, step=0.1),
              Input.integer("steps", 3, min=1, max=100),
              Input.number("delay", 0.0, min=0.0, max=60.0, step=0.1, tooltip="seconds to take (for tests)"),
              Input.boolean("fail", False),
              Input.string("filename_prefix", default="agtest"))
    OUTPUTS = ()

    def run(self, ctx, image, audio, gain, steps, delay, fail, filename_prefix):
        import soundfile
        from PIL import Image

        samples, rate = audio
        for step in range(steps):
            ctx.check_interrupted()
            time.sleep(delay / steps)
            ctx.progress(step + 1, steps)
        if fail:
            raise NodeInputError("fail", "the test node was asked to fail: set fail to false")
        out = np.array(image, dtype=np.uint8, copy=True)
        level = float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0
        bar = max(1, min(out.shape[0], int(out.shape[0] * min(1.0, level * gain * 2))))
        out[-bar:, : max(1, out.shape[1] // 8)] = (255, 255, 255)
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="PNG")
        ctx.preview("png", buf.getvalue())
        stem = f"{filename_prefix}_{uuid.uuid4().hex[:8]}"
        png = folders.resolve("output", f"{stem}.png")
        png.write_bytes(buf.getvalue())
        wav = folders.resolve("output", f"{stem}.wav")
        soundfile.write(wav, np.clip(samples * gain, -1, 1), rate, subtype="PCM_16")
        mp4 = folders.resolve("output", f"{stem}.mp4")
        _write_clip(mp4, out)
        ui = {"images": [{"filename": png.name, "subfolder": "", "type": "output"}],
              "audio": [{"filename": wav.name, "subfolder": "", "type": "output"}],
              "gifs": [{"filename": mp4.name, "subfolder": "", "type": "output", "format": "video/h264-mp4"}]}
        return NodeResult((), ui)


def _write_clip(path, image: np.ndarray, frames: int = 5) -> None:
    """A tiny H.264 clip of ``image`` fading in (a video output under ``gifs``, as video node packs list them)."""
    import av

    h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            frame = (image[:h, :w].astype(np.float32) * (i + 1) / frames).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


NODES = [AGTestLoadImage, AGTestLoadAudio, AGTestSolidImage, AGTestInvert, AGTestTone, AGTestCompose]
