"""Rendering one frame of the default animator: an inverse warp of the crop plus the inner mouth."""

from __future__ import annotations

import math

import numpy as np

from nodes.face import avatar as A
from nodes.face.animator.drive import FrameControls
from nodes.face.animator.rig import CONTROLS, GRID_STEP, Rig
from nodes.face.avatar import FaceAvatar

_JAW = CONTROLS.index("jaw")
FIXED_POINT_ITERATIONS = 6
DAMPING = 0.6  # damped iteration: converges where the warp stretches up to ~2.3x (the opening mouth)

CAVITY_DEEP = np.array([30, 12, 14], np.float32)
CAVITY_EDGE = np.array([80, 38, 40], np.float32)
TEETH = np.array([228, 222, 210], np.float32)
TONGUE = np.array([132, 60, 64], np.float32)


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

    # ------------------------------------------------------------------ inner mouth
    def paint_mouth(self, frame: np.ndarray, c: FrameControls) -> None:
        jaw = float(c.amps[_JAW])
        if jaw < 0.02:
            return
        cv2 = self.cv2
        upper = self.moved_landmarks(c, A.UPPER_LIP_INNER)
        lower = self.moved_landmarks(c, A.LOWER_LIP_INNER)
        poly = np.concatenate([upper, lower[::-1][1:-1]])
        centre = poly.mean(0)
        poly = centre + (poly - centre) * (0.9, 1.0)  # keep the cavity inside the lip corners
        gap = float(np.linalg.norm(lower[5] - upper[5]))
        if gap < 1.0:
            return
        lo = np.floor(poly.min(0)).astype(int) - 4
        hi = np.ceil(poly.max(0)).astype(int) + 4
        lo = np.clip(lo, 0, self.size - 1)
        hi = np.clip(hi, 1, self.size)
        w, h = hi - lo
        if w < 4 or h < 4:
            return
        shift = 4  # sub-pixel precision for fillPoly
        to_roi = lambda pts: np.round((pts - lo) * (1 << shift)).astype(np.int32)  # noqa: E731
        cavity = np.zeros((h, w), np.uint8)
        cv2.fillPoly(cavity, [to_roi(poly)], 255, cv2.LINE_AA, shift)
        mw = float(np.linalg.norm(upper[-1] - upper[0]))
        ys = (np.arange(h, dtype=np.float32) + lo[1])[:, None]
        # Cavity shading: darker in the middle, lighter towards the lips.
        mid_y = (upper[5, 1] + lower[5, 1]) / 2
        depth = np.clip(1.0 - np.abs(ys - mid_y) / max(gap / 2, 1.0), 0, 1)[..., None]
        colour = CAVITY_EDGE + (CAVITY_DEEP - CAVITY_EDGE) * depth
        colour = np.broadcast_to(colour, (h, w, 3)).copy()
        # Tongue: a low ellipse behind the lower teeth when the mouth is well open.
        if gap > 0.12 * mw:
            t_centre = (lower[5] - lo + (0, -0.15 * gap)) * (1 << shift)
            axes = (0.28 * mw * (1 << shift), 0.35 * gap * (1 << shift))
            tongue = np.zeros((h, w), np.uint8)
            cv2.ellipse(tongue, (int(t_centre[0]), int(t_centre[1])), (int(axes[0]), int(axes[1])), 0, 180, 360,
                        255, -1, cv2.LINE_AA, shift)
            t = (tongue.astype(np.float32) / 255.0)[..., None]
            colour += (TONGUE - colour) * t * 0.7
        # Teeth: bands under the upper lip and above the lower lip, narrower than the mouth.
        for contour, height, tone, trim in ((upper, min(0.10 * mw, 0.42 * gap), 1.0, 2),
                                            (lower, -min(0.035 * mw, 0.14 * gap), 0.78, 3)):
            if abs(height) < 0.8:
                continue
            inner = contour[trim:-trim]
            band = np.concatenate([inner, inner[::-1] + (0, height)])
            teeth = np.zeros((h, w), np.uint8)
            cv2.fillPoly(teeth, [to_roi(band)], 255, cv2.LINE_AA, shift)
            xs = (np.arange(w, dtype=np.float32) + lo[0])[None, :]
            cx = (contour[0, 0] + contour[-1, 0]) / 2
            shade = np.clip(1.0 - 0.55 * (np.abs(xs - cx) / max(mw / 2, 1.0)) ** 2, 0.35, 1.0)
            t = (teeth.astype(np.float32) / 255.0 * shade)[..., None]
            colour += (TEETH * tone - colour) * t
        alpha = cv2.GaussianBlur(cavity, (3, 3), 0).astype(np.float32) / 255.0
        xs = (np.arange(w, dtype=np.float32) + lo[0])[None, :]
        taper = 1.0 - np.clip(np.abs(xs - centre[0]) / max(0.5 * mw * 0.9, 1.0), 0, 1) ** 6  # fade at the corners
        alpha *= taper * min(1.0, (jaw - 0.02) / 0.12)
        roi = frame[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
        roi += (colour - roi) * alpha[..., None]
        frame[lo[1]:hi[1], lo[0]:hi[0]] = roi.astype(np.uint8)

    def render(self, c: FrameControls) -> np.ndarray:
        frame = self.warp(c)
        self.paint_mouth(frame, c)
        return frame
