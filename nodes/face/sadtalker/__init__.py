"""SadTalker backend: the official checkpoints on our own implementation of its inference path (``_arch``).

Files in ``models/sadtalker/sadtalker-v0.0.2/`` (the user's copies of the official release; nothing is downloaded;
the folder comes from the model catalogue, see ``nodes.face.checkpoints``):

* ``SadTalker_V0.0.2_256.safetensors`` (or ``_512``): ``audio2exp.*``, ``audio2pose.*``, ``kp_extractor.*``,
  ``generator.*``, ``face_3drecon.*`` (and ``he_estimator.*``, unused at inference);
* ``mapping_00229-model.pth.tar`` (crop, 70 coefficients) / ``mapping_00109-model.pth.tar`` (full, 73: the 70
  plus the source's crop alignment s, tx, ty, held constant): ``{'mapping': ..., 'epoch', ...}``; the mapping net
  is built with the coefficient count the checkpoint has;
* ``similarity_Lm3D_all.mat`` (from SadTalker's ``src/config``): the 3D landmark template for aligning the photo
  for 3DMM reconstruction. Without it a template measured on our aligned crops is used (a close approximation).

Path: photo -> 5 landmarks (MediaPipe) -> 224 crop -> ReconNet -> source coefficients (expression 64, pose 6);
audio -> mel windows (frame i uses 16 mel frames from int(80 (i - 2) / 25)) -> ExpNet (10 frames at a time,
blink ratio) and PoseNet (32-frame CVAE windows, pose style, Savitzky-Golay smoothing) -> coefficients (T, 70)
-> 27-frame windows -> MappingNet -> 3D keypoints (canonical keypoints of the source, rotated, translated,
deformed) -> OcclusionAwareSPADEGenerator -> 256x256 (or 512) frames, resized to the 512 avatar crop.
Renders once the whole utterance is in (``flush``): SadTalker is not a streaming model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nodes.common.audio import StreamResampler
from nodes.face import avatar as A
from nodes.face.avatar import FaceAvatar
from nodes.face.wav2lip import mel as M

log = logging.getLogger(__name__)

PREFIXES = {"audio2exp": "exp", "audio2pose": "pose", "kp_extractor": "kp", "generator": "generator",
            "face_3drecon": "recon"}
UNUSED_PREFIXES = ("he_estimator.", "audio2pose.netD_motion.")
SEMANTIC_RADIUS = 13
PARAMS = 189_150_000
POSE_STYLES = 46

# 5 points (image-left eye, image-right eye, nose tip, mouth left, mouth right) of a frontal face in a 3D
# template (x right, y up, z towards the camera), measured from MediaPipe on our aligned crops; used only when
# the official similarity_Lm3D_all.mat is not supplied.
_TEMPLATE_5 = np.array([[-0.31, 0.29, 0.0], [0.31, 0.29, 0.0], [0.0, -0.02, 0.2], [-0.25, -0.36, 0.05],
                        [0.25, -0.36, 0.05]])


class CheckpointMismatch(ValueError):
    pass


MAPPING_FILES = {"crop": "mapping_00229-model.pth.tar", "full": "mapping_00109-model.pth.tar"}
MAPPING_COEFFS = {"crop": 70, "full": 73}  # the official facerender.yaml / facerender_still.yaml


def build_models(mapping_coeffs: int = 70) -> dict[str, Any]:
    from nodes.face.sadtalker import _arch

    return {"exp": _arch.ExpNet(), "pose": _arch.PoseNet(), "kp": _arch.KPDetector(),
            "generator": _arch.OcclusionAwareSPADEGenerator(), "mapping": _arch.MappingNet(coeff_nc=mapping_coeffs),
            "recon": _arch.ReconNet()}


def read_mapping(path: Path) -> dict[str, Any]:
    """The MappingNet tensors of an official ``mapping_*.pth.tar`` ({'mapping': state dict, 'epoch', ...})."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt["mapping"]
    except Exception as exc:
        raise CheckpointMismatch(f"{path.name}: expected a torch checkpoint with a 'mapping' entry ({exc})") from None
    return {k.removeprefix("module."): v for k, v in state.items()}


def mapping_coefficients(state: dict[str, Any], source: str) -> int:
    """How many 3DMM coefficients per frame the mapping net takes (70 crop, 73 full)."""
    first = state.get("first.0.weight")
    if first is None or first.ndim != 3:
        raise CheckpointMismatch(f"{source}: no 'first.0.weight' (Conv1d) in the mapping weights: is it "
                                 f"mapping_00229-model.pth.tar or mapping_00109-model.pth.tar?")
    return int(first.shape[1])


def _check(name: str, model, state: dict[str, Any], source: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
                 f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})" if shapes else ""]
        raise CheckpointMismatch(f"{source}: the {name} weights do not match SadTalker's architecture: "
                                 + "; ".join(p for p in parts if p)
                                 + ". Use the official SadTalker_V0.0.2_256/512.safetensors and mapping_*.pth.tar.")


def split_checkpoint(tensors: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """The safetensors file's tensors grouped per network (prefix removed)."""
    parts: dict[str, dict[str, Any]] = {v: {} for v in PREFIXES.values()}
    for key, value in tensors.items():
        if key.startswith(UNUSED_PREFIXES):
            continue
        prefix, _, rest = key.partition(".")
        if prefix not in PREFIXES:
            raise CheckpointMismatch(f"{source}: unexpected tensor {key!r}; expected prefixes "
                                     f"{', '.join(PREFIXES)}")
        parts[PREFIXES[prefix]][rest] = value
    empty = [k for k, v in parts.items() if not v]
    if empty:
        raise CheckpointMismatch(f"{source} has no weights for {', '.join(empty)}: is it SadTalker_V0.0.2_*.safetensors?")
    return parts


def checkpoint_files(directory: Path | None, size: int, preprocess: str) -> tuple[Path, Path]:
    """(SadTalker_V0.0.2_<size>.safetensors, mapping_*.pth.tar), from ``directory`` or the catalogue's folder
    ``models/sadtalker/sadtalker-v0.0.2/``; ``CheckpointMissing`` names what to put where."""
    from nodes.face.checkpoints import SADTALKER, CheckpointMissing, missing_message

    names = [f"SadTalker_V0.0.2_{size}.safetensors", MAPPING_FILES[preprocess]]
    if directory is not None:
        absent = [n for n in names if not (directory / n).is_file()]
        if absent:
            raise CheckpointMissing(f"SadTalker needs {', '.join(absent)} in {directory}/ (this project never "
                                    f"downloads weights)")
        return directory / names[0], directory / names[1]
    from nodes.face.checkpoints import model_folder

    folder = model_folder(SADTALKER)
    absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        raise CheckpointMissing(f"SadTalker ({preprocess}, {size} px) needs " + missing_message(SADTALKER, absent))
    return folder / names[0], folder / names[1]


def load_models(directory: Path | None, size: int = 256, preprocess: str = "crop",
                device: str = "cpu") -> dict[str, Any]:
    from safetensors.torch import load_file

    main, mapping = checkpoint_files(directory, size, preprocess)
    mapping_state = read_mapping(mapping)
    coeffs = mapping_coefficients(mapping_state, mapping.name)
    if coeffs != MAPPING_COEFFS[preprocess]:
        raise CheckpointMismatch(f"{mapping.name} takes {coeffs} coefficients per frame; SadTalker's {preprocess} "
                                 f"mode uses {MAPPING_COEFFS[preprocess]} ({MAPPING_FILES[preprocess]})")
    models = build_models(coeffs)
    parts = split_checkpoint(load_file(str(main)), main.name)
    parts["mapping"] = mapping_state
    for name, model in models.items():
        state = parts[name]
        _check(name, model, state, main.name if name != "mapping" else mapping.name)
        model.load_state_dict(state)
        model.eval().to(device)
    return models


def model_spec(directory: Path | None, size: int, preprocess: str):
    from engine.models.manager import ModelSpec

    checkpoint_files(directory, size, preprocess)  # a missing file is reported before anything registers

    # fp32 parameters: ExpNet 2.8 M, PoseNet 9.1 M, KPDetector 41.9 M, generator 101.0 M, MappingNet 10.2 M,
    # ReconNet 24.0 M = 189.2 M
    return ModelSpec(id=f"sadtalker:{size}:{preprocess}", kind="sadtalker", size_bytes=PARAMS * 4,
                     load=lambda device: load_models(directory, size, preprocess, device),
                     to_device=lambda ms, d: {k: m.to(d) for k, m in ms.items()},
                     inference_bytes=(1500 if size == 256 else 4000) * 2**20)


def load_template(directory: Path | None) -> np.ndarray:
    """The 5-point 3D template (similarity_Lm3D_all.mat when supplied)."""
    if directory is not None and (directory / "similarity_Lm3D_all.mat").is_file():
        from scipy.io import loadmat

        lm = loadmat(directory / "similarity_Lm3D_all.mat")["lm"]
        idx = np.array([31, 37, 40, 43, 46, 49, 55]) - 1
        five = np.stack([lm[idx[0]], lm[idx[[1, 2]]].mean(0), lm[idx[[3, 4]]].mean(0), lm[idx[5]], lm[idx[6]]])
        return five[[1, 2, 0, 3, 4]]
    log.warning("similarity_Lm3D_all.mat not found: aligning the photo for 3DMM with an approximate template")
    return _TEMPLATE_5


def five_points(face: FaceAvatar) -> np.ndarray:
    lm = face.landmarks
    return np.stack([face.points(A.RIGHT_EYE).mean(0), face.points(A.LEFT_EYE).mean(0), lm[A.NOSE_TIP],
                     lm[61], lm[291]]).astype(np.float64)


def align_for_recon(image: np.ndarray, lm5: np.ndarray, template: np.ndarray, target: int = 224,
                    rescale: float = 102.0) -> tuple[np.ndarray, np.ndarray]:
    """Deep3DFaceRecon's alignment: least-squares scale/translation of the template onto the 5 points, then a
    resize and 224x224 crop. Returns (crop uint8, [w0, h0, s, tx, ty])."""
    from PIL import Image

    h0, w0 = image.shape[:2]
    pts = lm5.copy()
    pts[:, 1] = h0 - 1 - pts[:, 1]
    n = len(pts)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = template
    a[0::2, 3] = 1
    a[1::2, 4:7] = template
    a[1::2, 7] = 1
    k = np.linalg.lstsq(a, pts.reshape(-1), rcond=None)[0]
    s_est = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    t = np.array([k[3], k[7]])
    s = rescale / s_est
    w, h = int(w0 * s), int(h0 * s)
    left = int(w / 2 - target / 2 + (t[0] - w0 / 2) * s)
    up = int(h / 2 - target / 2 + (h0 / 2 - t[1]) * s)
    img = Image.fromarray(image).resize((w, h), resample=Image.BICUBIC).crop((left, up, left + target, up + target))
    return np.asarray(img), np.array([w0, h0, s, t[0], t[1]], np.float32)


def blink_ratio(n: int, rng: np.random.Generator) -> np.ndarray:
    """Eye-blink control for ExpNet: 5-frame blinks every 0.4-2.8 s (as SadTalker's random blink sequence)."""
    ratio = np.zeros((n, 1), np.float32)
    if n <= 20:
        return ratio
    i = 0
    while True:
        i += int(rng.integers(min(10, n), max(min(10, n) + 1, min(n // 2, 70))))
        if i + 5 > n - 1:
            return ratio
        ratio[i:i + 5, 0] = (0.5, 0.9, 1.0, 0.9, 0.5)
        i += 5


@dataclass
class SadTalkerOptions:
    size: int = 256
    pose_style: int = 0
    expression_scale: float = 1.0
    still: bool = False
    batch_size: int = 2
    paste_back: bool = False
    seed: int = 0


class SadTalkerBackend:
    """FaceBackend: collects the utterance's audio, renders every frame at ``flush``."""

    name = "sadtalker"

    def __init__(self, face: FaceAvatar, models: dict[str, Any], template: np.ndarray | None = None,
                 device: str = "cpu", **options: Any) -> None:
        self.face = face
        self.models = models
        self.template = _TEMPLATE_5 if template is None else template
        self.device = device
        self.options = SadTalkerOptions(**options)
        self._audio: list[np.ndarray] = []
        self._frames = 0
        self._resample = StreamResampler(M.SAMPLE_RATE)

    @classmethod
    def from_context(cls, face: FaceAvatar, ctx: Any = None, directory: str | Path | None = None,
                     **options: Any) -> "SadTalkerBackend":
        from nodes.face.checkpoints import SADTALKER, model_folder, use_model

        directory = Path(directory) if directory else None
        size = int(options.get("size", 256))
        preprocess = "full" if options.get("paste_back") else "crop"
        models = use_model(ctx, model_spec(directory, size, preprocess))
        device = str(next(models["generator"].parameters()).device)
        return cls(face, models, template=load_template(directory or model_folder(SADTALKER)), device=device,
                   **options)

    # ---------------------------------------------------------------- FaceBackend
    def push(self, item) -> list[np.ndarray]:
        samples = self._resample(item.samples, item.sample_rate)
        self._audio.append(samples)
        self._frames += 1
        return []

    def flush(self) -> list[np.ndarray]:
        n = self._frames
        if n == 0:
            return []
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        self._audio, self._frames = [], 0
        coeffs = self.coefficients(audio, n)
        return self.render(coeffs)

    # ---------------------------------------------------------------- stages
    def source_coefficients(self) -> np.ndarray:
        """(73,) expression 64, angles 3, translation 3, alignment (s, tx, ty) of the avatar crop."""
        import torch

        crop, params = align_for_recon(self.face.image, five_points(self.face), self.template)
        x = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(self.device)
        with torch.inference_mode():
            c = self.models["recon"](x)[0].float().cpu().numpy()
        return np.concatenate([c[80:144], c[224:227], c[254:257], params[2:]]).astype(np.float32)

    def mel_windows(self, audio: np.ndarray, n: int) -> np.ndarray:
        """(n, 80, 16): frame i's window starts at mel frame int(80 (i - 2) / 25), indices clamped."""
        total = max(1, int(np.ceil(len(audio) / M.HOP)) + 1)
        spec = M.mel_frames(audio, 0, total)
        out = np.empty((n, M.N_MELS, M.MEL_STEP), np.float32)
        for i in range(n):
            start = int(M.MEL_FPS * (i - 2) / 25.0)
            idx = np.clip(np.arange(start, start + M.MEL_STEP), 0, total - 1)
            out[i] = spec[:, idx]
        return out

    def coefficients(self, audio: np.ndarray, n: int) -> np.ndarray:
        """(n, 70) expression + pose per frame, from the audio."""
        import torch
        from scipy.signal import savgol_filter

        o = self.options
        rng = np.random.default_rng(o.seed)
        src = self.source_coefficients()
        self._source = src
        mels = torch.from_numpy(self.mel_windows(audio, n)).to(self.device)  # (n, 80, 16)
        ratio = torch.from_numpy(blink_ratio(n, rng)).to(self.device)
        ref_exp = torch.from_numpy(np.repeat(src[None, :64], n, 0)).to(self.device)
        exp = []
        with torch.inference_mode():
            for i in range(0, n, 10):  # ExpNet works 10 frames at a time
                m = mels[i:i + 10]
                exp.append(self.models["exp"](m[:, None], ref_exp[None, i:i + 10], ratio[None, i:i + 10])[0])
            exp_t = torch.cat(exp).float().cpu().numpy() * o.expression_scale
            ref_pose = torch.from_numpy(src[None, 64:70]).to(self.device)
            gen = torch.Generator().manual_seed(o.seed)
            if n > 1:
                motion = self.models["pose"](mels[None, 1:, None], ref_pose, torch.tensor([o.pose_style]), gen)
                motion = torch.cat([torch.zeros(1, 1, 6), motion.float().cpu()], 1)[0].numpy()
            else:
                motion = np.zeros((1, 6), np.float32)
        pose = src[None, 64:70] + motion
        if n >= 3:
            win = 13 if n >= 13 else (n - 1) // 2 * 2 + 1
            if win > 2:
                pose = savgol_filter(pose, win, 2, axis=0)
        if o.still:
            pose[:] = src[None, 64:70]
        return np.concatenate([exp_t, pose], 1).astype(np.float32)

    def render(self, coeffs: np.ndarray) -> list[np.ndarray]:
        import cv2
        import torch

        from nodes.face.sadtalker._arch import transform_keypoints

        o = self.options
        n = len(coeffs)
        src_img = cv2.resize(self.face.image, (o.size, o.size), interpolation=cv2.INTER_AREA)
        source = torch.from_numpy(src_img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(self.device)
        n_coeffs = int(self.models["mapping"].first[0].weight.shape[1])  # 70 (crop) or 73 (full)
        if n_coeffs > 70:  # full: the source's crop alignment rides along, constant, as the official code does
            coeffs = np.concatenate([coeffs[:, :70], np.repeat(self._source[None, 70:n_coeffs], n, 0)], 1)
        src_sem = np.repeat(self._source[None, :n_coeffs], 2 * SEMANTIC_RADIUS + 1, 0).T[None]  # (1, C, 27)
        frames = []
        with torch.inference_mode():
            kp_canonical = self.models["kp"](source)
            he_source = self.models["mapping"](torch.from_numpy(src_sem).to(self.device))
            kp_source = transform_keypoints(kp_canonical, he_source)
            for start in range(0, n, o.batch_size):
                idx = range(start, min(n, start + o.batch_size))
                windows = np.stack([coeffs[np.clip(np.arange(i - SEMANTIC_RADIUS, i + SEMANTIC_RADIUS + 1), 0, n - 1)].T
                                    for i in idx])
                he = self.models["mapping"](torch.from_numpy(windows).to(self.device))
                b = len(windows)
                kp_driving = transform_keypoints(kp_canonical.expand(b, -1, -1), he)
                out = self.models["generator"](source.expand(b, -1, -1, -1), kp_driving, kp_source.expand(b, -1, -1))
                for img in (out.float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8):
                    frame = cv2.resize(img, (self.face.size, self.face.size), interpolation=cv2.INTER_CUBIC)
                    frames.append(self.face.paste_into_photo(frame) if o.paste_back else frame)
        return frames
