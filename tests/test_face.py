"""Avatar preprocessing, the default animator, frame streaming and the face nodes (no neural weights)."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")
from PIL import Image  # noqa: E402

from nodes.face import avatar as A  # noqa: E402
from nodes.face.prepare import NoFaceError, PhotoError, load_photo, prepare_avatar, read_photo  # noqa: E402
from nodes.io.media import Audio, AudioChunk, PhonemeTiming  # noqa: E402


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def face(astronaut):
    return prepare_avatar(astronaut)


class FakeContext:
    """What FaceAnimate uses of the engine's NodeContext."""

    node_id = "7"
    models = None

    async def run_blocking(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    def check_interrupted(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ loading

def test_load_photo_converts_modes_and_orientation(tmp_path: Path, astronaut):
    gray = tmp_path / "gray.png"
    Image.fromarray(astronaut[..., 0]).save(gray)
    assert load_photo(gray).shape == (512, 512, 3)
    assert np.array_equal(load_photo(gray)[..., 0], load_photo(gray)[..., 2])

    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(astronaut).convert("CMYK").save(cmyk)
    loaded = read_photo(cmyk)
    assert loaded.image.shape == (512, 512, 3) and loaded.image.dtype == np.uint8
    assert any("CMYK" in n for n in loaded.notes)
    assert np.abs(loaded.image.astype(int) - astronaut).mean() < 20

    rgba = np.dstack([astronaut, np.full((512, 512), 255, np.uint8)])
    rgba[:100, :100, 3] = 0
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    img = load_photo(path)
    assert img.shape == (512, 512, 3) and (img[:100, :100] == 255).all()

    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :40] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    rotated = tmp_path / "exif.jpg"
    Image.fromarray(wide).save(rotated, exif=exif.tobytes(), quality=95)
    up = load_photo(rotated)
    assert up.shape == (80, 40, 3)
    assert up[5, 20, 0] > 200 and up[75, 20, 0] < 60  # the red half is now on top

    deep = tmp_path / "16bit.png"
    Image.fromarray((astronaut[..., 1].astype(np.uint16) * 257)).save(deep)
    assert np.abs(load_photo(deep)[..., 0].astype(int) - astronaut[..., 1]).max() <= 1


def test_text_file_named_png_is_refused(tmp_path: Path):
    fake = tmp_path / "portrait.png"
    fake.write_text("hello, I am not an image\n")
    with pytest.raises(PhotoError, match="not an image"):
        load_photo(fake)


def _huge_png(path: Path, width: int, height: int) -> None:
    """A valid (grey) PNG of the given size, written row by row without holding the pixels in memory."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(1)
    row = b"\x00" + b"\x80" * width
    body = bytearray()
    for _ in range(height):
        body += comp.compress(row)
    body += comp.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", bytes(body)))
        f.write(chunk(b"IEND", b""))


def test_20000_square_image_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "huge.png"
    _huge_png(path, 20000, 20000)
    with pytest.raises(PhotoError, match="400 megapixels.*downscale"):
        load_photo(path)


def test_animated_gif_uses_first_frame(tmp_path: Path, astronaut):
    frames = [Image.fromarray(astronaut), Image.fromarray(255 - astronaut)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = read_photo(path)
    assert loaded.image.shape == (512, 512, 3)
    assert any("animated" in n and "first frame" in n for n in loaded.notes)
    assert np.abs(loaded.image.astype(int) - astronaut).mean() < 40  # the first frame, not the negative


def test_tiny_image_is_refused():
    with pytest.raises(PhotoError, match="16x16.*too small"):
        prepare_avatar(np.full((16, 16, 3), 128, np.uint8))


def test_no_face_is_a_clear_error():
    with pytest.raises(NoFaceError, match="no face"):
        prepare_avatar(skdata.coffee())


# ------------------------------------------------------------------------------------------------ preparing

def test_prepare_aligns_crop_and_maps_back(face, astronaut):
    assert face.image.shape == (512, 512, 3) and face.image.dtype == np.uint8
    assert face.landmarks.shape == (478, 2)
    assert set(face.regions) >= {"lips_outer", "lips_inner", "right_eye", "left_eye", "face_oval"}
    x0, y0, x1, y1 = face.boxes["mouth"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    # eyes level and roughly where the alignment puts them; mouth below the eyes
    r, l = face.points(A.RIGHT_EYE).mean(0), face.points(A.LEFT_EYE).mean(0)
    assert abs(r[1] - l[1]) < 6 and r[0] < 256 < l[0]
    assert face.landmarks[13, 1] > r[1] + 50
    # the crop transform leads back to the same face in the photo (astronaut's face is near (220, 140))
    eyes_photo = np.hstack([np.vstack([r, l]), np.ones((2, 1))]) @ face.crop_to_photo.T
    assert np.all(np.abs(eyes_photo.mean(0) - (220, 115)) < 30), eyes_photo
    assert face.paste_into_photo(face.image).shape == astronaut.shape
    assert any("upscaled" in w for w in face.warnings)


def test_small_photo_warns_and_largest_face_wins(astronaut):
    small = cv2.resize(astronaut, (300, 300), interpolation=cv2.INTER_AREA)
    assert any("smaller than 512" in w for w in prepare_avatar(small).warnings)
    canvas = np.full((700, 1200, 3), 200, np.uint8)
    canvas[100:612, 600:1112] = astronaut  # large face on the right
    canvas[200:456, 50:306] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    two = prepare_avatar(canvas)
    assert any("2 faces" in w and "largest" in w for w in two.warnings)
    centre = np.array([256.0, 256.0, 1.0]) @ two.crop_to_photo.T
    assert centre[0] > 600  # the crop is of the larger face


# ------------------------------------------------------------------------------------------------ animating

def test_frame_clock_keeps_every_sample():
    from nodes.face.stream import FrameClock

    clock = FrameClock(25)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(22050 * 2 + 123).astype(np.float32)
    out, pos = [], 0
    while pos < len(audio):
        n = int(rng.integers(100, 5000))
        frames, flushed = clock.push(audio[pos:pos + n], 22050)
        assert flushed is None
        out += frames
        pos += n
    last = clock.flush()
    assert {len(f) for f in out} == {882}
    joined = np.concatenate(out + [last])
    assert np.array_equal(joined[:len(audio)], audio) and not joined[len(audio):].any()


def _voice(seconds: float, sr: int = 16000, rate: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * rate * t), 0, None)
    return (0.3 * env * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 360 * t))).astype(np.float32)


def test_default_animator_follows_the_envelope_and_idles(face):
    from nodes.face.animator import DefaultAnimator

    an = DefaultAnimator(face, seed=1)
    audio = _voice(2.0)
    hop = 640
    jaws, frames = [], []
    for k in range(0, len(audio), hop):
        frames.append(an.frame(audio[k:k + hop], 16000))
        jaws.append(an.last_controls.amp("jaw"))
    env = [np.sqrt(np.mean(audio[k:k + hop] ** 2)) for k in range(0, len(audio), hop)]
    assert np.corrcoef(env, jaws)[0, 1] > 0.8
    assert max(jaws) > 0.7
    # pure silence: the mouth stays shut, but she blinks, breathes and sways
    blinks, idle = [], []
    for _ in range(200):  # 8 s
        idle.append(an.frame(np.zeros(hop, np.float32), 16000))
        assert an.last_controls.amp("jaw") == 0.0
        blinks.append(an.last_controls.amp("blink"))
    assert max(blinks) > 0.9
    assert np.abs(idle[0].astype(int) - idle[40]).mean() > 0.3
    # the mouth painting happens only when open: a silent frame's mouth matches the photo's mouth colours
    x0, y0, x1, y1 = face.boxes["mouth"]
    assert np.abs(idle[-1][y0:y1, x0:x1].astype(int) - face.image[y0:y1, x0:x1]).mean() < 25


def test_visemes_and_emotion_shape_the_mouth(face):
    from nodes.face.animator import DefaultAnimator
    from nodes.face.animator.visemes import viseme_for

    assert viseme_for("u").round > 0.5 and viseme_for("iː").spread > 0.5 and viseme_for("m").open < 0.5
    assert viseme_for("AA1").open > 1.0 and viseme_for("_").open == 0.0
    tone = _voice(1.0, rate=0.5)  # one long voiced stretch
    for phoneme, control in (("u", "round"), ("i", "spread")):
        an = DefaultAnimator(face)
        timings = (PhonemeTiming(phoneme, 0.0, 1.0),)
        vals = []
        for k in range(0, 16000, 640):
            an.frame(tone[k:k + 640], 16000, timings=timings, t_utt=k / 16000)
            vals.append(an.last_controls.amp(control))
        assert max(vals) > 0.3, (phoneme, control, vals)
    an = DefaultAnimator(face)
    corners = []
    for emotion in ("neutral",) * 5 + ("happy",) * 30:
        an.frame(np.zeros(640, np.float32), 16000, emotion=emotion)
        c = an.renderer.moved_landmarks(an.last_controls, A.MOUTH_CORNERS)
        corners.append(c[:, 1].mean() - an.renderer.moved_landmarks(an.last_controls, (A.NOSE_TIP,))[0, 1])
    assert an.last_controls.amp("smile") > 0.9
    assert corners[-1] < corners[0] - 2  # corners rose towards the nose


def test_default_animator_is_real_time(face):
    import time

    from nodes.face.animator import DefaultAnimator

    an = DefaultAnimator(face)
    audio = _voice(2.0)
    t0 = time.perf_counter()
    for k in range(0, len(audio), 640):
        an.frame(audio[k:k + 640], 16000)
    fps = 50 / (time.perf_counter() - t0)
    assert fps > 25, f"{fps:.1f} fps"  # the benchmark's target is 50 on an idle 2-core CPU; tests share the CPU


async def test_face_animate_node_streams_frames_with_their_audio(face):
    from engine.graph.node import NodeInputError
    from nodes.face.nodes import AvatarPrepare, FaceAnimate

    sr = 24000
    audio = _voice(1.3, sr)

    async def chunks():
        pos = 0
        for n in (5000, 7000, 3000, 100000):
            part = audio[pos:pos + n]
            pos += n
            yield AudioChunk(samples=part, sample_rate=sr, start=(pos - n) / sr, emotion="happy",
                             final=pos >= len(audio))
            await asyncio.sleep(0)

    node = FaceAnimate("7")
    (stream,) = await node.run(FakeContext(), face, "default", audio_stream=chunks(), idle_seconds=0.4)
    frames = [f async for f in stream]
    expected = int(np.ceil(len(audio) / (sr / 25))) + 10
    assert len(frames) == expected
    assert [f.index for f in frames] == list(range(expected))
    assert frames[3].pts == pytest.approx(3 / 25)
    assert all(f.image.shape == (512, 512, 3) and f.sample_rate == sr for f in frames)
    joined = np.concatenate([f.audio for f in frames])
    assert np.array_equal(joined[:len(audio)], audio) and not joined[len(audio):].any()

    (batch,) = await node.run(FakeContext(), face, "default", audio=Audio(audio, sr))
    assert len([f async for f in batch]) == expected - 10

    # pure silence: frames (with their silent audio), and the mouth stays shut
    (quiet,) = await node.run(FakeContext(), face, "default", audio=Audio(np.zeros(sr, np.float32), sr))
    quiet = [f async for f in quiet]
    assert len(quiet) == 25 and all(not f.audio.any() for f in quiet)
    x0, y0, x1, y1 = face.boxes["mouth"]
    assert max(np.abs(f.image[y0:y1, x0:x1].astype(int) - face.image[y0:y1, x0:x1]).mean() for f in quiet) < 25

    with pytest.raises(NodeInputError):
        await node.run(FakeContext(), face, "default")
    result = AvatarPrepare("3").run(FakeContext(), skdata.astronaut())
    assert result.outputs[0].image.shape == (512, 512, 3) and result.ui["warnings"]
    with pytest.raises(NodeInputError, match="no face"):
        AvatarPrepare("3").run(FakeContext(), skdata.coffee())


async def test_live_idle_frames_while_waiting_for_speech(face):
    from nodes.face.nodes import FaceAnimate

    sr = 16000

    async def late_chunks():
        await asyncio.sleep(0.4)  # the user is still talking; the TTS has nothing yet
        yield AudioChunk(samples=_voice(0.4, sr), sample_rate=sr, final=True)

    (stream,) = await FaceAnimate("7").run(FakeContext(), face, "default", audio_stream=late_chunks(),
                                           live_idle=True)
    frames = [f async for f in stream]
    speech = 10
    assert len(frames) >= speech + 4  # ~10 idle frames came first, in real time
    assert [f.index for f in frames] == list(range(len(frames)))
    assert not frames[0].audio.any() and any(f.audio.any() for f in frames[-speech:])


def test_registry_discovers_face_nodes_without_heavy_imports():
    import subprocess
    import sys

    code = ("import sys; from engine.graph.registry import NodeRegistry; r = NodeRegistry(); r.discover('nodes');"
            "print(all(n in r for n in ('AvatarPrepare', 'FaceAnimate', 'SadTalker')),"
            "'mediapipe' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split()[:2] == ["True", "False"], out.stdout + out.stderr
