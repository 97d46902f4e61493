"""The face benchmark's portraits: where each one comes from, its licence, and the group it belongs to:

* tuning set: looked at while the animator was tuned;
* held back (``HELD_BACK``): kept aside in round 1, but looked at while teeth detection was fixed, so no longer blind;
* blind (``BLIND``): added in round 2; its animated output was not looked at before the final run.

Sources (every photo comes from a registry package; variants are made here from them):

* ``skimage.data.astronaut`` (scikit-image wheel): NASA portrait of Eileen Collins, public domain.
* ``grace_hopper.jpg`` (matplotlib sample data): US Navy photo, public domain.
* ``insightface==2.1`` wheel, ``data/images/t1.jpg`` (a group photo; four faces cut out): the package states no
  licence for the photo: benchmark use only, never shipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HELD_BACK = ("t1_man_smiling", "hopper_low_light", "astronaut_deep_tone")  # looked at in round 1 (teeth detection)
BLIND = ("t1_man_bearded",)  # round 2: its animated frames were not looked at before the final run
T1_CROPS = {  # (x0, y0, x1, y1) in insightface's sample t1.jpg (1280x886)
    "t1_man_three_quarter": (420, 200, 660, 460),
    "t1_man_smiling": (700, 270, 920, 500),
    "t1_man_turned": (860, 0, 1100, 240),
    "t1_woman_three_quarter": (240, 90, 440, 300),
}


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed distribution, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], *parts)
    return path if path.is_file() else None


def with_glasses(photo: np.ndarray) -> np.ndarray:
    """Thin dark frames drawn over the eyes (made here): tests that glasses stay rigid."""
    import cv2

    from nodes.face import avatar as A
    from nodes.face.prepare import prepare_avatar

    face = prepare_avatar(photo)
    m = face.crop_to_photo
    to_photo = lambda p: m[:, :2] @ p + m[:, 2]  # noqa: E731
    eyes = [to_photo(face.points(A.RIGHT_EYE).mean(0)), to_photo(face.points(A.LEFT_EYE).mean(0))]
    io = float(np.linalg.norm(eyes[1] - eyes[0]))
    out = photo.copy()
    thick = max(2, int(0.055 * io))
    for c in eyes:
        cv2.ellipse(out, (int(c[0]), int(c[1] + 0.05 * io)), (int(0.42 * io), int(0.3 * io)), 0, 0, 360,
                    (28, 24, 22), thick, cv2.LINE_AA)
    bridge_y = int((eyes[0][1] + eyes[1][1]) / 2 - 0.05 * io)
    cv2.line(out, (int(eyes[0][0] + 0.42 * io), bridge_y), (int(eyes[1][0] - 0.42 * io), bridge_y), (28, 24, 22),
             thick, cv2.LINE_AA)
    return out


def deep_tone(photo: np.ndarray) -> np.ndarray:
    """Skin (YCrCb skin range) darkened towards a deep brown, the rest untouched (made here; a tone variant, not a
    different person)."""
    import cv2

    ycc = cv2.cvtColor(photo, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    skin = ((ycc[..., 1] > 135) & (ycc[..., 1] < 180) & (ycc[..., 2] > 85) & (ycc[..., 2] < 135)).astype(np.float32)
    skin = cv2.GaussianBlur(skin, (0, 0), 3)[..., None]
    dark = photo.astype(np.float32) * np.array([0.42, 0.33, 0.28], np.float32)
    return np.clip(photo * (1 - skin) + dark * skin, 0, 255).astype(np.uint8)


def low_light(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """Dim, under-exposed and noisy (made here)."""
    rng = np.random.default_rng(seed)
    dim = 255.0 * (photo.astype(np.float32) / 255.0) ** 1.6 * 0.45
    return np.clip(dim + rng.normal(0, 3.0, dim.shape), 0, 255).astype(np.uint8)


def with_beard(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """A full dark beard and moustache drawn over the lower face (made here): hair around a mouth that opens, and a
    chin that must carry it down rigidly. The beard covers the face below the mouth corners down to the jaw line
    and the band between the nose and the upper lip; the lips stay uncovered."""
    import cv2

    from nodes.face import avatar as A
    from nodes.face.prepare import prepare_avatar

    face = prepare_avatar(photo)
    m = face.crop_to_photo
    to_photo = lambda p: p @ m[:, :2].T + m[:, 2]  # noqa: E731
    jaw = to_photo(face.points(A.JAW_LOWER))
    lips = to_photo(face.points(A.LIPS_OUTER))
    corners = to_photo(face.points(A.MOUTH_CORNERS))
    width = float(np.linalg.norm(corners[1] - corners[0]))
    h, w = photo.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(np.vstack([jaw, corners[::-1] - [0, 0.15 * width]])).astype(np.int32)], 1.0)
    base = to_photo(face.points((98, 2, 327)))  # the nose's base: nostrils and the point between them
    moustache = np.vstack([to_photo(face.points(A.UPPER_LIP_OUTER)), base + [0, 0.08 * width]])
    cv2.fillPoly(mask, [np.round(cv2.convexHull(moustache.astype(np.float32))).astype(np.int32)], 1.0)
    cv2.fillPoly(mask, [np.round(lips).astype(np.int32)], 0.0)  # the lips stay bare
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.04 * width))[..., None]
    rng = np.random.default_rng(seed)
    hair = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    hair = cv2.GaussianBlur(hair, (0, 0), sigmaX=0.3, sigmaY=max(1.0, 0.03 * width))  # short vertical strands
    hair = (hair - hair.mean()) / (hair.std() + 1e-6)
    shade = photo.astype(np.float32).mean(axis=2, keepdims=True) / 255.0  # keep the photo's light on the beard
    colour = np.array([58, 44, 34], np.float32) * (0.6 + 0.8 * shade) * (1.0 + 0.25 * hair[..., None])
    return np.clip(photo * (1 - 0.9 * mask) + colour * 0.9 * mask, 0, 255).astype(np.uint8)


def benchmark_portraits(lipsync) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (photo, where it comes from and its licence); ``lipsync`` is benchmarks/lipsync.py as a module."""
    import cv2

    base = lipsync.portraits()
    out = {"astronaut": (base["astronaut"], "skimage.data.astronaut (NASA, public domain)"),
           "grace_hopper": (base["grace_hopper"], "matplotlib sample data (US Navy, public domain)"),
           "astronaut_tilted": (base["astronaut_tilted"], "made here: mirrored, rotated, smaller, warmer"),
           "astronaut_glasses": (with_glasses(base["astronaut"]), "made here: glasses drawn on the astronaut"),
           "hopper_low_light": (low_light(base["grace_hopper"]), "made here: Grace Hopper under-exposed, noisy"),
           "astronaut_deep_tone": (deep_tone(base["astronaut"]), "made here: astronaut, skin darkened")}
    t1 = package_file("insightface", "data", "images", "t1.jpg")
    if t1 is not None:
        group = cv2.cvtColor(cv2.imread(str(t1)), cv2.COLOR_BGR2RGB)
        for name, (x0, y0, x1, y1) in T1_CROPS.items():
            out[name] = (np.ascontiguousarray(group[y0:y1, x0:x1]),
                         "insightface==2.1 data/images/t1.jpg (cut out; licence not stated: benchmark use only)")
        out["t1_man_bearded"] = (with_beard(out["t1_man_three_quarter"][0]),
                                 "made here: a beard drawn on the t1 three-quarter man")
    return out
