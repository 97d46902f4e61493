"""The inside of the opening mouth, made from the person's own photo.

Measured once per avatar (``MouthLook``): the colour of her lips, the texture of her mouth region, and her own
teeth when the photo shows them (bright, low-saturation pixels between the inner lips). Per frame
(``paint_mouth``), inside the moved inner-lip contour:

* the cavity is a soft gradient from her lip colour, in the shadow of the lips, towards a deep shadow of the same
  hue, carrying the high-frequency texture of her own mouth region (no flat-colour areas);
* teeth: her own teeth from the photo, the upper ones riding with the upper lip and the lower ones with the lower
  lip (no stretching); without visible teeth in the photo, a soft shaded band tucked under the upper lip (partly
  hidden by it) and a hint of the lower ones, lit like her skin, darker towards the corners;
* a tongue tone low in the cavity when the mouth is wide open;
* everything is composited through a feathered mask, so no edge is hard and the lips stay hers (the warp has
  stretched them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nodes.face import avatar as A
from nodes.face.avatar import FaceAvatar

SHIFT = 4  # sub-pixel bits for cv2.fillPoly


@dataclass(frozen=True)
class MouthLook:
    lip: np.ndarray  # (3,) float32 median lip colour
    skin: np.ndarray  # (3,) float32 colour of the lit skin (cheeks): the scene's light on her
    skin_light: float  # luminance of the lit skin (cheeks), 0..255
    texture: np.ndarray  # (h, w) float32 zero-mean high-pass luminance of the mouth region, relative units
    teeth: np.ndarray | None  # (h, w, 3) float32 the photo's inner-mouth patch when teeth show
    teeth_alpha: np.ndarray | None  # (h, w) float32 where that patch is teeth (soft)
    teeth_origin: np.ndarray | None  # (2,) crop pixel of the patch's top-left
    teeth_split: float  # patch row (float) between the upper and the lower teeth
    upper_mid: np.ndarray  # (2,) the photo's upper inner-lip midpoint (13)
    lower_mid: np.ndarray  # (2,) the photo's lower inner-lip midpoint (14)
    mouth_width: float


def _poly_mask(shape: tuple[int, int], poly: np.ndarray, origin: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    pts = np.round((poly - origin) * (1 << SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, SHIFT)
    return mask


def measure(face: FaceAvatar) -> MouthLook:
    """What the photo tells about her mouth (once per avatar)."""
    import cv2

    img = face.image.astype(np.float32)
    lm = face.landmarks.astype(np.float32)
    mw = float(np.linalg.norm(lm[61] - lm[291]))
    outer, inner = face.points(A.LIPS_OUTER), face.points(A.LIPS_INNER)
    lo = np.floor(outer.min(0) - 0.1 * mw).astype(int).clip(0, face.size - 1)
    hi = np.ceil(outer.max(0) + 0.1 * mw).astype(int).clip(1, face.size)
    roi = img[lo[1]:hi[1], lo[0]:hi[0]]
    shape = (hi[1] - lo[1], hi[0] - lo[0])
    ring = (_poly_mask(shape, outer, lo) > 128) & (_poly_mask(shape, inner, lo) < 128)
    lip = np.median(roi[ring], axis=0) if ring.sum() > 10 else np.array([150, 80, 80], np.float32)
    gray = cv2.cvtColor(roi.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    texture = (gray - cv2.GaussianBlur(gray, (0, 0), 2.0)) / max(float(gray.mean()), 20.0)
    cheeks = np.concatenate([face.points((50, 205, 187, 123, 117, 118)), face.points((280, 425, 411, 352, 346, 347))])
    cheek_px = img[cheeks[:, 1].astype(int).clip(0, face.size - 1), cheeks[:, 0].astype(int).clip(0, face.size - 1)]
    skin = np.median(cheek_px, axis=0).astype(np.float32)
    skin_light = float(np.percentile(cheek_px.mean(1), 75))
    skin_sat = float(cv2.cvtColor(skin[None, None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0, 0, 1])

    teeth = teeth_alpha = teeth_origin = None
    split = 0.0
    gap = float(lm[14, 1] - lm[13, 1])
    if gap > 0.05 * mw:
        t_lo = np.floor(inner.min(0)).astype(int) - 1
        t_hi = np.ceil(inner.max(0)).astype(int) + 2
        patch = img[t_lo[1]:t_hi[1], t_lo[0]:t_hi[0]]
        inside = _poly_mask(patch.shape[:2], inner, t_lo).astype(np.float32) / 255.0
        hsv = cv2.cvtColor(patch.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        lum = patch.mean(2)
        # Teeth: about as bright as her lit skin or brighter, and less saturated than skin under the same light.
        whiteish = np.clip((lum - 0.6 * skin_light) / (0.3 * skin_light), 0, 1) * np.clip(
            (0.9 * skin_sat + 35 - hsv[..., 1]) / 40, 0, 1)
        share = float((whiteish * inside).sum() / max(inside.sum(), 1.0))
        if share > 0.12:  # her teeth show in the photo: keep the whole inner-mouth patch as hers
            teeth = patch
            white = cv2.GaussianBlur((whiteish * inside).astype(np.float32), (0, 0), 1.0)
            teeth_alpha = cv2.GaussianBlur(inside, (0, 0), 0.8) * np.clip(white * 1.5, 0, 1)  # teeth only
            teeth_origin = t_lo.astype(np.float32)
            split = _teeth_split(white.sum(1) / np.maximum(inside.sum(1), 1.0))
    return MouthLook(lip=lip.astype(np.float32), skin=skin, skin_light=skin_light, texture=texture.astype(np.float32),
                     teeth=teeth, teeth_alpha=teeth_alpha, teeth_origin=teeth_origin, teeth_split=split,
                     upper_mid=lm[13].copy(), lower_mid=lm[14].copy(), mouth_width=mw)


def _teeth_split(row_white: np.ndarray) -> float:
    """The row between the upper teeth (ride with the upper lip) and the lower teeth (ride with the lower lip):
    the least white row after the upper teeth when white rises again below it, else the bottom (all upper)."""
    n = len(row_white)
    if n < 4:
        return float(n)
    peak = int(np.argmax(row_white[: max(1, int(0.7 * n))]))
    below = row_white[peak:]
    gap = peak + int(np.argmin(below))
    if gap < n - 1 and row_white[gap:].max() > row_white[gap] + 0.25 * row_white[peak]:
        return float(gap)
    return float(n)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def paint_mouth(frame: np.ndarray, look: MouthLook, upper: np.ndarray, lower: np.ndarray, jaw: float) -> None:
    """Paint the inside of the mouth into ``frame`` (in place) between the moved inner-lip contours.

    ``upper``/``lower``: (11, 2) the inner lip contours from corner 78 to corner 308 (midpoints at index 5).
    """
    import cv2

    if jaw < 0.02:
        return
    gap = float(lower[5, 1] - upper[5, 1])
    if gap < 1.0:
        return
    poly = np.concatenate([upper, lower[::-1][1:-1]]).astype(np.float32)
    size = frame.shape[0]
    lo = np.clip(np.floor(poly.min(0)).astype(int) - 3, 0, size - 1)
    hi = np.clip(np.ceil(poly.max(0)).astype(int) + 3, 1, size)
    w, h = hi - lo
    if w < 4 or h < 4:
        return
    mw = float(np.linalg.norm(upper[-1] - upper[0]))
    cavity = _poly_mask((h, w), poly, lo.astype(np.float32))
    roi = frame[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)

    # Depth: 0 at the lips, 1 a third of the gap inside (distance to the contour, smooth).
    dist = cv2.distanceTransform((cavity > 127).astype(np.uint8), cv2.DIST_L2, 3)
    depth = _smoothstep(dist / max(0.45 * gap, 2.0))[..., None]
    # Her lip colour in the shade of the lips at the rim, a deep shadow of the same hue inside (kept dark and only
    # half as saturated as the lips: a reddish rim reads as more lip, to a viewer and to a landmark tracker).
    grey = float(look.lip.mean())
    chroma = look.lip - grey
    rim = 0.36 * grey + 0.5 * chroma
    deep = 0.15 * grey + 0.35 * chroma + 3.0
    colour = rim + (deep - rim) * depth
    # Light falls from above: the upper part of the cavity (under the upper lip) is darker than the lower.
    ys = (np.arange(h, dtype=np.float32) + lo[1])[:, None, None]
    vert = np.clip((ys - upper[5, 1]) / max(gap, 1.0), 0, 1)
    colour *= 0.85 + 0.3 * vert
    # Her own mouth texture, resized onto the opening: no flat areas.
    tex = cv2.resize(look.texture, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    colour += 0.9 * tex * rim  # at the rim's brightness everywhere: the deep shadow is not flat either

    # Tongue: a soft, darker lip tone low in a wide-open mouth.
    if gap > 0.14 * mw:
        cx, cy = lower[5] - lo
        xs = np.arange(w, dtype=np.float32)[None, :]
        yy = np.arange(h, dtype=np.float32)[:, None]
        e = ((xs - cx) / (0.30 * mw)) ** 2 + ((yy - (cy + 0.05 * gap)) / (0.45 * gap)) ** 2
        tongue = np.clip(1.0 - e, 0, 1) ** 1.5 * min(1.0, (gap / mw - 0.14) / 0.1)
        tongue_col = look.lip * np.array([0.62, 0.42, 0.45], np.float32)
        colour += (tongue_col - colour) * (0.8 * tongue)[..., None]

    teeth_layer, teeth_alpha = _teeth(look, upper, lower, lo, (h, w), gap, mw)
    if teeth_layer is not None:
        colour += (teeth_layer - colour) * teeth_alpha[..., None]

    # Feathered composite: the mask's edge is soft, and the opening fades in over the first tenth of the jaw.
    feather = max(0.8, 0.012 * mw)
    alpha = cv2.GaussianBlur(cavity.astype(np.float32) / 255.0, (0, 0), feather)
    xs = (np.arange(w, dtype=np.float32) + lo[0])[None, :]
    cx = (upper[0, 0] + upper[-1, 0]) / 2
    alpha *= 1.0 - np.clip(np.abs(xs - cx) / max(0.5 * mw, 1.0), 0, 1) ** 4  # the corners stay lips
    alpha *= min(1.0, (jaw - 0.02) / 0.10)
    roi += (colour - roi) * alpha[..., None]
    frame[lo[1]:hi[1], lo[0]:hi[0]] = np.clip(roi, 0, 255).astype(np.uint8)


def _teeth(look: MouthLook, upper: np.ndarray, lower: np.ndarray, lo: np.ndarray, shape: tuple[int, int],
           gap: float, mw: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(colour, alpha) of the teeth in the ROI: hers from the photo when visible, else soft, shaded ones."""
    import cv2

    h, w = shape
    if look.teeth is not None:
        layer = np.zeros((h, w, 3), np.float32)
        alpha = np.zeros((h, w), np.float32)
        ph, pw = look.teeth.shape[:2]
        scale_x = mw / max(look.mouth_width, 1.0)
        split = int(round(look.teeth_split))
        for rows, anchor_src, anchor_dst in ((slice(0, split), look.upper_mid, upper[5]),
                                             (slice(split, ph), look.lower_mid, lower[5])):
            src = look.teeth[rows]
            src_a = look.teeth_alpha[rows]
            if src.shape[0] == 0:
                continue
            # Affine: scale x about the anchor, translate with the lip the half belongs to.
            top = look.teeth_origin + (0, rows.start)
            m = np.array([[scale_x, 0, anchor_dst[0] - scale_x * (anchor_src[0] - top[0]) - lo[0]],
                          [0, 1.0, anchor_dst[1] - (anchor_src[1] - top[1]) - lo[1]]], np.float32)
            layer += cv2.warpAffine(src * src_a[..., None], m, (w, h), flags=cv2.INTER_LINEAR)
            alpha += cv2.warpAffine(src_a, m, (w, h), flags=cv2.INTER_LINEAR)
        # Their free edges melt into the mouth's shade (no cut-out look): blur colour-weighted and weight alike.
        sigma = max(1.0, 0.016 * mw)
        layer = cv2.GaussianBlur(layer, (0, 0), sigma)
        alpha = cv2.GaussianBlur(np.clip(alpha, 0, 1), (0, 0), sigma)
        ok = alpha > 1e-3
        layer[ok] /= alpha[ok][:, None]
        return layer * 0.92, alpha * 0.95

    # No teeth in the photo: a soft band under the upper lip, lit like her skin, partly hidden by the lip.
    xs = (np.arange(w, dtype=np.float32) + lo[0])[None, :]
    ys = (np.arange(h, dtype=np.float32) + lo[1])[:, None]
    order = np.argsort(upper[:, 0])
    top = np.interp(xs[0], upper[order, 0], upper[order, 1])[None, :]
    order_l = np.argsort(lower[:, 0])
    bottom = np.interp(xs[0], lower[order_l, 0], lower[order_l, 1])[None, :]
    cx = (upper[0, 0] + upper[-1, 0]) / 2
    across = np.clip(np.abs(xs - cx) / (0.42 * mw), 0, 1)
    visible_up = min(0.07 * mw, 0.36 * gap)
    visible_lo = min(0.025 * mw, 0.1 * gap)
    hidden = 0.25 * visible_up  # the top of the band is under the lip
    up = np.clip((ys - (top - hidden)) / max(visible_up + hidden, 1.0), 0, 1)
    up_alpha = _smoothstep((1.0 - up) * 5.0) * (ys > top - hidden)
    lo_t = np.clip(((bottom + 0.2 * visible_lo) - ys) / max(visible_lo, 0.8), 0, 1)
    lo_alpha = _smoothstep((1.0 - lo_t) * 4.0) * (ys < bottom + 0.2 * visible_lo) * 0.7
    falloff = 1.0 - _smoothstep((across - 0.55) / 0.45)
    # Tooth separations: faint, soft vertical shading at tooth widths from the centre.
    tooth_w = 0.105 * mw
    seams = 1.0 - 0.10 * np.clip(1.0 - np.abs(((xs - cx) / tooth_w) % 1.0 - 0.5) * 8.0, 0, 1) ** 2
    # Lit like her skin: brighter than the skin and much less saturated (the scene's light tints them).
    grey = float(look.skin.mean())
    base = np.clip(1.3 * grey + 0.3 * (look.skin - grey), 0, 235)
    shade = (0.78 + 0.22 * (1.0 - up)) * (1.0 - 0.45 * across ** 2) * seams
    layer = base * shade[..., None]
    alpha = np.clip(np.maximum(up_alpha, lo_alpha) * falloff, 0, 1)
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), max(0.9, 0.014 * mw)) * 0.8
    return layer.astype(np.float32), alpha
