"""The default animator: landmark-driven warping that runs in real time on a CPU, no learned weights."""

from __future__ import annotations

import numpy as np

from nodes.face.avatar import FaceAvatar
from nodes.io.media import PhonemeTiming


class DefaultAnimator:
    """Renders 512x512 frames of a FaceAvatar, one per call of ``frame`` (audio of that frame in, image out)."""

    name = "default"

    def __init__(self, face: FaceAvatar, fps: float = 25.0, seed: int = 0) -> None:
        from nodes.face.animator.drive import Driver
        from nodes.face.animator.render import Renderer
        from nodes.face.animator.rig import build_rig

        self.face = face
        self.rig = build_rig(face)
        self.renderer = Renderer(face, self.rig)
        self.driver = Driver(fps=fps, seed=seed)
        self.last_controls = None

    @property
    def rig_controls(self) -> tuple[str, ...]:
        from nodes.face.animator.rig import CONTROLS

        return CONTROLS

    def frame(self, samples: np.ndarray | None, sample_rate: int, timings: tuple[PhonemeTiming, ...] = (),
              t_utt: float | None = None, emotion: str | None = None) -> np.ndarray:
        controls = self.driver.step(samples, timings=timings, t_utt=t_utt, emotion=emotion)
        self.last_controls = controls
        return self.renderer.render(controls)

    # FaceBackend protocol (nodes.face.stream): one image per frame, nothing held back.
    def push(self, item) -> list[np.ndarray]:
        return [self.frame(item.samples, item.sample_rate, item.timings, item.t_utt, item.emotion)]

    def flush(self) -> list[np.ndarray]:
        return []
