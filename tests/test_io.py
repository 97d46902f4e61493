"""LoadImage / LoadAudio: files from the input folder, the awkward WAV flavours users send, the sha256 fingerprint."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from PIL import Image

from engine.graph.executor import Executor
from nodes.io.files import file_sha256
from nodes.io.nodes import LoadAudio, LoadImage
from tests.test_render_helpers import registry_with, sandbox_folders, tone, write_wav, write_wav_extensible


@pytest.fixture
def input_dir(monkeypatch, tmp_path):
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    path = data / "input"
    path.mkdir(parents=True)
    return path


def load(reg, class_type, name, value):
    from engine.graph.node import Input, Node, NodeResult
    from engine.graph import types as T

    got = {}

    class Keep(Node):
        OUTPUT_NODE = True
        INPUTS = (Input.socket("value", T.ANY),)

        def run(self, ctx, value):
            got["value"] = value
            return NodeResult((), {})

    reg.register(Keep)
    result = asyncio.run(Executor(reg).execute({"1": {"class_type": class_type, "inputs": {name: value}},
                                                "2": {"class_type": "Keep", "inputs": {"value": ["1", 0]}}}))
    return result, got.get("value")


def test_load_image_rgb_from_grayscale_and_alpha(input_dir) -> None:
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (48, 1)), "L").save(input_dir / "gray.png")
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(input_dir / "alpha.png")
    for name, shape in (("gray.png", (48, 64, 3)), ("alpha.png", (40, 30, 3))):
        result, image = load(registry_with(), "LoadImage", "image", name)
        assert result.status == "success", result.error
        assert image.shape == shape and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 0, 0]


def test_load_image_missing_or_escaping_file_is_refused(input_dir) -> None:
    from engine.graph.node import NodeInputError
    from engine.graph.validation import PromptInvalid

    for bad in ("nope.png", "../secret.png"):
        with pytest.raises(PromptInvalid, match="image"):  # validation: not in the input folder's list
            load(registry_with(), "LoadImage", "image", bad)
        with pytest.raises(NodeInputError) as err:  # and at run time (a file removed after validation)
            LoadImage("1").run(None, bad)
        assert err.value.input_name == "image"
    (input_dir / "broken.png").write_bytes(b"not a png")
    with pytest.raises(NodeInputError, match="broken.png"):
        LoadImage("1").run(None, "broken.png")


def test_fingerprint_is_the_file_sha256_and_follows_changes(input_dir) -> None:
    import hashlib

    path = input_dir / "a.wav"
    write_wav(path, tone(0.1), 16000)
    first = LoadAudio.fingerprint({"audio": "a.wav"})
    assert first == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    write_wav(path, tone(0.2), 16000)
    os.utime(path, ns=(1, 2))  # a different mtime even within the same clock tick
    assert LoadAudio.fingerprint({"audio": "a.wav"}) != first
    assert LoadImage.fingerprint({"image": "missing.png"}) is None


@pytest.mark.parametrize(("name", "writer", "seconds"), [
    ("pcm16_16k.wav", lambda p, s: write_wav(p, tone(s), 16000), 1.25),
    ("u8_8k.wav", lambda p, s: write_wav(p, tone(s, 8000), 8000, sampwidth=1), 1.0),
    ("stereo_48k.wav", lambda p, s: write_wav(p, np.repeat(tone(s, 48000)[:, None], 2, 1), 48000, channels=2), 0.8),
    ("extensible_44k.wav", lambda p, s: write_wav_extensible(p, np.repeat(tone(s, 44100)[:, None], 2, 1), 44100),
     0.7),
])
def test_load_audio_any_wav_to_16k_mono(input_dir, name, writer, seconds) -> None:
    writer(input_dir / name, seconds)
    result, audio = load(registry_with(), "LoadAudio", "audio", name)
    assert result.status == "success", result.error
    assert audio.sample_rate == 16000 and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration - seconds) < 0.01
    # still the 220 Hz tone at about the same level (mono mix of identical channels keeps the amplitude)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(audio.samples) - 220) < 5
    assert 0.2 < np.abs(audio.samples).max() < 0.4


def test_zero_second_wav_is_a_clear_error(input_dir) -> None:
    write_wav(input_dir / "empty.wav", np.zeros(0), 16000)
    result, _ = load(registry_with(), "LoadAudio", "audio", "empty.wav")
    assert result.status == "error"
    assert "audio" in str(result.error) and ("0 seconds" in str(result.error) or "empty" in str(result.error))


def test_ten_minute_wav_loads(input_dir) -> None:
    write_wav(input_dir / "long.wav", tone(600.0), 16000)
    result, audio = load(registry_with(), "LoadAudio", "audio", "long.wav")
    assert result.status == "success", result.error
    assert abs(audio.duration - 600.0) < 1e-3


def test_text_node_feeds_text_sockets() -> None:
    from engine.graph import types as T
    from nodes.io.nodes import PrimitiveStringMultiline

    assert PrimitiveStringMultiline("1").run(None, "Hello.") == ("Hello.",)
    assert T.types_compatible(PrimitiveStringMultiline.OUTPUTS[0].type, T.TEXT)
