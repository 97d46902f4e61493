"""render_avatar runs end to end into a valid MP4 (tests/test_workflows.py checks that its two forms agree)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import numpy as np
import pytest

from engine.graph.executor import Executor
from engine.graph.registry import NodeRegistry
from tests.test_render_helpers import sandbox_folders, tone, write_tiny_esrgan, write_wav

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    reg = NodeRegistry()
    reg.discover("nodes")
    return reg


def _api(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.api.json").read_text())


def _portrait() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.mark.parametrize("esrgan", [False, True])
def test_render_avatar_end_to_end(monkeypatch, tmp_path, registry, esrgan) -> None:
    from PIL import Image

    data_dir, models = sandbox_folders(monkeypatch, tmp_path)
    inputs = data_dir / "input"
    inputs.mkdir(parents=True)
    Image.fromarray(_portrait()).save(inputs / "portrait.png")
    seconds = 0.3 if esrgan else 1.3
    stereo = np.repeat((tone(seconds, 48000) * np.hanning(int(seconds * 48000)))[:, None], 2, 1)
    write_wav(inputs / "speech.wav", stereo, 48000, channels=2)  # 48 kHz stereo in; 16 kHz mono inside
    api = _api("render_avatar")
    esrgan_id = next(k for k, v in api.items() if v["class_type"] == "ESRGAN")
    out_id = next(k for k, v in api.items() if v["class_type"] == "VideoOut")
    if esrgan:
        write_tiny_esrgan(models, "tiny", scale=2)
        api[esrgan_id]["inputs"].update(enabled=True, model="tiny")
    events: list = []
    result = asyncio.run(Executor(registry).execute(api, on_event=events.append))
    assert result.status == "success", result.error
    item = result.outputs[out_id]["images"][0]
    path = data_dir / "output" / item["subfolder"] / item["filename"]
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.width, v.codec_context.height, float(v.average_rate)) == (512, 512, 25.0)
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
        assert abs(float(v.duration * v.time_base) - seconds) <= 0.04
        assert abs(float(a.duration * a.time_base) - seconds) <= 0.04
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == int(np.ceil(seconds * 25))
    assert max(np.abs(f.astype(int) - frames[0]).mean() for f in frames) > 0.5  # the face moves
    progress = [e.data for e in events if e.type == "progress" and e.data["node"] == out_id]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == len(frames)


def test_say_text_end_to_end(monkeypatch, tmp_path, registry) -> None:
    """text -> TTS (its default backend) -> face -> MP4; the video lasts as long as the speech."""
    from PIL import Image

    data_dir, _ = sandbox_folders(monkeypatch, tmp_path)
    monkeypatch.setattr("engine.files.folders.folders.models_dir", WORKFLOWS.parent / "models")  # TTS voices
    (data_dir / "input").mkdir(parents=True)
    Image.fromarray(_portrait()).save(data_dir / "input" / "portrait.png")
    api = _api("say_text")
    text_id = next(k for k, v in api.items() if v["class_type"] == "PrimitiveStringMultiline")
    out_id = next(k for k, v in api.items() if v["class_type"] == "VideoOut")
    api[text_id]["inputs"]["value"] = "Hello there."
    result = asyncio.run(Executor(registry).execute(api))
    assert result.status == "success", result.error
    video = result.values[out_id][0]
    speech_seconds = video.meta["audio_seconds"]  # the TTS audio VideoOut was given as its soundtrack
    assert speech_seconds > 0.3 and video.has_audio
    item = result.outputs[out_id]["images"][0]
    with av.open(str(data_dir / "output" / item["subfolder"] / item["filename"])) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.width, v.codec_context.height, float(v.average_rate)) == (512, 512, 25.0)
        assert abs(float(v.duration * v.time_base) - speech_seconds) <= 0.04
        assert abs(float(a.duration * a.time_base) - speech_seconds) <= 0.04
