"""The default animator's mouth and eyelids: the opening is made from her own photo (no flat-colour regions, her
teeth when the photo shows them, soft edges), and a blink changes only the eyes (glasses, brows, hair stay)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from nodes.face.animator.drive import FrameControls  # noqa: E402
from nodes.face.animator.rig import CONTROLS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _benchmark():
    spec = importlib.util.spec_from_file_location("face_benchmark_for_tests", ROOT / "benchmarks" / "face.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _controls(**amps: float) -> FrameControls:
    a = np.zeros(len(CONTROLS), np.float32)
    for k, v in amps.items():
        a[CONTROLS.index(k)] = v
    return FrameControls(amps=a)


@pytest.fixture(scope="module")
def astronaut_animator():
    from nodes.face.animator import DefaultAnimator
    from nodes.face.prepare import prepare_avatar

    return DefaultAnimator(prepare_avatar(skdata.astronaut()))


@pytest.fixture(scope="module")
def glasses_animator():
    from nodes.face.animator import DefaultAnimator
    from nodes.face.prepare import prepare_avatar

    return DefaultAnimator(prepare_avatar(_benchmark()._with_glasses(skdata.astronaut())))


def test_her_own_teeth_are_reused_when_the_photo_shows_them(astronaut_animator):
    look = astronaut_animator.renderer.mouth
    assert look.teeth is not None and look.teeth_alpha.max() > 0.5
    # the lips' colour is hers: reddish, and the cavity is painted from it (no fixed palette)
    assert look.lip[0] > look.lip[1] and look.lip[0] > look.lip[2]


def test_open_mouth_has_no_flat_regions_and_no_hard_edges(astronaut_animator):
    bench = _benchmark()
    face = astronaut_animator.face
    roi = bench.mouth_roi(face)
    frame = astronaut_animator.renderer.render(_controls(jaw=1.0))
    photo_flat = bench.flatness(face.image, roi)
    open_flat = bench.flatness(frame, roi)
    assert open_flat <= 1.5 * max(photo_flat, 0.01)
    # the measure can fail: the same opening painted with one flat colour is caught
    from nodes.face import avatar as A

    painted = frame.copy()
    lips = astronaut_animator.renderer.moved_landmarks(_controls(jaw=1.0), A.LIPS_INNER)
    cv2.fillPoly(painted, [np.round(lips).astype(np.int32)], (60, 20, 30))
    assert bench.flatness(painted, roi) > 1.5 * max(photo_flat, 0.01)
    # soft edges: across the cavity's rim no step is steeper than the photo's own strongest lip edge
    x0, y0, x1, y1 = roi
    grad = lambda img: np.abs(np.diff(img[y0:y1, x0:x1].astype(np.float32).mean(2), axis=0)).max()  # noqa: E731
    assert grad(frame) <= 1.2 * grad(face.image)


def test_blink_moves_only_the_eyelids_glasses_stay_rigid(glasses_animator):
    from nodes.face.animator.eyelids import EYE_POINTS

    r = glasses_animator.renderer
    still = r.render(_controls())
    closed = r.render(_controls(blink=1.0))
    changed = np.abs(closed.astype(int) - still).max(2) > 3
    pts = r.moved_landmarks(_controls(), EYE_POINTS)
    opening = pts[:, 1].max() - pts[:, 1].min()
    x0, x1 = pts[:, 0].min() - 3, pts[:, 0].max() + 3
    y0, y1 = pts[:, 1].min() - 1.5 * opening, pts[:, 1].max() + 3
    ys, xs = np.nonzero(changed)
    assert len(ys) > 200  # the lids did close
    assert ((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)).all()  # and nothing else moved
    # the drawn frames (dark rims outside the eye openings) are pixel-identical
    rims = (still.max(2) < 60) & ~changed
    assert rims.sum() > 500


@pytest.fixture(scope="module")
def hopper_animator():
    import matplotlib.cbook

    from nodes.face.animator import DefaultAnimator
    from nodes.face.prepare import load_photo, prepare_avatar

    photo = load_photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return DefaultAnimator(prepare_avatar(photo))


def test_a_closed_mouth_photo_opens_onto_teeth_throat_and_tongue(hopper_animator):
    """No teeth in the photo: the opening shows made teeth whiter than her lips under the upper lip, a throat darker
    than the lips, and a tongue low down that is redder and lighter than the throat (the lips' edges stay distinct)."""
    from nodes.face import avatar as A

    r = hopper_animator.renderer
    assert r.mouth.teeth is None
    c = _controls(jaw=1.0)
    frame = r.render(c).astype(np.float32)
    up, low = r.moved_landmarks(c, (13,)), r.moved_landmarks(c, (14,))
    gap = float(low[0, 1] - up[0, 1])
    mw = float(np.linalg.norm(r.moved_landmarks(c, (78,))[0] - r.moved_landmarks(c, (308,))[0]))
    x = int(round(up[0, 0]))
    at = lambda y: frame[int(round(y)) - 1:int(round(y)) + 2, x - 2:x + 3].reshape(-1, 3).mean(0)  # noqa: E731
    teeth, throat, tongue = at(up[0, 1] + 0.06 * mw), at(up[0, 1] + 0.45 * gap), at(low[0, 1] - 0.18 * gap)
    lips = r.mouth.lip
    assert teeth.mean() > lips.mean() and teeth.std() < lips.std()  # whiter than her lips, and less coloured
    assert throat.mean() < 0.5 * lips.mean()
    assert tongue.mean() > throat.mean() + 10 and tongue[0] > tongue[1] + 10
    # the measure can fail: the same opening painted with one flat dark colour has no teeth and no tongue
    flat = frame.copy()
    cv2.fillPoly(flat, [np.round(r.moved_landmarks(c, A.LIPS_INNER)).astype(np.int32)], (40, 20, 20))
    at_flat = lambda y: flat[int(round(y)) - 1:int(round(y)) + 2, x - 2:x + 3].reshape(-1, 3).mean(0)  # noqa: E731
    assert not at_flat(up[0, 1] + 0.06 * mw).mean() > lips.mean()


def test_teeth_split_ignores_the_slivers_at_the_top_and_bottom_of_the_opening():
    """Her upper and lower teeth ride with their own lips; a white sliver row at the narrow top of the opening is no
    'upper teeth' (that once sent a whole smile of upper teeth down with the lower lip)."""
    from nodes.face.animator.mouth import _teeth_split

    inside = np.array([2, 30, 100, 110, 110, 105, 100, 90, 60, 20, 3], np.float32)
    smile = np.array([0.9, 0.2, 0.6, 0.85, 0.86, 0.85, 0.8, 0.75, 0.9, 0.9, 0.0], np.float32)
    assert _teeth_split(smile, inside) == len(smile)  # all upper teeth
    both = np.array([0.1, 0.5, 0.9, 0.9, 0.8, 0.1, 0.05, 0.7, 0.8, 0.2, 0.0], np.float32)
    assert _teeth_split(both, inside) == 6  # the dark row between upper and lower teeth


def test_a_full_opening_is_capped_for_speech_and_its_ends_taper_into_the_lip_corners(astronaut_animator,
                                                                                      hopper_animator):
    """A speaking mouth opens its lips about a third of its width at most (her photo's own smile gap counts), and
    the opening is lens-shaped: the lower lip drops most in the middle and little next to the corners, which barely
    move (no vertical walls at the ends)."""
    from nodes.face import avatar as A
    from nodes.face.animator.rig import MAX_LIP_GAP

    c = _controls(jaw=1.0)
    for an in (astronaut_animator, hopper_animator):
        r, lm = an.renderer, an.face.landmarks
        mw = float(np.linalg.norm(lm[61] - lm[291]))
        gap = float(r.moved_landmarks(c, (14,))[0, 1] - r.moved_landmarks(c, (13,))[0, 1])
        assert 0.2 * mw < gap <= (MAX_LIP_GAP + 0.02) * mw  # still a clear opening, never a gaping box
        drop = an.rig.landmark_moves[CONTROLS.index("jaw")][:, 1]
        lower, upper = A.LOWER_LIP_INNER, A.UPPER_LIP_INNER
        for near_corner, corner in ((lower[1], lower[0]), (lower[-2], lower[-1])):
            assert drop[near_corner] <= 0.75 * drop[14]
            assert 0 < drop[corner] <= 0.3 * drop[14]
        assert abs(drop[upper[1]]) < 0.1 * drop[14] and abs(drop[upper[-2]]) < 0.1 * drop[14]  # no step up there
    # the photo's own gap counts: her smile already shows teeth, so her jaw adds less than Grace Hopper's
    assert astronaut_animator.rig.landmark_moves[CONTROLS.index("jaw")][14, 1] / float(np.linalg.norm(
        astronaut_animator.face.landmarks[61] - astronaut_animator.face.landmarks[291])) < 0.2


def test_the_inside_is_redder_than_the_lips_but_never_clipped_to_plastic():
    """The mouth's inside boosts her lip colour, but a strong red lip is not boosted into a channel at 0."""
    from nodes.face.animator.mouth import MIN_CHANNEL_RATIO, MouthLook, lip_tone

    def look(lip):
        return MouthLook(lip=np.array(lip, np.float32), skin=np.full(3, 180, np.float32), skin_light=180.0,
                         texture=np.zeros((4, 4), np.float32), teeth=None, teeth_alpha=None, teeth_origin=None,
                         teeth_split=0.0, upper_mid=np.zeros(2), lower_mid=np.zeros(2), mouth_width=100.0,
                         softness=1.0)

    pale = lip_tone(look((209, 155, 143)), 0.55, 1.4)
    assert pale[0] - pale[2] > 1.3 * (209 - 143) * 0.9  # a pale lip gets redder inside
    strong = lip_tone(look((215, 100, 60)), 0.55, 1.4)
    assert strong.min() >= MIN_CHANNEL_RATIO * strong.max() - 1e-3  # a strong one is not clipped
    assert strong[0] > strong[1] > strong[2]  # and keeps its hue order
    naive = 0.55 * 125.0 + 1.4 * (np.array([215, 100, 60]) - 125.0)
    assert naive.min() < MIN_CHANNEL_RATIO * naive.max()  # (the limit matters: the plain boost would clip)


def test_a_wide_opening_shows_a_tongue_and_lower_teeth_above_her_lower_lip(astronaut_animator):
    """Up the midline from her lower lip at full opening: a pale band less coloured than her lips (her lower teeth's
    tips) and the tongue, both lighter than the dark behind her upper teeth; the dark is deep inside, not a box."""
    from nodes.face import avatar as A

    r = astronaut_animator.renderer
    c = _controls(jaw=1.0)
    frame = r.render(c).astype(np.float32)
    up, low = r.moved_landmarks(c, (13,))[0], r.moved_landmarks(c, (14,))[0]
    x = int(round(up[0]))
    ys = np.arange(int(up[1]), int(low[1]) + 1)
    column = frame[ys, x - 2:x + 3].mean(1)
    lum = column.mean(1)
    spread = column.max(1) - column.min(1)  # how coloured: teeth are less coloured than the tongue
    n = len(ys)
    bottom, middle = slice(int(0.8 * n), n), slice(int(0.3 * n), int(0.75 * n))
    darkest = float(lum[middle].min())
    assert lum[bottom].max() > darkest + 60  # lower teeth / tongue low down, well above the throat's dark
    lips = r.mouth.lip
    teeth = (lum[bottom] > darkest + 60) & (spread[bottom] < float(lips.max() - lips.min()))
    assert teeth.any()  # a pale, little-coloured band low down: the tips of her lower teeth, not more lip
    # the dark (under a third of her lip brightness) covers under 30 % of the opening
    inside = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(r.moved_landmarks(c, A.LIPS_INNER)).astype(np.int32)], 1)
    assert (frame.mean(2)[inside > 0] < 0.3 * float(r.mouth.lip.mean())).mean() < 0.3
