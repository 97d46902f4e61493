"""Blinks drawn as eyelids: the upper lid slides down over the eye; nothing around the eye moves.

Per eye and frame, only the pixels between the lid skin above the lash line and the lower lid change: the lid
skin band (height ``LID_SKIN`` of the eye opening) is stretched down to the lid's new edge, carrying the lashes
with it, and the eye below the edge stays where it is (the lid covers it). The remap is the identity at the top
of the band and at the eye corners, so glasses frames, brows and hair stay rigid and no seam shows.
"""

from __future__ import annotations

import numpy as np

# Eye contours, corner to corner through the upper lid and through the lower lid (MediaPipe indices).
RIGHT_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
EYES = ((RIGHT_UPPER, RIGHT_LOWER), (LEFT_UPPER, LEFT_LOWER))
EYE_POINTS = tuple(sorted(set(RIGHT_UPPER + RIGHT_LOWER + LEFT_UPPER + LEFT_LOWER)))
LID_SKIN = 0.8  # lid skin band above the lash line, in eye-opening heights
LID_OVERLAP = 0.08  # at full closure the upper lid's edge passes the lower lid's by this share of the opening


def close_eyelids(frame: np.ndarray, upper: np.ndarray, lower: np.ndarray, amount: float) -> None:
    """Lower one eye's upper lid by ``amount`` (0 open .. 1 closed), in place. ``upper``/``lower``: (9, 2)."""
    import cv2

    if amount <= 0.01:
        return
    amount = min(1.0, amount)
    x0 = int(np.floor(min(upper[:, 0].min(), lower[:, 0].min()))) - 1
    x1 = int(np.ceil(max(upper[:, 0].max(), lower[:, 0].max()))) + 2
    opening = float(np.max(lower[:, 1]) - np.min(upper[:, 1]))
    if opening < 1.0 or x1 - x0 < 4:
        return
    band = max(2.0, LID_SKIN * opening)
    y0 = int(np.floor(upper[:, 1].min() - band)) - 1
    y1 = int(np.ceil(lower[:, 1].max())) + 2
    size_y, size_x = frame.shape[:2]
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(size_x, x1), min(size_y, y1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return
    xs = np.arange(x0, x1, dtype=np.float32)
    ou, ol = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
    u = np.interp(xs, upper[ou, 0], upper[ou, 1])[None, :]  # lash line
    lo = np.interp(xs, lower[ol, 0], lower[ol, 1])[None, :]
    inside_x = (xs >= upper[:, 0].min()) & (xs <= upper[:, 0].max())
    open_h = np.where(inside_x[None, :], np.maximum(lo - u, 0.0), 0.0)
    lo_new = lo + LID_OVERLAP * amount * open_h
    edge = u + amount * (lo_new - u)  # the lid's new edge
    top = u - band
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    # Lid band [top, edge] <- skin band [top, u] (lashes ride on the edge); the eye below the edge stays.
    on_lid = (ys >= top) & (ys <= edge)
    src_y = np.where(on_lid, top + (ys - top) * band / np.maximum(edge - top, 1e-3), ys)
    map_x = np.broadcast_to(xs[None, :], src_y.shape).astype(np.float32)
    patch = cv2.remap(frame, map_x, src_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Feather horizontally only where the lid has height (identity at the corners anyway).
    weight = np.clip(open_h / max(0.25 * opening, 1.0), 0, 1)
    patch_f = patch.astype(np.float32)
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    # The lid edge casts a little shade on what is left of the eye.
    below = np.clip(1.0 - (ys - edge) / max(0.25 * opening, 1.0), 0, 1) * (ys > edge) * (ys < lo_new)
    patch_f *= (1.0 - 0.25 * amount * below)[..., None]
    roi += (patch_f - roi) * weight[..., None]
    frame[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)
