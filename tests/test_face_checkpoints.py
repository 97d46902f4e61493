"""Bring-your-own checkpoints, as a user has them: files with the official names, key layouts and formats (random
weights; the layouts are recorded from the official architectures in test_face_official_layouts.json), put where
models/README.md, the manifest and `models list` say (models/<kind>/<id>/), loaded THROUGH THE NODES, which run,
keep their models pinned while they run, and produce frames that make an MP4 of the right length."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")

from engine.files.folders import folders  # noqa: E402
from nodes.io.media import Audio  # noqa: E402

LAYOUTS = json.loads(Path(__file__).with_name("test_face_official_layouts.json").read_text())
FPS = 25


# ------------------------------------------------------------------------------------------------ helpers

def random_tensors(layout: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for an official key layout: fan-in scaled convolutions/linears, unit norms, zero biases."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.tensor(0, dtype=torch.int64)
        elif leaf == "running_var" or (leaf == "weight" and len(shape) == 1):
            out[key] = torch.ones(shape)
        elif leaf in ("bias", "running_mean"):
            out[key] = torch.zeros(shape)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else max(1, shape[0])
            out[key] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    return out


def write_wav2lip(path: Path, seed: int) -> None:
    """As Wav2Lip's train.py saves: DataParallel keys under 'state_dict', the Adam state, step and epoch, in
    torch's legacy (non-zip) serialization."""
    state = {f"module.{k}": v for k, v in random_tensors(LAYOUTS["wav2lip"], seed).items()}
    first = next(k for k in state if k.endswith("weight"))
    optimizer = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(state[first]),
                               "exp_avg_sq": torch.zeros_like(state[first])}},
                 "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                                   "amsgrad": False, "params": list(range(len(state)))}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "optimizer": optimizer, "global_step": 1000, "global_epoch": 10}, path,
               _use_new_zipfile_serialization=False)


def write_sadtalker(folder: Path, seed: int, size: int = 256) -> None:
    """SadTalker_V0.0.2_<size>.safetensors (kp_extractor., generator., audio2exp., audio2pose., face_3drecon.) and
    the two mapping files {'mapping': ..., 'optimizer_mapping', 'epoch'}."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(random_tensors(LAYOUTS["sadtalker_safetensors"], seed), str(folder / f"SadTalker_V0.0.2_{size}.safetensors"))
    for name, layout, epoch in (("mapping_00229-model.pth.tar", "mapping_70", 229),
                                ("mapping_00109-model.pth.tar", "mapping_73", 109)):
        torch.save({"mapping": random_tensors(LAYOUTS[layout], seed + epoch), "discriminator": {},
                    "optimizer_mapping": {"state": {}, "param_groups": [{"lr": 2e-4, "params": []}]},
                    "optimizer_discriminator": {}, "epoch": epoch}, folder / name)


def voice(seconds: float, sr: int = 16000) -> Audio:
    t = np.arange(int(round(seconds * sr))) / sr
    samples = 0.3 * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * np.sin(2 * np.pi * 180 * t)
    return Audio(samples.astype(np.float32), sr)


def node_context(models=None, node_id: str = "9"):
    from engine.graph.context import NodeContext

    return NodeContext(node_id=node_id, class_type="FaceAnimate", prompt_id="p", loop=asyncio.get_running_loop(),
                       emit=lambda event: None, interrupted=threading.Event(), models=models)


async def collect(stream) -> list:
    return [frame async for frame in stream]


def write_and_probe_mp4(frames: list, path: Path) -> tuple[int, float]:
    """Encode the frames with the audio they carry (the project's MP4 writer); (video frames, duration s) read back."""
    import av

    from nodes.render.mp4 import Mp4Writer

    h, w = frames[0].image.shape[:2]
    writer = Mp4Writer(path, width=w - w % 2, height=h - h % 2, fps=FPS)
    for frame in frames:
        writer.write(frame.image)
        if frame.audio is not None:
            writer.add_audio(frame.audio, frame.sample_rate)
    writer.finish()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        duration = float(container.duration) / av.time_base
    return count, duration


@pytest.fixture(scope="module")
def face():
    from nodes.face.prepare import prepare_avatar

    return prepare_avatar(skdata.astronaut())


@pytest.fixture(scope="module")
def wide_face():
    """The astronaut inside a wider photo, so frames pasted back into the photo have the photo's size."""
    from nodes.face.prepare import prepare_avatar

    photo = np.pad(skdata.astronaut(), ((24, 24), (64, 64), (0, 0)), mode="edge")
    return prepare_avatar(photo)


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setattr(folders, "models_dir", root)
    return root


def catalogue(models_dir: Path):
    from engine.models.catalogue import default_store

    return default_store(models_dir)


# ------------------------------------------------------------------------------------------------ layout

def test_recorded_layouts_are_the_official_ones():
    """The recorded layouts carry the release's distinguishing facts (guards against a silently edited file)."""
    st = LAYOUTS["sadtalker_safetensors"]
    assert sorted({k.split(".")[0] for k in st}) == ["audio2exp", "audio2pose", "face_3drecon", "generator",
                                                     "kp_extractor"]
    assert LAYOUTS["mapping_70"]["first.0.weight"] == [1024, 70, 7]
    assert LAYOUTS["mapping_73"]["first.0.weight"] == [1024, 73, 7]
    assert LAYOUTS["wav2lip"]["face_encoder_blocks.0.0.conv_block.0.weight"] == [16, 6, 7, 7]
    assert sum(math.prod(s) for k, s in LAYOUTS["wav2lip"].items() if not k.endswith("num_batches_tracked")
               and "running" not in k) == 36_298_035


def test_manifest_readme_and_loaders_name_the_same_folders(models_dir: Path):
    from nodes.face import checkpoints as C

    store = catalogue(models_dir)
    readme = (Path(__file__).resolve().parent.parent / "models" / "README.md").read_text()
    for model_id, rel in ((C.WAV2LIP, "wav2lip/wav2lip"), (C.WAV2LIP_GAN, "wav2lip/wav2lip-gan"),
                          (C.SADTALKER, "sadtalker/sadtalker-v0.0.2"), (C.XTTS, "xtts/xtts-v2")):
        assert store.folder(model_id) == C.model_folder(model_id) == models_dir / rel
        assert f"`models/{rel}/`" in readme
        assert f"models/{rel}/" in store.entry(model_id).source.instructions
    from nodes.speak.backends.xtts import checkpoint_dir

    assert checkpoint_dir("default") == checkpoint_dir("base") == models_dir / "xtts" / "xtts-v2"


# ------------------------------------------------------------------------------------------------ Wav2Lip

@pytest.mark.parametrize("model_id,name", [("wav2lip", "wav2lip.pth"), ("wav2lip-gan", "wav2lip_gan.pth")])
async def test_wav2lip_official_files_load_through_the_node(model_id, name, models_dir, face, tmp_path):
    from engine.models.manager import ModelManager
    from engine.graph.node import NodeInputError
    from nodes.face.nodes import FaceAnimate

    store = catalogue(models_dir)
    assert store.status(model_id) == "user-supplied, missing"
    # In the old place (models/wav2lip/): not loaded, and the error says where to move it.
    write_wav2lip(models_dir / "wav2lip" / name, seed=1)
    with pytest.raises(NodeInputError, match=f"move it.*{model_id}"):
        await FaceAnimate("9").run(node_context(), face, "wav2lip", audio=voice(0.4))
    assert store.status(model_id) == "user-supplied, missing"

    (models_dir / "wav2lip" / name).rename(store.folder(model_id).mkdir(parents=True) or store.folder(model_id) / name)
    assert store.status(model_id) == "installed"
    manager = ModelManager(vram_budget_bytes=8 * 2**30, device="cuda-sim")
    ctx = node_context(manager)
    (stream,) = await FaceAnimate("9").run(ctx, face, "wav2lip", audio=voice(0.4))
    (info,) = manager.loaded()
    assert info.id == f"wav2lip:{name}" and "p/9" in info.pinned_by  # pinned for the run
    frames = await collect(stream)
    ctx.release_models()  # what the executor does when the node has finished
    assert manager.loaded()[0].pinned_by == ()
    assert len(frames) == 10 and frames[0].image.shape == (512, 512, 3)
    count, duration = write_and_probe_mp4(frames, tmp_path / "w2l.mp4")
    assert count == 10 and abs(duration - 0.4) <= 1.0 / FPS


def test_wav2lip_prefers_the_gan_checkpoint(models_dir):
    from nodes.face.checkpoints import wav2lip_checkpoint

    write_wav2lip(models_dir / "wav2lip" / "wav2lip" / "wav2lip.pth", seed=1)
    assert wav2lip_checkpoint().name == "wav2lip.pth"
    write_wav2lip(models_dir / "wav2lip" / "wav2lip-gan" / "wav2lip_gan.pth", seed=2)
    assert wav2lip_checkpoint().name == "wav2lip_gan.pth"


# ------------------------------------------------------------------------------------------------ SadTalker

async def test_sadtalker_tells_where_each_file_goes(models_dir, face):
    from engine.graph.node import NodeInputError
    from nodes.face.nodes import FaceAnimate

    folder = models_dir / "sadtalker"
    folder.mkdir()
    (folder / "mapping_00229-model.pth.tar").write_bytes(b"x")  # the old layout
    with pytest.raises(NodeInputError, match=r"SadTalker_V0\.0\.2_256\.safetensors, mapping_00229-model\.pth\.tar "
                                             r"in .*sadtalker-v0\.0\.2/.*move it"):
        await FaceAnimate("9").run(node_context(), face, "sadtalker", audio=voice(0.2))


@pytest.mark.slow
async def test_sadtalker_official_files_crop_and_full_through_the_nodes(models_dir, face, wide_face, tmp_path):
    """Crop (mapping_00229, 70 coefficients) from FaceAnimate and the SadTalker node; full (mapping_00109, 73) from
    FaceAnimate's backend "sadtalker-full": frames of the whole photo. Three frames each keep the CPU time down."""
    from engine.models.manager import ModelManager
    from nodes.face.nodes import FaceAnimate, SadTalker

    store = catalogue(models_dir)
    write_sadtalker(store.folder("sadtalker-v0.0.2"), seed=3)
    assert store.status("sadtalker-v0.0.2") == "installed"
    manager = ModelManager(vram_budget_bytes=8 * 2**30, device="cuda-sim")

    ctx = node_context(manager)
    (stream,) = await FaceAnimate("9").run(ctx, face, "sadtalker", audio=voice(0.12))
    assert {i.id for i in manager.loaded()} == {"sadtalker:256:crop"}
    assert "p/9" in manager.loaded()[0].pinned_by
    crop = await collect(stream)
    ctx.release_models()
    assert len(crop) == 3 and crop[0].image.shape == (512, 512, 3)

    ctx = node_context(manager, node_id="10")
    (stream,) = await FaceAnimate("10").run(ctx, wide_face, "sadtalker-full", audio=voice(0.12))
    full_model = next(i for i in manager.loaded() if i.id == "sadtalker:256:full")
    assert "p/10" in full_model.pinned_by
    full = await collect(stream)
    ctx.release_models()
    assert len(full) == 3 and full[0].image.shape == wide_face.photo.shape
    count, duration = write_and_probe_mp4(full, tmp_path / "full.mp4")
    assert count == 3 and abs(duration - 0.12) <= 1.0 / FPS

    # The SadTalker node itself, crop mode, reusing the loaded crop model.
    ctx = node_context(manager, node_id="11")
    (stream,) = await SadTalker("11").run(ctx, skdata.astronaut(), voice(0.08), 256, "crop")
    frames = await collect(stream)
    ctx.release_models()
    assert len(frames) == 2
    count, duration = write_and_probe_mp4(frames, tmp_path / "crop.mp4")
    assert count == 2 and abs(duration - 0.08) <= 1.0 / FPS


def test_sadtalker_full_mapping_is_built_with_73_coefficients(models_dir):
    from nodes.face.sadtalker import CheckpointMismatch, load_models

    folder = models_dir / "sadtalker" / "sadtalker-v0.0.2"
    write_sadtalker(folder, seed=4)
    assert load_models(None, 256, "full")["mapping"].first[0].weight.shape[1] == 73
    # a crop mapping file under the full-mode name is refused with the reason
    (folder / "mapping_00229-model.pth.tar").replace(folder / "mapping_00109-model.pth.tar")
    with pytest.raises(CheckpointMismatch, match="70 coefficients.*full mode uses 73"):
        load_models(None, 256, "full")


# ------------------------------------------------------------------------------------------------ XTTS-v2

def test_xtts_v2_official_folder_is_what_the_tts_node_reads(models_dir):
    pytest.importorskip("TTS")
    from nodes.speak.backends.xtts import XttsBackend, write_random_checkpoint

    store = catalogue(models_dir)
    backend = XttsBackend()
    assert "lacks model.pth" in (backend.missing("en", "default") or "")
    assert store.status("xtts-v2") == "user-supplied, missing"
    write_random_checkpoint(store.folder("xtts-v2"))
    assert store.status("xtts-v2") == "installed"
    assert backend.missing("en", "default") is None
    synth = backend.load("en", "default")
    assert synth.folder == models_dir / "xtts" / "xtts-v2" and synth.name == "default"


def test_models_list_shows_where_each_file_goes_and_misplaced_files(models_dir):
    from engine.app.models_cli import cli_list

    write_wav2lip(models_dir / "wav2lip" / "wav2lip_gan.pth", seed=5)  # the old place
    text = cli_list(catalogue(models_dir))
    row = next(line for line in text.splitlines() if line.startswith("wav2lip-gan "))
    assert "user-supplied, missing" in row and row.rstrip().endswith("wav2lip/wav2lip-gan/")
    assert (f"wav2lip-gan: {models_dir}/wav2lip/wav2lip-gan/ <- wav2lip_gan.pth; move wav2lip_gan.pth from "
            f"{models_dir}/wav2lip/ into {models_dir}/wav2lip/wav2lip-gan/") in text
    assert f"sadtalker-v0.0.2: {models_dir}/sadtalker/sadtalker-v0.0.2/ <- SadTalker_V0.0.2_256.safetensors" in text


def test_manager_counts_what_a_loaded_model_measurably_takes():
    """Declared sizes are only the first estimate: after the load the manager counts the model's real bytes (on a
    CUDA device the allocation the load added; this CPU-only test covers the tensor-bytes path)."""
    from torch import nn

    from engine.models.manager import ModelManager
    from engine.models.spec import ModelSpec

    real = (64 * 64 + 64) * 4
    mm = ModelManager(vram_budget_bytes=10 * real, device="cuda-sim", reserve_bytes=0)
    mm.register(ModelSpec(id="m", kind="test", size_bytes=1, load=lambda dev: {"net": nn.Linear(64, 64)}))
    mm.get("m")
    assert mm.loaded()[0].size_bytes == real
    assert mm.used("cuda-sim") == real  # what the budget counts


def test_full_preprocess_pastes_any_backend_back_into_the_photo(wide_face):
    from nodes.face.nodes import make_backend
    from nodes.face.stream import FramePump

    pump = FramePump(make_backend("default", wide_face, None, preprocess="full"))
    a = voice(0.2)
    frames = pump.audio(a.samples, a.sample_rate, 0.0) + pump.finish()
    assert len(frames) == 5 and frames[0].image.shape == wide_face.photo.shape
    # outside the face the photo is untouched
    assert np.array_equal(frames[0].image[:8, :8], wide_face.photo[:8, :8])
