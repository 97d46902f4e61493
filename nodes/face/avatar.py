"""The FACE value: a preprocessed avatar (aligned 512x512 crop, landmarks, regions, the way back to the photo).

Landmark indices are MediaPipe face mesh's (468 points, 478 with the iris refinement).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CROP_SIZE = 512

# Ordered contours of the MediaPipe face mesh (indices into the 478 landmarks).
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# "right"/"left" are the subject's (MediaPipe's naming): the right eye is on the image's left.
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382)
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER = (398, 384, 385, 386, 387, 388, 466)
LEFT_EYE_LOWER = (382, 381, 380, 374, 373, 390, 249)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
JAW_LOWER = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)  # chin and lower jaw line
NOSE = (1, 2, 4, 5, 6, 19, 94, 168, 197, 195, 98, 327)
MOUTH_CORNERS = (61, 291)
INNER_LIP_MID = (13, 14)  # upper / lower inner-lip midpoints: the lip gap
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


@dataclass(frozen=True)
class FaceAvatar:
    """A photo prepared for animation. All coordinates are pixels of the 512x512 crop unless named ``photo``."""

    image: np.ndarray  # (512, 512, 3) uint8 RGB: the aligned crop
    landmarks: np.ndarray  # (478, 2) float32, MediaPipe face mesh in crop pixels
    regions: dict[str, np.ndarray]  # name -> (k, 2) float32 polygon in crop pixels
    boxes: dict[str, tuple[int, int, int, int]]  # name -> (x0, y0, x1, y1) in crop pixels
    crop_to_photo: np.ndarray  # (2, 3) float64 affine: crop pixel -> photo pixel
    photo: np.ndarray  # (H, W, 3) uint8 RGB: the photo the crop came from (for pasting frames back)
    source_sha256: str = ""  # of the photo's pixels
    warnings: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def photo_to_crop(self) -> np.ndarray:
        m = np.vstack([self.crop_to_photo, [0.0, 0.0, 1.0]])
        return np.linalg.inv(m)[:2]

    def points(self, indices: tuple[int, ...]) -> np.ndarray:
        return self.landmarks[list(indices)]

    @property
    def interocular(self) -> float:
        """Distance between the eye centres in crop pixels: the face's scale."""
        return float(np.linalg.norm(self.points(LEFT_EYE).mean(0) - self.points(RIGHT_EYE).mean(0)))

    def paste_into_photo(self, frame: np.ndarray, feather: int = 15) -> np.ndarray:
        """Put an animated crop frame back into the photo with a feathered edge (the photo's resolution)."""
        import cv2

        h, w = self.photo.shape[:2]
        warped = cv2.warpAffine(frame, self.crop_to_photo, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        mask = np.zeros(frame.shape[:2], np.float32)
        mask[feather:-feather, feather:-feather] = 1.0
        mask = cv2.GaussianBlur(mask, (0, 0), feather / 2)
        alpha = cv2.warpAffine(mask, self.crop_to_photo, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        return (warped * alpha + self.photo * (1.0 - alpha)).astype(np.uint8)
