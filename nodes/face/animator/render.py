"""Rendering one frame of the default animator: an inverse warp of the crop, the inside of the mouth from her
own photo (``mouth``) and eyelids for blinks (``eyelids``)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nodes.face import avatar as A
from nodes.face.animator.drive import FrameControls
from nodes.face.animator.rig import CONTROLS, GRID_STEP, Rig
from nodes.face.avatar import FaceAvatar

_JAW = CONTROLS.index("jaw")
_BLINK = CONTROLS.index("blink")
FIXED_POINT_ITERATIONS = 6
DAMPING = 0.6  # damped iteration: converges where the warp stretches up to ~2.3x (the opening mouth)


class Renderer:
    def __init__(self, face: FaceAvatar, rig: Rig) -> None:
        import cv2

        self.cv2 = cv2
        self.face = face
        self.rig = rig
        self.image = np.ascontiguousarray(face.image)
        g = rig.grid
        coords = (np.arange(g, dtype=np.float32) + 0.5) * GRID_STEP - 0.5
        gx, gy = np.meshgrid(coords, coords)
        self.base = np.stack([gx, gy], -1)  # (G, G, 2) crop pixel coordinates of grid points
        self.size = face.size
        self.lm = face.landmarks.astype(np.float32)
        self._m = rig.head_mask
        self._mx = rig.head_mask * gx
        self._my = rig.head_mask * gy
        from nodes.face.animator.mouth import measure

        self.mouth = measure(face)

    # ------------------------------------------------------------------ warp
    def _backward_map(self, c: FrameControls) -> np.ndarray:
        cv2 = self.cv2
        rig = self.rig
        g = rig.grid
        disp = (c.amps @ rig.fields).reshape(g, g, 2)
        # Undo the rigid head motion (masked by the head mask m) and breathing at the output point x:
        # y = x + m * (R^-1 (x - pivot - shift) + pivot - x), expanded so only scalars change per frame.
        cos, sin = math.cos(c.roll), math.sin(c.roll)
        px, py = rig.pivot
        bx = -c.shift[0] * cos - c.shift[1] * sin + px - (cos * px + sin * py)
        by = c.shift[0] * sin - c.shift[1] * cos + py - (-sin * px + cos * py)
        y = self.base.copy()
        y[..., 0] += (cos - 1.0) * self._mx + sin * self._my + bx * self._m
        y[..., 1] += -sin * self._mx + (cos - 1.0) * self._my + by * self._m - c.breath
        # Invert the local deformation, s + D(s) = y, by damped fixed-point iteration on the grid.
        s = y.copy()
        to_grid = 1.0 / GRID_STEP
        for _ in range(FIXED_POINT_ITERATIONS):
            gxy = s * to_grid + (0.5 * to_grid - 0.5)
            d = cv2.remap(disp, gxy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            s += DAMPING * (y - d - s)
        return s

    def warp(self, c: FrameControls) -> np.ndarray:
        cv2 = self.cv2
        s = self._backward_map(c)
        full = cv2.resize(s, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return cv2.remap(self.image, full[..., 0], full[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def moved_landmarks(self, c: FrameControls, indices: tuple[int, ...]) -> np.ndarray:
        """Where the given landmarks are in the output frame (forward: deformation, then head motion)."""
        idx = list(indices)
        p = self.lm[idx] + np.tensordot(c.amps, self.rig.landmark_moves[:, idx], axes=1)
        g = self.rig.grid
        gi = np.clip(((p + 0.5) / GRID_STEP - 0.5).round().astype(int), 0, g - 1)
        m = self.rig.head_mask[gi[:, 1], gi[:, 0]][:, None]
        px, py = self.rig.pivot
        cos, sin = math.cos(c.roll), math.sin(c.roll)
        rx, ry = p[:, 0] - px, p[:, 1] - py
        h = np.stack([cos * rx - sin * ry + px + c.shift[0], sin * rx + cos * ry + py + c.shift[1]], 1)
        out = p + m * (h - p)
        out[:, 1] += c.breath
        return out

    # ------------------------------------------------------------------ mouth and eyelids
    def paint_mouth(self, frame: np.ndarray, c: FrameControls) -> None:
        from nodes.face.animator.mouth import paint_mouth

        jaw = float(c.amps[_JAW])
        if jaw < 0.02:
            return
        upper = self.moved_landmarks(c, A.UPPER_LIP_INNER)
        lower = self.moved_landmarks(c, A.LOWER_LIP_INNER)
        paint_mouth(frame, self.mouth, upper, lower, jaw)

    def blink(self, frame: np.ndarray, c: FrameControls, amount: float) -> None:
        """Eyelids closed by ``amount`` over the eyes where ``c`` (without its blink) puts them."""
        from nodes.face.animator.eyelids import EYES, close_eyelids

        if amount <= 0.01:
            return
        for upper_idx, lower_idx in EYES:
            close_eyelids(frame, self.moved_landmarks(c, upper_idx), self.moved_landmarks(c, lower_idx), amount)

    def render(self, c: FrameControls) -> np.ndarray:
        # Blinks are eyelids drawn over the eye, not a warp: the warp runs without the blink field, so glasses,
        # brows and hair around the eyes stay rigid.
        amps = c.amps.copy()
        amps[_BLINK] = 0.0
        still_eyes = dataclasses.replace(c, amps=amps)
        frame = self.warp(still_eyes)
        self.paint_mouth(frame, still_eyes)
        self.blink(frame, still_eyes, float(c.amps[_BLINK]))
        return frame
