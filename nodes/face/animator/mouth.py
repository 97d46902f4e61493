"""The inside of the opening mouth, made from the person's own photo.

Measured once per avatar (``MouthLook``): the colour of her lips and of her lit skin, the texture of her mouth
region, how soft the photo's edges are in the crop, and her own teeth when the photo shows them (bright,
low-saturation pixels between the inner lips). Per frame (``paint_mouth``), inside the moved inner-lip contour,
back to front:

* the cavity: her lip colour in the lips' shade along the rim, deepening to a dark, warm throat (darkest under the
  upper teeth, where the light does not reach); at the corners her lip colour, where the lips fold together; her
  own mouth texture at its own scale (no flat-colour areas);
* a tongue low in a wider opening: a dome of her lip hue, muted and in shade, lit on top, with a shaded crease in
  front of it so that the lower lip's edge stays distinct (to a viewer and to a landmark tracker);
* teeth: her own from the photo, the upper ones riding with the upper lip and the lower ones with the lower lip (no
  stretching); without teeth in the photo, upper incisors made from the light on her skin (warm ivory, whiter
  than her lips), tucked under the upper lip and in its shadow, with a scalloped, translucent biting edge, faint
  separations along the dental arch and darker towards the corners; the lower incisors' tips in a wide opening;
* the lower lip's wet inner edge: a soft highlight just below the opening;
* everything composited through feathered masks at least as soft as the photo's own edges, so no edge is hard and
  the lips stay hers (the warp has stretched them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nodes.face import avatar as A
from nodes.face.avatar import FaceAvatar

SHIFT = 4  # sub-pixel bits for cv2.fillPoly
MIN_CHANNEL_RATIO = 0.22  # the tongue: weakest colour channel / strongest, at least (the shade: 0.1)


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
    softness: float  # Gaussian sigma (crop pixels) of the photo's own edges: upscaled photos are soft


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
    texture = _grain(np.clip(texture, -0.15, 0.15), ring)
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
            split = _teeth_split(white.sum(1) / np.maximum(inside.sum(1), 1.0), inside.sum(1))
    return MouthLook(lip=lip.astype(np.float32), skin=skin, skin_light=skin_light, texture=texture.astype(np.float32),
                     teeth=teeth, teeth_alpha=teeth_alpha, teeth_origin=teeth_origin, teeth_split=split,
                     upper_mid=lm[13].copy(), lower_mid=lm[14].copy(), mouth_width=mw,
                     softness=0.6 * max(1.0, float(face.meta.get("crop_scale", 1.0))))


def _grain(texture: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """The grain of her lips, without their shapes: her lips' own high-pass values, drawn at random (fixed seed)
    over the region and softened to the photo's grain size. Tiling the region itself would repeat the outlines of
    her teeth and lips inside the mouth as ghosts."""
    import cv2

    values = texture[ring] if ring.sum() > 50 else texture.ravel()
    if values.std() < 1e-6:
        return texture
    grain = np.random.default_rng(0).choice(values, size=texture.shape).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 0.7)
    return (grain - grain.mean()) * (float(values.std()) / max(float(grain.std()), 1e-6))


def _teeth_split(row_white: np.ndarray, row_inside: np.ndarray) -> float:
    """The row between the upper teeth (ride with the upper lip) and the lower teeth (ride with the lower lip):
    the least white row after the upper teeth when white rises again below it, else the bottom (all upper). Only
    rows at least a quarter as wide as the opening count: the slivers at its top and bottom say nothing."""
    n = len(row_white)
    rows = np.nonzero(row_inside >= 0.25 * max(float(row_inside.max()), 1.0))[0]
    if len(rows) < 4:
        return float(n)
    first = int(rows[0])
    white = row_white[first:int(rows[-1]) + 1]
    m = len(white)
    peak = int(np.argmax(white[: max(1, int(0.7 * m))]))
    gap = peak + int(np.argmin(white[peak:]))
    if gap < m - 1 and white[gap:].max() > white[gap] + 0.25 * white[peak]:
        return float(first + gap)
    return float(n)


def lip_tone(look: MouthLook, level: float, colourful: float, min_ratio: float = MIN_CHANNEL_RATIO) -> np.ndarray:
    """Her lip colour at ``level`` of its brightness with its colour (the difference from grey) times ``colourful``,
    but never more saturated than living tissue: the weakest channel stays at least ``min_ratio`` of the
    strongest (boosting an already strong red lip would otherwise clip blue to 0 and paint an orange plastic)."""
    grey = float(look.lip.mean())
    tone = (level * grey + colourful * (look.lip - grey)).astype(np.float32)
    m, lo, hi = float(tone.mean()), float(tone.min()), float(tone.max())
    if m > 0 and lo < min_ratio * hi:
        t = m * (1.0 - min_ratio) / max(m - lo + min_ratio * (hi - m), 1e-6)
        tone = m + t * (tone - m)
    return np.maximum(tone, 0.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def paint_mouth(frame: np.ndarray, look: MouthLook, upper: np.ndarray, lower: np.ndarray, jaw: float) -> None:
    """Paint the inside of the mouth into ``frame`` (in place) between the moved inner-lip contours.

    ``upper``/``lower``: (11, 2) the inner lip contours from corner 78 to corner 308 (midpoints at index 5).
    Back to front: the cavity (her lip colour in the lips' shade, deepening to a dark throat), the tongue low in a
    wide opening, the lower teeth's tips, the upper teeth under the upper lip; then the wet inner edge of the lower
    lip, outside the opening. The lips' inner boundary stays distinct: whatever touches a lip is darker than it
    (throat, the shaded crease in front of the tongue) or much whiter (teeth), never a lip-like red.
    """
    import cv2

    if jaw < 0.02:
        return
    gap = float(lower[5, 1] - upper[5, 1])
    if gap < 1.0:
        return
    poly = np.concatenate([upper, lower[::-1][1:-1]]).astype(np.float32)
    size = frame.shape[0]
    mw = float(np.linalg.norm(upper[-1] - upper[0]))
    lo = np.clip(np.floor(poly.min(0)).astype(int) - 3, 0, size - 1)
    hi = np.clip(np.ceil(poly.max(0) + (3, 3 + 0.06 * mw)).astype(int), 1, size)  # room for the wet lower edge
    w, h = hi - lo
    if w < 4 or h < 4:
        return
    g = _Geometry.of(upper, lower, lo, (h, w), mw)
    cavity = _poly_mask((h, w), poly, lo.astype(np.float32))
    roi = frame[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)

    colour = _cavity(look, g, cavity, gap)
    opening = gap / max(mw, 1.0)
    if opening > 0.07:
        _tongue(colour, look, g, gap, min(1.0, (opening - 0.07) / 0.1))
    teeth_layer, teeth_alpha = _teeth(look, upper, lower, lo, (h, w), gap, mw, g)
    if teeth_layer is not None:
        teeth_alpha = cv2.GaussianBlur(teeth_alpha, (0, 0), look.softness)  # as soft as the photo's own edges
        colour += (teeth_layer - colour) * teeth_alpha[..., None]

    # Feathered composite: the mask's edge is soft, and the opening fades in over the first tenth of the jaw.
    feather = max(0.8, 0.012 * mw, look.softness)
    alpha = cv2.GaussianBlur(cavity.astype(np.float32) / 255.0, (0, 0), feather)
    alpha *= 1.0 - np.clip(np.abs(g.u), 0, 1) ** 12  # the very corners stay lips (no stretched photo inside)
    fade = min(1.0, (jaw - 0.02) / 0.10)
    alpha *= fade
    roi += (colour - roi) * alpha[..., None]
    _wet_lower_edge(roi, look, g, gap, fade)
    frame[lo[1]:hi[1], lo[0]:hi[0]] = np.clip(roi, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Geometry:
    """Per-pixel coordinates of the ROI relative to the moved opening."""

    ys: np.ndarray  # (h, 1) frame rows
    top: np.ndarray  # (1, w) the upper inner lip's y per column
    bottom: np.ndarray  # (1, w) the lower inner lip's y per column
    u: np.ndarray  # (1, w) across the mouth: 0 in the middle, +-1 at the corners
    v: np.ndarray  # (h, w) down the opening: 0 at the upper lip, 1 at the lower lip
    mw: float

    @staticmethod
    def of(upper: np.ndarray, lower: np.ndarray, lo: np.ndarray, shape: tuple[int, int], mw: float) -> "_Geometry":
        h, w = shape
        xs = np.arange(w, dtype=np.float32) + lo[0]
        ys = (np.arange(h, dtype=np.float32) + lo[1])[:, None]
        ou, ol = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
        top = np.interp(xs, upper[ou, 0], upper[ou, 1]).astype(np.float32)[None, :]
        bottom = np.interp(xs, lower[ol, 0], lower[ol, 1]).astype(np.float32)[None, :]
        cx = (upper[0, 0] + upper[-1, 0]) / 2
        u = ((xs - cx) / max(0.5 * mw, 1.0)).astype(np.float32)[None, :]
        v = np.clip((ys - top) / np.maximum(bottom - top, 1.0), 0, 1)
        return _Geometry(ys=ys, top=top, bottom=bottom, u=u, v=v, mw=mw)


def _cavity(look: MouthLook, g: _Geometry, cavity: np.ndarray, gap: float) -> np.ndarray:
    """The mouth's inside: her lip colour in the shade of the lips along the rim, deepening to a dark, warm throat;
    darkest under the upper teeth (light falls from above), a little lighter low down; her own texture on it."""
    import cv2

    dist = cv2.distanceTransform((cavity > 127).astype(np.uint8), cv2.DIST_L2, 3)
    depth = _smoothstep(dist / max(0.4 * gap, 2.0))[..., None]
    rim = lip_tone(look, 0.56, 1.2, 0.1)  # the moist inside of the lips: redder than the lips, in their shade
    deep = lip_tone(look, 0.14, 0.55, 0.1) + 2.0
    colour = rim + (deep - rim) * depth
    # under the upper teeth the deepest shadow; towards the lower lip the floor of the mouth catches some light
    shade = 0.8 + 0.35 * _smoothstep((g.v - 0.25) / 0.75)
    shade *= 1.0 - 0.25 * g.u ** 2  # the cheeks' insides, at the corners, are in shadow
    colour *= shade[..., None]
    # at the corners the lips' moist insides fold into each other: her lip colour in shade, not a dark gap
    corner = 0.45 * _smoothstep((np.abs(g.u) - 0.65) / 0.35)
    colour += (lip_tone(look, 0.6, 0.85, 0.1) - colour) * corner[..., None]
    h, w = cavity.shape
    th, tw = look.texture.shape
    # her texture at its own scale (tiled, mirrored), not stretched: stretching draws streaks in a tall opening
    tex = np.pad(look.texture, ((0, max(0, h - th)), (0, max(0, w - tw))), mode="symmetric")[:h, :w, None]
    return colour + 0.9 * tex * rim  # no flat areas, even in the deep shadow


def _tongue(colour: np.ndarray, look: MouthLook, g: _Geometry, gap: float, amount: float) -> None:
    """A tongue low in a wide opening (in place): a dome behind the lower teeth, her lip hue darker, in shade,
    its top lit from above, darker to the sides and in the crease in front of it, so that it never reads as lip."""
    height = amount * min(0.45 * gap, 0.14 * g.mw)
    half = 0.5
    across = np.clip(1.0 - (g.u / half) ** 2, 0, 1)
    crest = g.bottom - height * across ** 0.7  # (1, w) the tongue's top edge: a dome, highest in the middle
    soft = max(1.5, 0.035 * g.mw)
    inside = _smoothstep((g.ys - crest) / soft) * _smoothstep(across * 3.0)
    below = np.clip((g.ys - crest) / max(height, 1.0), 0, 1)  # 0 at its top edge, 1 at the lower lip
    base = lip_tone(look, 0.55, 1.4)
    lit = 1.0 + 0.18 * (1.0 - _smoothstep(below / 0.6))  # its upper surface faces the light
    lit *= 1.0 - 0.35 * (g.u / half) ** 2
    groove = 1.0 - 0.12 * np.exp(-(g.u / 0.06) ** 2) * (1.0 - below)  # the faint median groove
    # the crease in front of it (towards the lower lip and teeth) is in shadow: the lip's edge stays distinct
    crease = 0.75 + 0.25 * _smoothstep((g.bottom - g.ys) / max(0.06 * g.mw, 1.0))
    tone = base * (lit * groove * crease)[..., None]
    a = (0.85 * inside)[..., None]
    colour += (tone - colour) * a


def _wet_lower_edge(roi: np.ndarray, look: MouthLook, g: _Geometry, gap: float, fade: float) -> None:
    """The lower lip's inner, wet edge (in place): a thin, soft highlight just below the opening, on the lip."""
    strength = fade * min(1.0, gap / max(0.06 * g.mw, 1.0))
    if strength <= 0.01:
        return
    d = g.ys - g.bottom  # below the lower inner lip, in pixels
    line = np.exp(-((d - 0.025 * g.mw) / max(0.012 * g.mw, 0.6, look.softness)) ** 2)
    line *= np.clip(1.0 - (g.u / 0.7) ** 2, 0, 1)
    gain = 0.15 * strength * min(1.0, look.skin_light / 160.0)
    roi += (255.0 - roi) * (gain * line)[..., None]


def _teeth(look: MouthLook, upper: np.ndarray, lower: np.ndarray, lo: np.ndarray, shape: tuple[int, int],
           gap: float, mw: float, g: _Geometry) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(colour, alpha) of the teeth in the ROI: hers from the photo when visible, else made from her light; lower
    teeth's tips in a wide opening when the photo shows none."""
    if look.teeth is not None:
        layer, alpha = _own_teeth(look, upper, lower, lo, shape, mw)
        has_lower = look.teeth_split < look.teeth.shape[0] - 1
    else:
        layer, alpha = _made_upper_teeth(look, g, gap)
        has_lower = False
    if not has_lower and gap > 0.16 * mw:
        lo_layer, lo_alpha = _made_lower_teeth(look, g, gap, min(1.0, (gap / mw - 0.16) / 0.08))
        alpha_sum = alpha + lo_alpha * (1.0 - alpha)
        layer = (layer * alpha[..., None] + lo_layer * (lo_alpha * (1.0 - alpha))[..., None]) / np.maximum(
            alpha_sum, 1e-3)[..., None]
        alpha = alpha_sum
    return layer, alpha


def _own_teeth(look: MouthLook, upper: np.ndarray, lower: np.ndarray, lo: np.ndarray, shape: tuple[int, int],
               mw: float) -> tuple[np.ndarray, np.ndarray]:
    """Her own teeth from the photo: the upper ones ride with the upper lip, the lower ones with the lower lip."""
    import cv2

    h, w = shape
    layer = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    ph = look.teeth.shape[0]
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
    # Their free edges melt into the mouth's shade (no cut-out look): blur colour-weighted and weight alike, as
    # much as the photo's own edges are soft (a sharp photo keeps sharp teeth).
    sigma = max(0.8, 0.8 * look.softness)
    layer = cv2.GaussianBlur(layer, (0, 0), sigma)
    alpha = cv2.GaussianBlur(np.clip(alpha, 0, 1), (0, 0), sigma)
    ok = alpha > 1e-3
    layer[ok] /= alpha[ok][:, None]
    return layer * 0.92, alpha * 0.95


def _teeth_colour(look: MouthLook) -> np.ndarray:
    """Enamel under the scene's light on her: a warm ivory about as bright as her lit skin, tinted like the light."""
    tint = np.clip(look.skin / max(float(look.skin.mean()), 1.0), 0.5, 1.5) ** 0.35
    ivory = np.array([1.0, 0.96, 0.86], np.float32) * tint
    return (ivory / float(ivory.mean()) * min(1.05 * look.skin_light, 228.0)).astype(np.float32)


def _tooth_gaps(g: _Geometry, width: float) -> np.ndarray:
    """(1, w) per column: 0 at a gap between two teeth, 0.5 in a tooth's middle, for teeth ``width`` mouth widths
    wide along the dental arch (seen from the front, equal widths on the arch are narrower towards the sides)."""
    arch = np.arcsin(np.clip(g.u / 1.15, -0.99, 0.99)) * 1.15  # arc length in half mouth widths
    pos = np.abs(arch) * 0.5 / width  # in tooth widths from the midline (a gap between the central incisors)
    return np.abs(pos - np.round(pos))


def _made_upper_teeth(look: MouthLook, g: _Geometry, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper teeth when the photo shows none: tucked under the upper lip (its shadow on them), the central incisors
    longest, darker towards the corners, faint separations and a translucent biting edge."""
    import cv2

    mw = g.mw
    visible = min(0.10 * mw, 0.38 * gap)
    hidden = 0.3 * visible  # their top is under the lip
    # Teeth along the dental arch, seen from the front: equal widths on the arch are narrower towards the sides.
    to_gap = _tooth_gaps(g, 0.13)
    notch = 0.14 * visible * (1.0 - _smoothstep(to_gap / 0.22))  # the biting edge dips between teeth
    edge = g.top + visible * (1.0 - 0.45 * g.u ** 2) - notch  # (1, w) shorter towards the sides
    down = np.clip((g.ys - (g.top - hidden)) / np.maximum(edge - (g.top - hidden), 1.0), 0, 1)  # 0 top, 1 edge
    soft = max(0.8, 0.014 * mw)
    alpha = _smoothstep((edge - g.ys) / soft + 0.5) * (g.ys > g.top - hidden)
    alpha = alpha * (1.0 - _smoothstep((np.abs(g.u) - 0.38) / 0.32))  # towards the corners they turn away
    separation = 1.0 - 0.16 * (1.0 - _smoothstep(to_gap / 0.12)) * (0.5 + 0.5 * down)
    rounded = 1.0 - 0.07 * (1.0 - 2.0 * to_gap) ** 4  # each tooth convex: its sides turn from the light
    lip_shadow = 0.7 + 0.3 * _smoothstep(down / 0.35)  # the upper lip's shadow on their roots
    translucent = 1.0 - 0.16 * _smoothstep((down - 0.82) / 0.18)  # the biting edge lets the dark through
    corridor = 1.0 - 0.3 * _smoothstep(np.abs(g.u) / 0.6)  # darker towards the corners
    shade = lip_shadow * translucent * corridor * rounded * separation
    layer = _teeth_colour(look) * shade[..., None]
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), max(0.7, 0.01 * mw)) * 0.96
    return layer.astype(np.float32), alpha


def _made_lower_teeth(look: MouthLook, g: _Geometry, gap: float, amount: float) -> tuple[np.ndarray, np.ndarray]:
    """The lower incisors' tips above the lower lip in a wide opening: short, in shade, mostly hidden by the lip."""
    import cv2

    mw = g.mw
    visible = amount * min(0.05 * mw, 0.16 * gap)
    to_gap = _tooth_gaps(g, 0.10)  # lower incisors are narrower than the upper ones
    edge = g.bottom - visible * (1.0 - 1.5 * g.u ** 2) + 0.12 * visible * (1.0 - _smoothstep(to_gap / 0.25))
    soft = max(0.7, 0.012 * mw)
    alpha = _smoothstep((g.ys - edge) / soft + 0.3) * (g.ys < g.bottom + 0.3 * visible)
    alpha = alpha * (1.0 - _smoothstep((np.abs(g.u) - 0.22) / 0.2)) * 0.8
    down = np.clip((g.ys - edge) / max(visible, 1.0), 0, 1)  # 0 at their tips, 1 at the lip
    separation = 1.0 - 0.2 * (1.0 - _smoothstep(to_gap / 0.12))
    shade = 0.95 * (1.0 - 0.3 * np.abs(g.u)) * (1.0 - 0.2 * down) * separation  # the lip's shadow on their roots
    layer = _teeth_colour(look) * shade[..., None]
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), max(0.7, 0.01 * mw))
    return layer.astype(np.float32), alpha
