"""From audio (and phoneme timings, emotion) to per-frame controls: the performance of the default animator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nodes.face.animator.rig import CONTROLS
from nodes.face.animator.visemes import shape_at
from nodes.io.media import PhonemeTiming

# Emotion label -> target (smile, brows_up, frown).
EXPRESSIONS: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0),
    "happy": (1.0, 0.25, 0.0),
    "sad": (-0.6, 0.35, 0.35),
    "surprised": (0.1, 1.0, 0.0),
    "angry": (-0.25, 0.0, 1.0),
}

SILENCE_DB = -60.0  # below this a frame is silent whatever the level
DYNAMIC_RANGE_DB = 31.0  # the mouth starts opening this far below the speech level
OPEN_SPAN_DB = 26.0  # ... and is fully open this far above that point


@dataclass(frozen=True)
class FrameControls:
    amps: np.ndarray  # (len(CONTROLS),) amplitudes of the rig's controls
    roll: float = 0.0  # head roll in radians
    shift: tuple[float, float] = (0.0, 0.0)  # head translation in pixels
    breath: float = 0.0  # vertical shift of the whole picture in pixels
    voice_db: float = -120.0

    def amp(self, name: str) -> float:
        return float(self.amps[CONTROLS.index(name)])


def frame_db(samples: np.ndarray) -> float:
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms + 1e-9)


class Driver:
    """Stateful: call ``step`` once per frame, in order."""

    def __init__(self, fps: float = 25.0, seed: int = 0) -> None:
        self.fps = fps
        self.dt = 1.0 / fps
        self.rng = np.random.default_rng(seed)
        self.t = 0.0  # stream time
        self.level_db = -20.0  # tracked speech level (peak hold with slow decay)
        self.jaw = 0.0
        self.spread = 0.0
        self.round = 0.0
        self.expr = np.zeros(3)
        self.next_blink = 1.5 + self.rng.uniform(0, 2.0)
        self.blink_start = -10.0
        self.speaking = 0.0  # 0..1, slow: more head motion while talking
        self._motion = self.rng.uniform(0, 2 * math.pi, size=(3, 3))
        self._freqs = np.array([[0.11, 0.23, 0.37], [0.07, 0.19, 0.31], [0.09, 0.17, 0.29]])

    def force_blink(self) -> None:
        self.blink_start = self.t

    def step(self, samples: np.ndarray | None, timings: tuple[PhonemeTiming, ...] = (), t_utt: float | None = None,
             emotion: str | None = None) -> FrameControls:
        db = frame_db(samples) if samples is not None else -120.0
        # Level tracking: follows loud frames at once, decays 1.5 dB/s, never below -36 dBFS.
        if db > self.level_db:
            self.level_db = db
        else:
            self.level_db = max(-36.0, self.level_db - 1.5 * self.dt)
        floor = self.level_db - DYNAMIC_RANGE_DB
        target = 0.0
        if db > max(floor, SILENCE_DB):
            target = min(1.0, (db - floor) / OPEN_SPAN_DB) ** 0.8
        spread_t = round_t = 0.0
        if timings and t_utt is not None and target > 0:
            v = shape_at(timings, t_utt)
            if v is not None:
                target = min(1.0, target * max(0.25, v.open))
                spread_t, round_t = v.spread, v.round
        a = 0.9 if target > self.jaw else 0.9  # attack / release per frame (the lips move fast)
        self.jaw += a * (target - self.jaw)
        self.spread += 0.5 * (spread_t * min(1.0, 2 * self.jaw) - self.spread)
        self.round += 0.5 * (round_t * min(1.0, 2 * self.jaw) - self.round)
        self.speaking += (0.08 if target > 0 else 0.02) * ((1.0 if target > 0 else 0.0) - self.speaking)

        # Expression from the emotion label, eased in over ~0.4 s.
        goal = np.array(EXPRESSIONS.get((emotion or "neutral").lower(), EXPRESSIONS["neutral"]))
        self.expr += (1.0 - math.exp(-self.dt / 0.4)) * (goal - self.expr)

        # Blinks every 2.5-6 s (more often while talking), 200 ms each.
        if self.t >= self.next_blink:
            self.blink_start = self.t
            self.next_blink = self.t + self.rng.uniform(2.5, 6.0) * (0.8 if self.speaking > 0.5 else 1.0)
        bt = (self.t - self.blink_start) / 0.2
        blink = math.sin(math.pi * bt) ** 0.6 if 0.0 <= bt < 1.0 else 0.0

        # Head motion: slow sums of sines (idle sway), livelier and nodding with the voice while talking.
        tt = self.t
        sway = [float(np.sum(np.sin(2 * math.pi * self._freqs[k] * tt + self._motion[k]))) / 3 for k in range(3)]
        gain = 1.0 + 1.2 * self.speaking
        roll = math.radians(1.2) * sway[0] * gain
        shift = (2.0 * sway[1] * gain, 1.5 * sway[2] * gain + 1.2 * self.jaw)
        breath = 1.3 * math.sin(2 * math.pi * 0.23 * tt) * (1.0 - 0.5 * self.speaking)

        smile, brows, frown = self.expr
        brows_emph = 0.25 * self.jaw * self.speaking  # brows lift a little on stressed syllables
        amps = np.zeros(len(CONTROLS), np.float32)
        amps[CONTROLS.index("jaw")] = max(0.0, (self.jaw - 0.04) / 0.96)  # a dead zone: the lips meet
        amps[CONTROLS.index("spread")] = self.spread + 0.3 * max(smile, 0.0)
        amps[CONTROLS.index("round")] = self.round
        amps[CONTROLS.index("smile")] = smile
        amps[CONTROLS.index("blink")] = blink
        amps[CONTROLS.index("brows_up")] = brows + brows_emph
        amps[CONTROLS.index("frown")] = frown
        self.t += self.dt
        return FrameControls(amps=amps, roll=roll, shift=shift, breath=breath, voice_db=db)
