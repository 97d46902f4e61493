"""Wav2Lip backend: the official checkpoints (``models/wav2lip/wav2lip-gan/wav2lip_gan.pth``, else
``models/wav2lip/wav2lip/wav2lip.pth``; see ``nodes.face.checkpoints``) on our own implementation of the
architecture (``_arch``), fed by our mel front end (``mel``).

Per frame: the face box (from the avatar's landmarks, like S3FD's box with 10 px below the chin) is resized to
96x96; the model sees it with its lower half masked plus the unmasked reference, and the mel window that starts
at the frame (0.2 s of audio); the generated face is resized back and pasted over the lower face with a feathered
mask. Base frames come from the default animator with the mouth held closed and the head still (so it blinks and
shows the emotion), which keeps the box fixed.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from nodes.common.audio import StreamResampler
from nodes.face import avatar as A
from nodes.face.avatar import FaceAvatar
from nodes.face.wav2lip import mel as M

log = logging.getLogger(__name__)

FACE_SIZE = 96
BOX_PAD_BOTTOM = 10  # the official inference pads S3FD's box by 10 px below
PARAMS = 36_298_035  # parameters of the generator (for the memory estimate)


class CheckpointMismatch(ValueError):
    """The checkpoint's keys or shapes do not match the architecture."""


def build_model():
    from nodes.face.wav2lip._arch import Wav2Lip

    return Wav2Lip()


def read_state_dict(path: Path) -> dict[str, Any]:
    """The generator's tensors from an official checkpoint ({'state_dict': ...}, 'module.' prefixes removed)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointMismatch(f"{path.name} is not a readable PyTorch checkpoint: {exc}") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointMismatch(f"{path.name}: expected a dict with 'state_dict', got {type(ckpt).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_state_dict(model, state: dict[str, Any], source: str) -> None:
    """Raise ``CheckpointMismatch`` naming missing/unexpected keys and shape differences."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
        raise CheckpointMismatch(f"{source} is not a Wav2Lip (96x96) generator checkpoint: " + "; ".join(parts)
                                 + ". Use the official wav2lip.pth or wav2lip_gan.pth.")


def load_model(path: Path, device: str = "cpu"):
    model = build_model()
    state = read_state_dict(path)
    check_state_dict(model, state, path.name)
    model.load_state_dict(state)
    return model.eval().to(device)


def model_spec(path: Path):
    from engine.models.manager import ModelSpec

    return ModelSpec(id=f"wav2lip:{path.name}", kind="wav2lip", size_bytes=PARAMS * 4,
                     load=lambda device: load_model(path, device), to_device=lambda m, d: m.to(d),
                     inference_bytes=256 * 2**20)


def face_box(face: FaceAvatar) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the face as a face detector frames it: brows to chin + 10 px, cheek to cheek."""
    oval = face.points(A.FACE_OVAL)
    brows = np.vstack([face.points(A.RIGHT_BROW), face.points(A.LEFT_BROW)])
    x0, x1 = oval[:, 0].min(), oval[:, 0].max()
    y0 = brows[:, 1].min() - 0.1 * (oval[:, 1].max() - brows[:, 1].min())
    y1 = face.landmarks[A.CHIN, 1] + BOX_PAD_BOTTOM
    s = face.size
    return int(max(0, x0)), int(max(0, y0)), int(min(s, np.ceil(x1))), int(min(s, np.ceil(y1)))


def paste_mask(box: tuple[int, int, int, int], face: FaceAvatar) -> np.ndarray:
    """A feathered mask over the lower face inside the box (jaw, mouth, chin), (h, w) float32 in [0, 1]."""
    import cv2

    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    mask = np.zeros((h, w), np.float32)
    nose_y = face.landmarks[A.NOSE_TIP, 1] - y0
    jaw = face.points(A.JAW_LOWER) - (x0, y0)
    cheeks = face.points((234, 93, 132, 58, 172)) - (x0, y0)
    cheeks_r = face.points((454, 323, 361, 288, 397)) - (x0, y0)
    poly = np.concatenate([cheeks[[0]] * (1, 0) + (0, nose_y), cheeks, jaw, cheeks_r[::-1],
                           cheeks_r[[0]] * (1, 0) + (0, nose_y)])
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1.0)
    feather = max(3.0, 0.04 * w)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=int(feather))
    return cv2.GaussianBlur(mask, (0, 0), feather)


class Wav2LipBackend:
    """FaceBackend: holds frames back until the 0.2 s of audio after them has arrived, then renders in batches."""

    name = "wav2lip"

    def __init__(self, face: FaceAvatar, model, device: str = "cpu", batch_size: int = 8, seed: int = 0) -> None:
        from nodes.face.animator import DefaultAnimator

        self.face = face
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.base = DefaultAnimator(face, seed=seed)
        self.box = face_box(face)
        self.mask = paste_mask(self.box, face)[..., None]
        self._audio = np.zeros(0, np.float32)  # 16 kHz stream samples from self._offset on
        self._offset = 0
        self._total = 0  # 16 kHz samples received
        self._resample = StreamResampler(M.SAMPLE_RATE)
        self._pending: deque[tuple[int, np.ndarray]] = deque()  # (frame index, base image)
        self._next_index = 0

    @classmethod
    def from_context(cls, face: FaceAvatar, ctx: Any = None, checkpoint: str | Path | None = None,
                     **options: Any) -> "Wav2LipBackend":
        from nodes.face.checkpoints import use_model, wav2lip_checkpoint

        path = Path(checkpoint) if checkpoint else wav2lip_checkpoint()
        model = use_model(ctx, model_spec(path))
        device = str(next(model.parameters()).device)
        return cls(face, model, device=device, **options)

    # ---------------------------------------------------------------- audio
    def _add_audio(self, samples: np.ndarray, rate: int) -> None:
        samples = self._resample(samples, rate)
        self._audio = np.concatenate([self._audio, np.asarray(samples, np.float32)])
        self._total += len(samples)

    def _ready(self, index: int) -> bool:
        last_mel = M.window_for_frame(index) + M.MEL_STEP - 1
        return self._total >= last_mel * M.HOP + M.N_FFT // 2 + 1

    # ---------------------------------------------------------------- FaceBackend
    def push(self, item) -> list[np.ndarray]:
        from nodes.face.animator.drive import FrameControls

        self._add_audio(item.samples, item.sample_rate)
        controls = self.base.driver.step(None, emotion=item.emotion)
        amps = controls.amps.copy()
        for name in ("jaw", "spread", "round"):
            amps[self.base.rig_controls.index(name)] = 0.0
        still = FrameControls(amps=amps)
        self._pending.append((self._next_index, self.base.renderer.render(still)))
        self._next_index += 1
        n_ready = 0
        for index, _ in self._pending:
            if not self._ready(index):
                break
            n_ready += 1
        if n_ready < self.batch_size:  # wait for a full batch (latency: batch / 25 s + 0.2 s of audio)
            return []
        ready = [self._pending.popleft() for _ in range(n_ready - n_ready % self.batch_size)]
        return self._render(ready)

    def flush(self) -> list[np.ndarray]:
        items = list(self._pending)
        self._pending.clear()
        return self._render(items)

    def _render(self, items: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        out = []
        for k in range(0, len(items), self.batch_size):
            out += self._render_batch(items[k:k + self.batch_size])
        if items:  # forget audio no later frame needs
            keep_from = max(0, (M.window_for_frame(self._next_index - len(self._pending)) - 8) * M.HOP)
            if keep_from > self._offset:
                self._audio = self._audio[keep_from - self._offset:]
                self._offset = keep_from
        return out

    def _render_batch(self, items: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        import cv2
        import torch

        if not items:
            return []
        x0, y0, x1, y1 = self.box
        faces, mels = [], []
        for index, image in items:
            crop = cv2.resize(image[y0:y1, x0:x1], (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
            bgr = crop[..., ::-1].astype(np.float32) / 255.0
            masked = bgr.copy()
            masked[FACE_SIZE // 2:] = 0.0
            faces.append(np.concatenate([masked, bgr], axis=2).transpose(2, 0, 1))
            mels.append(M.mel_frames(self._audio, M.window_for_frame(index), M.MEL_STEP, self._offset)[None])
        with torch.inference_mode():
            face_t = torch.from_numpy(np.stack(faces)).to(self.device)
            mel_t = torch.from_numpy(np.stack(mels)).to(self.device)
            pred = self.model(mel_t, face_t).float().cpu().numpy()  # (B, 3, 96, 96) BGR in [0, 1]
        out = []
        for (index, image), p in zip(items, pred):
            gen = (p.transpose(1, 2, 0)[..., ::-1] * 255.0).astype(np.float32)
            gen = cv2.resize(gen, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
            frame = image.copy()
            region = frame[y0:y1, x0:x1].astype(np.float32)
            frame[y0:y1, x0:x1] = np.clip(region + (gen - region) * self.mask, 0, 255).astype(np.uint8)
            out.append(frame)
        return out
