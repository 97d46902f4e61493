"""Wav2Lip and SadTalker backends with randomly initialised weights: architecture, checkpoint loading and key
checks, streaming plumbing, memory registration. Real checkpoints are only needed by the @weights tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")

from nodes.face.prepare import prepare_avatar  # noqa: E402
from nodes.face.stream import FramePump  # noqa: E402



@pytest.fixture(scope="module")
def face():
    return prepare_avatar(skdata.astronaut())


@pytest.fixture(scope="module")
def sadtalker_models():
    from nodes.face.sadtalker import build_models

    torch.manual_seed(0)
    return {k: m.eval() for k, m in build_models().items()}


def _voice(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ Wav2Lip

def _save_official_format(model, path: Path) -> None:
    """As the official training script saves: {'state_dict': DataParallel keys, 'optimizer', 'global_step', ...}."""
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "optimizer": None,
                "global_step": 1, "global_epoch": 1}, path)


def test_wav2lip_architecture_matches_the_published_one():
    from nodes.face.wav2lip import PARAMS, build_model

    model = build_model().eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMS == 36_298_035
    keys = model.state_dict()
    # names and shapes of the official checkpoint (after removing DataParallel's "module.")
    assert tuple(keys["face_encoder_blocks.0.0.conv_block.0.weight"].shape) == (16, 6, 7, 7)
    assert tuple(keys["audio_encoder.11.conv_block.0.weight"].shape) == (512, 256, 3, 3)
    assert tuple(keys["face_decoder_blocks.6.0.conv_block.0.weight"].shape) == (160, 64, 3, 3)  # transposed conv
    assert tuple(keys["output_block.1.weight"].shape) == (3, 32, 1, 1)
    with torch.inference_mode():
        out = model(torch.randn(3, 1, 80, 16), torch.rand(3, 6, 96, 96))
    assert out.shape == (3, 3, 96, 96) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_wav2lip_checkpoint_round_trip_and_clear_mismatch(tmp_path: Path, monkeypatch):
    from engine.files.folders import folders
    from nodes.face.checkpoints import wav2lip_checkpoint
    from nodes.face.wav2lip import CheckpointMismatch, build_model, load_model

    monkeypatch.setattr(folders, "models_dir", tmp_path)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        wav2lip_checkpoint()
    model = build_model()
    path = tmp_path / "wav2lip" / "wav2lip-gan" / "wav2lip_gan.pth"
    path.parent.mkdir(parents=True)
    _save_official_format(model, path)
    assert wav2lip_checkpoint() == path
    loaded = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)

    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    del state["module.output_block.1.bias"]
    state["module.face_encoder_blocks.0.0.conv_block.0.weight"] = torch.zeros(32, 6, 7, 7)
    state["module.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointMismatch, match="1 missing keys.*output_block.1.bias.*1 unexpected.*shape mismatch"):
        load_model(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="not a readable PyTorch checkpoint"):
        load_model(junk)


def test_wav2lip_streams_frames_and_pastes_only_the_lower_face(face):
    from nodes.face.wav2lip import Wav2LipBackend, build_model, face_box

    torch.manual_seed(0)
    backend = Wav2LipBackend(face, build_model().eval(), batch_size=2)
    pump = FramePump(backend)
    sr = 22050
    audio = _voice(0.36, sr)
    frames = []
    for k in range(0, len(audio), 2000):  # frames come out in batches once 0.2 s of audio follows them
        frames += pump.audio(audio[k:k + 2000], sr, k / sr)
    assert 0 < len(frames) < 9  # some are out, the last ones wait for audio that follows them
    frames += pump.finish()
    assert [f.index for f in frames] == list(range(9))
    assert sum(len(f.audio) for f in frames) == 9 * 882
    x0, y0, x1, y1 = face_box(face)
    mid = (y0 + y1) // 2
    img = frames[4].image
    assert img.shape == (512, 512, 3)
    # the generated face only replaces the lower half of the box, feathered: eyes and background untouched
    eyes = face.boxes["eyes"]
    base = backend.base.renderer.render(__import__("nodes.face.animator.drive", fromlist=["x"]).FrameControls(
        amps=np.zeros(7, np.float32)))
    assert np.abs(img[eyes[1]:eyes[3], eyes[0]:eyes[2]].astype(int) - base[eyes[1]:eyes[3], eyes[0]:eyes[2]]).mean() < 8
    assert np.abs(img[:y0 - 5].astype(int) - base[:y0 - 5]).max() == 0
    assert np.abs(img[mid + 10:y1 - 10, x0 + 20:x1 - 20].astype(int) - base[mid + 10:y1 - 10, x0 + 20:x1 - 20]).mean() > 5


def test_wav2lip_registers_its_memory_with_the_model_manager(face, tmp_path: Path):
    from engine.models.manager import ModelManager
    from nodes.face.wav2lip import PARAMS, Wav2LipBackend, build_model

    path = tmp_path / "wav2lip.pth"
    _save_official_format(build_model(), path)

    class Ctx:
        models = ModelManager(vram_budget_bytes=8 * 2**30, device="cuda-sim")

    backend = Wav2LipBackend.from_context(face, Ctx(), checkpoint=path, batch_size=2)
    (info,) = Ctx.models.loaded()
    # the manager counts what the loaded model measurably holds (parameters and BatchNorm buffers)
    held = sum(t.numel() * t.element_size() for t in backend.model.state_dict().values())
    assert info.kind == "wav2lip" and info.size_bytes == held > PARAMS * 4 and info.id == "wav2lip:wav2lip.pth"
    assert backend.device == "cpu"


async def test_face_animate_node_says_what_to_do_without_wav2lip_weights(face, tmp_path, monkeypatch):
    from engine.files.folders import folders
    from engine.graph.node import NodeInputError
    from nodes.face.nodes import FaceAnimate

    monkeypatch.setattr(folders, "models_dir", tmp_path)

    class Ctx:
        node_id = "9"
        models = None

        async def run_blocking(self, fn, *a, **kw):
            return await asyncio.to_thread(fn, *a, **kw)

        def check_interrupted(self):
            pass

    with pytest.raises(NodeInputError, match="wav2lip_gan.pth in .*wav2lip-gan/ or wav2lip.pth in .*wav2lip/wav2lip/"):
        await FaceAnimate("9").run(Ctx(), face, "wav2lip", idle_seconds=1.0)
    with pytest.raises(NodeInputError, match="SadTalker_V0.0.2_256.safetensors"):
        await FaceAnimate("9").run(Ctx(), face, "sadtalker", idle_seconds=1.0)


@pytest.mark.weights
def test_wav2lip_official_checkpoint_loads(face):
    from nodes.face.checkpoints import wav2lip_checkpoint
    from nodes.face.wav2lip import load_model

    try:
        path = wav2lip_checkpoint()
    except FileNotFoundError:
        pytest.skip("no official Wav2Lip checkpoint in models/wav2lip/wav2lip-gan/ or models/wav2lip/wav2lip/")
    model = load_model(path)
    with torch.inference_mode():
        assert model(torch.zeros(1, 1, 80, 16), torch.rand(1, 6, 96, 96)).shape == (1, 3, 96, 96)


# ------------------------------------------------------------------------------------------------ SadTalker

def test_sadtalker_networks_have_the_official_shapes(sadtalker_models):
    from nodes.face.sadtalker import PARAMS

    models = sadtalker_models
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    assert abs(sum(counts.values()) - PARAMS) < 1e5
    gen = models["generator"].state_dict()
    assert tuple(gen["decoder.G_middle_0.conv_0.weight_orig"].shape) == (512, 512, 3, 3)  # spectral norm
    assert tuple(gen["dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"].shape) == (64, 80, 3, 3, 3)
    assert tuple(gen["dense_motion_network.occlusion.weight"].shape) == (1, 112 * 16, 7, 7)
    assert tuple(models["kp"].state_dict()["predictor.conv.weight"].shape) == (16384, 1024, 1, 1)
    assert tuple(models["mapping"].state_dict()["first.0.weight"].shape) == (1024, 70, 7)
    assert tuple(models["exp"].state_dict()["mapping1.weight"].shape) == (64, 577)
    pose = models["pose"].state_dict()
    assert tuple(pose["netG.decoder.MLP.L0.weight"].shape) == (128, 64 + 32 * 6 + 6)
    assert tuple(pose["netG.decoder.classbias"].shape) == (46, 64)
    assert tuple(models["recon"].state_dict()["final_layers.1.weight"].shape) == (64, 2048, 1, 1)


def test_sadtalker_checkpoint_files_load_and_mismatches_are_named(tmp_path: Path, sadtalker_models):
    from safetensors.torch import save_file

    from nodes.face.sadtalker import PREFIXES, CheckpointMismatch, load_models

    models = sadtalker_models
    prefix_of = {v: k for k, v in PREFIXES.items()}
    tensors = {f"{prefix_of[name]}.{k}": v.contiguous() for name, m in models.items() if name != "mapping"
               for k, v in m.state_dict().items()}
    tensors["he_estimator.fc_t.weight"] = torch.zeros(3, 8)  # in the official file, unused at inference
    save_file(tensors, str(tmp_path / "SadTalker_V0.0.2_256.safetensors"))
    torch.save({"mapping": models["mapping"].state_dict(), "epoch": 229}, tmp_path / "mapping_00229-model.pth.tar")
    loaded = load_models(tmp_path, 256, "crop")
    w = "decoder.up_1.conv_1.weight_orig"
    assert torch.equal(loaded["generator"].state_dict()[w], models["generator"].state_dict()[w])

    tensors["generator.decoder.fc.weight"] = torch.zeros(7, 7)
    save_file(tensors, str(tmp_path / "SadTalker_V0.0.2_256.safetensors"))
    with pytest.raises(CheckpointMismatch, match="generator weights.*shape mismatch.*decoder.fc.weight"):
        load_models(tmp_path, 256, "crop")
    with pytest.raises(FileNotFoundError, match="mapping_00109-model.pth.tar"):
        load_models(tmp_path, 256, "full")


def test_sadtalker_audio_to_coefficients(face, sadtalker_models):
    from nodes.face.sadtalker import SadTalkerBackend

    backend = SadTalkerBackend(face, sadtalker_models, size=128)
    n = 40
    audio = _voice(n / 25, 16000)
    mels = backend.mel_windows(audio, n)
    assert mels.shape == (n, 80, 16) and -4 <= mels.min() and mels.max() <= 4
    coeffs = backend.coefficients(audio, n)
    assert coeffs.shape == (n, 70) and np.isfinite(coeffs).all()
    # the pose starts at the photo's pose (the first frame is the reference) and is smoothed
    assert np.abs(coeffs[0, 64:] - backend._source[64:70]).max() < 0.5


@pytest.mark.slow
def test_sadtalker_renders_frames_end_to_end(face, sadtalker_models):
    """The whole path, photo + audio -> frames, at 128x128 with random weights (slow on a CPU)."""
    from nodes.face.sadtalker import SadTalkerBackend

    backend = SadTalkerBackend(face, sadtalker_models, size=128, batch_size=2)
    pump = FramePump(backend)
    sr = 24000
    frames = pump.audio(_voice(0.08, sr), sr, 0.0)
    assert frames == []  # SadTalker renders the whole utterance at the end
    frames = pump.finish()
    assert len(frames) == 2 and frames[0].image.shape == (512, 512, 3) and frames[1].index == 1
