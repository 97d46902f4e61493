"""VideoOut: the MP4 probes as 512x512 / 25 fps / H.264 + AAC with durations matching the audio; numbering,
faststart, long inputs with bounded memory and progress, unwritable outputs; the live sink."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av
import numpy as np
import pytest

from engine.graph.executor import Executor
from nodes.render.output_path import next_output_path
from tests.test_render_helpers import registry_with, sandbox_folders


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        decoded = sum(1 for _ in c.decode(video=0))
        return {"width": v.codec_context.width, "height": v.codec_context.height, "fps": float(v.average_rate),
                "vcodec": v.codec_context.name, "acodec": a.codec_context.name, "frames": decoded,
                "vdur": float(v.duration * v.time_base), "adur": float(a.duration * a.time_base),
                "pix_fmt": v.codec_context.pix_fmt}


def run(reg, prompt, events=None, session=None):
    return asyncio.run(Executor(reg).execute(prompt, on_event=(events.append if events is not None else
                                                               (lambda e: None)), session=session))


@pytest.mark.parametrize("seconds", [1.53, 2.0])
def test_mp4_probes_as_the_spec_says(monkeypatch, tmp_path, seconds) -> None:
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    count = int(np.ceil(seconds * 25))
    prompt = {"1": {"class_type": "SourceFrames", "inputs": {"count": count, "seconds": seconds, "size": 256}},
              "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0], "filename_prefix": "clips/avatar"}}}
    result = run(registry_with(), prompt)
    assert result.status == "success", result.error
    ui = result.outputs["2"]
    item = {"filename": "avatar_00001_.mp4", "subfolder": "clips", "type": "output", "format": "video/h264-mp4"}
    assert ui["images"] == [item] and ui["gifs"] == [item] and ui["animated"] == [True]
    path = data / "output" / "clips" / "avatar_00001_.mp4"
    p = probe(path)
    assert (p["width"], p["height"], p["fps"], p["vcodec"], p["acodec"]) == (512, 512, 25.0, "h264", "aac")
    assert p["pix_fmt"] == "yuv420p" and p["frames"] == count
    assert abs(p["vdur"] - seconds) <= 0.04 and abs(p["adur"] - seconds) <= 0.04, p
    assert abs(p["vdur"] - p["adur"]) <= 0.025, p
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    video = result.values["2"][0]
    assert video.path == path and video.has_audio and video.width == 512 and abs(video.duration - p["vdur"]) < 1e-6
    assert not list((data / "output" / "clips").glob("*.part"))
    # the next run takes the next number
    assert run(registry_with(), prompt).outputs["2"]["images"][0]["filename"] == "avatar_00002_.mp4"


def test_soundtrack_input_sets_the_length(monkeypatch, tmp_path) -> None:
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    reg = registry_with()
    for frames, expect_dropped, expect_padded in ((10, 0, 16), (40, 14, 0)):  # 1.03 s audio -> 26 frames
        prompt = {"a": {"class_type": "SourceAudio", "inputs": {"seconds": 1.03}},
                  "1": {"class_type": "SourceFrames", "inputs": {"count": frames, "with_audio": False}},
                  "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0], "audio": ["a", 0],
                                                             "filename_prefix": f"s{frames}"}}}
        result = run(reg, prompt)
        assert result.status == "success", result.error
        video = result.values["2"][0]
        assert video.meta["frames"] == 26 and video.meta["dropped_frames"] == expect_dropped
        assert video.meta["padded_frames"] == expect_padded
        p = probe(video.path)
        assert p["frames"] == 26 and abs(p["vdur"] - 1.03) <= 0.04 and abs(p["adur"] - 1.03) <= 0.04


def test_frames_without_audio_get_a_silent_track(monkeypatch, tmp_path) -> None:
    sandbox_folders(monkeypatch, tmp_path)
    prompt = {"1": {"class_type": "SourceFrames", "inputs": {"count": 5, "with_audio": False}},
              "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0]}}}
    result = run(registry_with(), prompt)
    assert result.status == "success", result.error
    video = result.values["2"][0]
    p = probe(video.path)
    assert not video.has_audio and p["acodec"] == "aac" and abs(p["adur"] - 0.2) <= 0.025


def test_no_frames_is_a_clear_error_and_leaves_no_file(monkeypatch, tmp_path) -> None:
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    prompt = {"1": {"class_type": "SourceFrames", "inputs": {"count": 0}},
              "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0]}}}
    result = run(registry_with(), prompt)
    assert result.status == "error" and "no frames" in str(result.error)
    assert not list((data / "output").iterdir())


def test_unwritable_output_is_a_clear_error(monkeypatch, tmp_path) -> None:
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    (data / "output").mkdir(parents=True)
    (data / "output" / "taken").write_text("a file where the subfolder should be")
    prompt = {"1": {"class_type": "SourceFrames", "inputs": {"count": 2}},
              "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0], "filename_prefix": "taken/avatar"}}}
    result = run(registry_with(), prompt)
    assert result.status == "error"
    text = str(result.error)
    assert "filename_prefix" in text and "cannot create the output folder" in text, text
    escape = dict(prompt, **{"2": {"class_type": "VideoOut",
                                   "inputs": {"frames": ["1", 0], "filename_prefix": "../outside"}}})
    result = run(registry_with(), escape)
    assert result.status == "error" and "output folder" in str(result.error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_a_clear_error(monkeypatch, tmp_path) -> None:
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    out = data / "output"
    out.mkdir(parents=True)
    out.chmod(0o555)
    try:
        prompt = {"1": {"class_type": "SourceFrames", "inputs": {"count": 2}},
                  "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0]}}}
        result = run(registry_with(), prompt)
        assert result.status == "error" and "not writable" in str(result.error)
    finally:
        out.chmod(0o755)


def test_ten_minutes_streams_with_progress_and_bounded_memory(monkeypatch, tmp_path) -> None:
    """600 s at 25 fps = 15000 frames: encoded as they arrive (128x128 output keeps the test quick)."""
    import psutil

    sandbox_folders(monkeypatch, tmp_path)
    events: list = []
    prompt = {"a": {"class_type": "SourceAudio", "inputs": {"seconds": 600.0}},
              "1": {"class_type": "SourceFrames", "inputs": {"audio": ["a", 0], "size": 128, "with_audio": False}},
              "2": {"class_type": "VideoOut", "inputs": {"frames": ["1", 0], "audio": ["a", 0], "width": 128,
                                                         "height": 128, "filename_prefix": "long"}}}
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]

    def on_event(e):
        events.append(e)
        if e.type == "progress" and int(e.data["value"]) % 500 == 0:
            peak[0] = max(peak[0], proc.memory_info().rss)

    result = asyncio.run(Executor(registry_with()).execute(prompt, on_event=on_event))
    assert result.status == "success", result.error
    video = result.values["2"][0]
    assert video.meta["frames"] == 15000 and abs(video.duration - 600.0) < 1e-6
    progress = [e.data for e in events if e.type == "progress" and e.data["node"] == "2"]
    assert len(progress) >= 15000 and all(p["max"] == 15000 for p in progress)
    assert progress[-1]["value"] == 15000
    assert [p["value"] for p in progress] == sorted(p["value"] for p in progress)
    # holding the frames would take 15000 * 49 KB = 737 MB; streaming stays far below that
    print(f"RSS growth over 15000 frames: {(peak[0] - before) / 2**20:.0f} MiB")
    assert peak[0] - before < 250 * 2**20, (peak[0] - before) / 2**20
    p = probe(video.path)
    assert abs(p["adur"] - 600.0) <= 0.04 and abs(p["vdur"] - 600.0) <= 0.04


class FakeSession:
    def __init__(self):
        self.got = []

    async def send_media(self, frame):
        self.got.append((frame.index, frame.image.shape, None if frame.audio is None else len(frame.audio)))


def test_live_sink_hands_frames_and_pcm_to_the_session(monkeypatch, tmp_path) -> None:
    sandbox_folders(monkeypatch, tmp_path)
    prompt = {"1": {"class_type": "SourceFrames", "inputs": {"count": 4, "seconds": 0.16}},
              "2": {"class_type": "VideoOutLive", "inputs": {"frames": ["1", 0]}}}
    session = FakeSession()
    result = run(registry_with(), prompt, session=session)
    assert result.status == "success", result.error
    assert session.got == [(i, (64, 64, 3), 640) for i in range(4)]
    result = run(registry_with(), prompt)  # no session: a clear error
    assert result.status == "error" and "session" in str(result.error)


def test_next_output_path_numbering(monkeypatch, tmp_path) -> None:
    data, _ = sandbox_folders(monkeypatch, tmp_path)
    out = data / "output"
    out.mkdir(parents=True)
    for name in ("avatar_00001_.mp4", "avatar_00007_.mp4", "avatarx_00099_.mp4", "avatar_00003_.png"):
        (out / name).write_bytes(b"")
    path, filename, subfolder = next_output_path("avatar")
    assert (filename, subfolder) == ("avatar_00008_.mp4", "") and path == out / filename
