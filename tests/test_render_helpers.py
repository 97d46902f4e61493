"""Shared pieces of the render tests (no tests here): a folder sandbox, frame sources, tiny ESRGAN weights, WAVs."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from engine.graph import types as T
from engine.files.folders import folders
from engine.graph.node import Input, Node, NodeResult, Output
from engine.graph.registry import NodeRegistry
from nodes.io.media import Audio, Frame


def sandbox_folders(monkeypatch, tmp_path: Path) -> tuple[Path, Path]:
    data, models = tmp_path / "data", tmp_path / "models"
    monkeypatch.setattr(folders, "data_dir", data)
    monkeypatch.setattr(folders, "models_dir", models)
    return data, models


def tone(seconds: float, rate: int = 16000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class SourceFrames(Node):
    """Test source: ``count`` frames (a moving gradient), each carrying its slice of ``seconds`` of a tone."""

    INPUTS = (Input.integer("count", default=10, min=0, max=100000), Input.number("seconds", default=0.0),
              Input.integer("size", default=64, min=8, max=1024), Input.boolean("with_audio", default=True),
              Input.socket("audio", T.AUDIO, required=False))
    OUTPUTS = (Output("frames", T.FRAME_STREAM),)

    async def run(self, ctx, count, seconds=0.0, size=64, with_audio=True, audio=None):
        return (self._frames(count, seconds, size, with_audio, audio),)

    async def _frames(self, count, seconds, size, with_audio, audio):
        rate = 16000
        if audio is not None:
            count = int(np.ceil(round(audio.duration * 25, 6)))
        samples = tone(seconds, rate) if with_audio else None
        per = rate // 25
        yy, xx = np.mgrid[0:size, 0:size]
        for i in range(count):
            img = np.stack([(xx * 255 // size + i) % 256, yy * 255 // size, np.full_like(xx, (i * 7) % 256)],
                           -1).astype(np.uint8)
            chunk = samples[i * per:(i + 1) * per] if samples is not None else None
            yield Frame(image=img, index=i, pts=i / 25, audio=chunk, sample_rate=rate)


class SourceImage(Node):
    INPUTS = (Input.integer("size", default=32, min=8, max=1024),)
    OUTPUTS = (Output("image", T.IMAGE),)

    def run(self, ctx, size):
        rng = np.random.default_rng(size)
        return (rng.integers(0, 256, (size, size, 3), dtype=np.uint8),)


class SourceAudio(Node):
    INPUTS = (Input.number("seconds", default=1.0),)
    OUTPUTS = (Output("audio", T.AUDIO),)

    def run(self, ctx, seconds):
        return (Audio(tone(seconds), 16000),)


class CollectFrames(Node):
    OUTPUT_NODE = True
    INPUTS = (Input.socket("frames", T.FRAME_STREAM),)
    OUTPUTS = ()
    SEEN: list = []

    async def run(self, ctx, frames):
        got = [f async for f in frames]
        CollectFrames.SEEN = got
        return NodeResult((), {"frames": [{"count": len(got)}]})


def registry_with(*extra: type[Node]) -> NodeRegistry:
    from nodes.io.nodes import LoadAudio, LoadImage
    from nodes.render.nodes import ESRGAN, ESRGANImage
    from nodes.render.nodes import VideoOut, VideoOutLive

    reg = NodeRegistry()
    for cls in (LoadAudio, LoadImage, ESRGAN, ESRGANImage, VideoOut, VideoOutLive, SourceFrames, SourceImage,
                SourceAudio, CollectFrames, *extra):
        reg.register(cls)
    return reg


def write_tiny_esrgan(models_dir: Path, name: str = "tiny", scale: int = 2, seed: int = 0) -> Path:
    """A randomly initialised small SRVGGNetCompact saved the way the converter saves (safetensors + arch)."""
    import torch
    from safetensors.torch import save_file

    from nodes.render.esrgan_convert import EsrganArch

    torch.manual_seed(seed)
    arch = EsrganArch("SRVGGNetCompact", scale=scale, num_feat=8, num_conv=2)
    net = arch.build()
    path = models_dir / "esrgan" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=arch.to_metadata())
    return path


# --- WAV files in the shapes users send ---------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, sampwidth: int = 2) -> Path:
    """PCM WAV with the stdlib: ``samples`` float in [-1, 1], shape (n,) or (n, channels)."""
    data = np.asarray(samples, np.float64).reshape(-1, channels)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        if sampwidth == 1:  # 8-bit WAV is unsigned
            w.writeframes(np.clip(data * 127 + 128, 0, 255).astype(np.uint8).tobytes())
        else:
            w.writeframes(np.clip(data * 32767, -32768, 32767).astype("<i2").tobytes())
    return path


def write_wav_extensible(path: Path, samples: np.ndarray, rate: int, channels: int = 2) -> Path:
    """A WAVE_FORMAT_EXTENSIBLE (0xFFFE) 16-bit PCM file, as some recorders write."""
    pcm = np.clip(np.asarray(samples, np.float64).reshape(-1, channels) * 32767, -32768, 32767).astype("<i2")
    body = pcm.tobytes()
    pcm_guid = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, channels, rate, rate * channels * 2, channels * 2, 16, 22, 16,
                      0x3 if channels == 2 else 0x4, pcm_guid)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path
