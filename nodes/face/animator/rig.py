"""The rig of the default animator: displacement fields built once per avatar.

Each *control* (jaw open, lip spread, lip round, smile, blink, brows up, frown) is a forward displacement field
over the crop, interpolated with a thin-plate spline from displacements we design for the MediaPipe landmarks
(plus fixed anchors on the crop border and the neck). Fields are linear in their amplitude, so a frame's warp is
a weighted sum of fields, computed on a half-resolution grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nodes.face import avatar as A
from nodes.face.avatar import FaceAvatar

CONTROLS = ("jaw", "spread", "round", "smile", "blink", "brows_up", "frown")
GRID_STEP = 4  # the fields live on a (512 / GRID_STEP)^2 grid
MAX_LIP_GAP = 0.32  # the widest inner-lip gap at full jaw, in mouth widths (corner to corner)
MIN_JAW_DROP = 0.12  # the least the lower lip drops at full jaw, in mouth widths

# Landmarks that carry designed displacements (the TPS control points), besides anchors.
_CHEEKS = (50, 280, 205, 425, 187, 411, 123, 352, 117, 346, 36, 266, 203, 423, 206, 426)
_UPPER_FACE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 129, 358)
_LOWER_FACE = (200, 199, 175, 18, 83, 313, 201, 421, 194, 418, 32, 262, 140, 369, 171, 396, 208, 428)


@dataclass(frozen=True)
class Rig:
    fields: np.ndarray  # (K, G*G*2) float32: forward displacement of each control at grid points (pixels)
    landmark_moves: np.ndarray  # (K, 478, 2) float32: each control's designed displacement of each landmark
    head_mask: np.ndarray  # (G, G) float32 in [0, 1]: how much of the rigid head motion a point follows
    pivot: np.ndarray  # (2,) the head's rotation centre (the neck) in crop pixels
    grid: int  # G
    mouth_width: float
    face_height: float


def _interp_lower(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """y of the lower contour at each upper point's x."""
    order = np.argsort(lower[:, 0])
    return np.interp(upper[:, 0], lower[order, 0], lower[order, 1])


def jaw_opening(lm: np.ndarray) -> float:
    """How far (pixels) the lower lip drops at full jaw. A speaking mouth rarely opens its lips more than about a
    third of its width: the photo's own gap counts (a smile showing teeth is already part open), but the jaw
    always adds a clearly visible opening."""
    mw = float(np.linalg.norm(lm[61] - lm[291]))
    photo_gap = max(0.0, float(lm[14, 1] - lm[13, 1]))
    return float(np.clip(MAX_LIP_GAP * mw - photo_gap, MIN_JAW_DROP * mw, 0.26 * mw))


def design_moves(lm: np.ndarray) -> dict[str, np.ndarray]:
    """Per control, a (478, 2) displacement of every landmark at amplitude 1 (0 = stays put)."""
    n = len(lm)
    pts = lambda idx: lm[list(idx)]  # noqa: E731
    mw = float(np.linalg.norm(lm[61] - lm[291]))  # mouth width
    io = float(np.linalg.norm(pts(A.LEFT_EYE).mean(0) - pts(A.RIGHT_EYE).mean(0)))  # interocular
    mouth_c = (lm[61] + lm[291]) / 2
    moves = {k: np.zeros((n, 2), np.float32) for k in CONTROLS}

    # Jaw: the lower lip and chin drop; the jaw line follows less towards its angles; the corners a little.
    open_px = jaw_opening(lm)
    jaw = moves["jaw"]
    corner_drop = 0.25 * open_px  # the corners drop little: the lips stay joined there
    # Across the mouth, per side: 0 at the lips' midline (13/14, off-centre in a turned face), 1 at that side's
    # inner corner.
    mid_x = float(lm[13, 0] + lm[14, 0]) / 2
    left, right = sorted((float(lm[78, 0]), float(lm[308, 0])))
    half_left, half_right = max(mid_x - left, 1.0), max(right - mid_x, 1.0)

    def across(i: int) -> float:
        dx = float(lm[i, 0]) - mid_x
        return dx / half_right if dx >= 0 else -dx / half_left

    for i in set(A.LOWER_LIP_OUTER) | set(A.LOWER_LIP_INNER) | {18, 83, 313, 200, 199, 175, 201, 421, 194, 418}:
        # The lower lip drops most in the middle and moves as one piece (inner and outer edge alike, so it keeps
        # its thickness): an elliptic profile over the inner corners, so the opening's ends taper into
        # the lip corners instead of standing as vertical walls.
        r = min(1.0, across(i) / 1.04)
        jaw[i] = (0, corner_drop + (open_px - corner_drop) * np.sqrt(1.0 - r ** 2))
    jaw[list(A.JAW_LOWER)] = 0.0
    chin_x = lm[A.CHIN, 0]
    half = max(abs(lm[172, 0] - chin_x), abs(lm[397, 0] - chin_x), 1.0)
    for i in A.JAW_LOWER + (171, 396, 208, 428, 32, 262, 140, 369):
        w = 1.0 - 0.7 * min(1.0, abs(lm[i, 0] - chin_x) / half)
        jaw[i] = (0, 0.9 * open_px * w)
    for i in (61, 291, 78, 308):
        jaw[i] = (np.sign(mouth_c[0] - lm[i, 0]) * 0.04 * mw, corner_drop)
    for i in set(A.UPPER_LIP_OUTER) | set(A.UPPER_LIP_INNER):
        if i not in (61, 291, 78, 308):
            rel = min(1.0, abs(lm[i, 0] - mouth_c[0]) / (mw / 2))
            jaw[i] = (0, -0.06 * open_px * (1.0 - rel ** 2))  # the upper lip lifts a little in the middle

    # Spread (E, I): corners outwards, lips thinner.
    spread = moves["spread"]
    for i in set(A.LIPS_OUTER) | set(A.LIPS_INNER):
        rel = (lm[i, 0] - mouth_c[0]) / (mw / 2)
        spread[i] = (0.09 * mw * rel, 0.0)
    # Round (O, U): corners inwards, lips pushed out (the outer contour grows vertically).
    rnd = moves["round"]
    for i in set(A.LIPS_OUTER) | set(A.LIPS_INNER):
        rel = (lm[i, 0] - mouth_c[0]) / (mw / 2)
        vert = np.sign(lm[i, 1] - mouth_c[1]) * 0.05 * mw * (1 - abs(rel)) if i in A.LIPS_OUTER else 0.0
        rnd[i] = (-0.14 * mw * rel, vert)
    # Smile: corners up and out, cheeks up, lower eyelids up a little.
    smile = moves["smile"]
    for i in set(A.LIPS_OUTER) | set(A.LIPS_INNER):
        rel = (lm[i, 0] - mouth_c[0]) / (mw / 2)
        smile[i] = (0.07 * mw * rel, -0.10 * mw * rel ** 2)
    for i in _CHEEKS:
        side = np.sign(lm[i, 0] - mouth_c[0])
        smile[i] = (0.02 * mw * side, -0.05 * mw)
    for lower in (A.RIGHT_EYE_LOWER, A.LEFT_EYE_LOWER):
        for i in lower:
            smile[i] = (0, -0.025 * io)

    # Blink: upper lids onto the lower lids; the lower lids rise a little.
    blink = moves["blink"]
    for upper, lower in ((A.RIGHT_EYE_UPPER, A.RIGHT_EYE_LOWER), (A.LEFT_EYE_UPPER, A.LEFT_EYE_LOWER)):
        up, lo = pts(upper), pts(lower)
        y_lo = _interp_lower(up, lo)
        gap = y_lo - up[:, 1]
        for k, i in enumerate(upper):
            blink[i] = (0, 0.88 * gap[k])
        y_up = _interp_lower(lo, up)
        for k, i in enumerate(lower):
            blink[i] = (0, -0.12 * (lo[k, 1] - y_up[k]))
    for i in (468, 469, 470, 471, 472, 473, 474, 475, 476, 477):
        if i < n:
            blink[i] = (0, 0.5 * (blink[159, 1] if i < 473 else blink[386, 1]))

    # Brows up (surprise, emphasis) and frown (brows down and together).
    up = moves["brows_up"]
    frown = moves["frown"]
    face_cx = lm[A.NOSE_TIP, 0]
    for brow, eye_upper in ((A.RIGHT_BROW, A.RIGHT_EYE_UPPER), (A.LEFT_BROW, A.LEFT_EYE_UPPER)):
        for i in brow:
            up[i] = (0, -0.11 * io)
            inward = np.sign(face_cx - lm[i, 0])
            near = 1.0 - min(1.0, abs(lm[i, 0] - face_cx) / (0.6 * io))
            frown[i] = (0.05 * io * inward * near, 0.06 * io * (0.4 + 0.6 * near))
        for i in eye_upper:
            up[i] = (0, -0.02 * io)
    return moves


def _anchors(lm: np.ndarray, size: int) -> np.ndarray:
    """Fixed points: the crop border, the neck and shoulders below the chin."""
    s = size - 1
    t = np.linspace(0, s, 9)
    border = np.concatenate([np.stack([t, np.zeros_like(t)], 1), np.stack([t, np.full_like(t, s)], 1),
                             np.stack([np.zeros_like(t), t], 1)[1:-1], np.stack([np.full_like(t, s), t], 1)[1:-1]])
    face_h = float(np.linalg.norm(lm[A.CHIN] - lm[A.FOREHEAD]))
    chin = lm[A.CHIN]
    neck = np.array([chin + (dx * face_h, dy * face_h) for dx in (-0.35, 0.0, 0.35) for dy in (0.28, 0.45)])
    return np.concatenate([border, neck]).astype(np.float64)


def build_rig(face: FaceAvatar) -> Rig:
    from scipy.interpolate import RBFInterpolator

    lm = face.landmarks.astype(np.float64)
    size = face.size
    moves = design_moves(face.landmarks)
    control_idx = sorted(set(A.LIPS_OUTER) | set(A.LIPS_INNER) | set(A.FACE_OVAL) | set(A.RIGHT_EYE)
                         | set(A.LEFT_EYE) | set(A.RIGHT_BROW) | set(A.LEFT_BROW) | set(_CHEEKS)
                         | set(_UPPER_FACE) | set(_LOWER_FACE) | set(A.NOSE))
    control_idx = [i for i in control_idx if i not in _coincident_points(lm)]
    anchors = _anchors(lm, size)
    centres = np.concatenate([lm[control_idx], anchors])
    values = np.concatenate([
        np.concatenate([moves[k][control_idx] for k in CONTROLS], axis=1),
        np.zeros((len(anchors), 2 * len(CONTROLS))),
    ])
    tps = RBFInterpolator(centres, values, kernel="thin_plate_spline", smoothing=0.0)
    g = size // GRID_STEP
    coords = (np.arange(g) + 0.5) * GRID_STEP - 0.5
    gx, gy = np.meshgrid(coords, coords)
    flat = tps(np.stack([gx.ravel(), gy.ravel()], 1))  # (G*G, 2K)
    fields = flat.reshape(g, g, len(CONTROLS), 2).transpose(2, 0, 1, 3).reshape(len(CONTROLS), -1)

    face_h = float(np.linalg.norm(lm[A.CHIN] - lm[A.FOREHEAD]))
    pivot = lm[A.CHIN] + np.array([0.0, 0.25 * face_h])
    head_mask = _head_mask(lm, g, size)
    return Rig(fields=fields.astype(np.float32), landmark_moves=np.stack([moves[k] for k in CONTROLS]),
               head_mask=head_mask, pivot=pivot.astype(np.float32), grid=g,
               mouth_width=float(np.linalg.norm(lm[61] - lm[291])), face_height=face_h)


def _coincident_points(lm: np.ndarray) -> set[int]:
    """Lower inner-lip (and lower eyelid) points lying on their upper partner: a closed mouth or eye. They would
    pin two different displacements to one spot and make the spline explode, so the lower lip's outer contour
    carries the motion there instead."""
    mw = float(np.linalg.norm(lm[61] - lm[291]))
    drop = set()
    for upper, lower, limit in ((A.UPPER_LIP_INNER, A.LOWER_LIP_INNER, 0.06 * mw),
                                (A.RIGHT_EYE_UPPER, A.RIGHT_EYE_LOWER, 0.02 * mw),
                                (A.LEFT_EYE_UPPER, A.LEFT_EYE_LOWER, 0.02 * mw)):
        up = lm[list(upper)]
        for i in lower:
            if np.min(np.linalg.norm(up - lm[i], axis=1)) < limit and i not in upper:
                drop.add(i)
    return drop


def _head_mask(lm: np.ndarray, g: int, size: int) -> np.ndarray:
    """1 over the head (face, hair), fading out across the neck to 0 on the shoulders and background edges."""
    import cv2

    oval = lm[list(A.FACE_OVAL)]
    c = oval.mean(0)
    half = (oval.max(0) - oval.min(0)) / 2
    scale = g / size
    mask = np.zeros((g, g), np.float32)
    centre = (int(round(c[0] * scale)), int(round((c[1] - 0.15 * half[1]) * scale)))
    axes = (int(round(half[0] * 1.55 * scale)), int(round(half[1] * 1.45 * scale)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.25 * half[0] * scale))
    return np.clip(mask / max(mask.max(), 1e-6), 0, 1).astype(np.float32)
