"""Voice adaptation with WORLD (``pyworld``): move a default voice towards a reference speaker.

Not cloning: it matches the reference's pitch statistics (log-F0 mean and spread), warps the spectral envelope
along frequency so the formants sit where the reference's do, and equalises the long-term envelope. The
target statistics come from the reference recording (``VoiceTarget.from_audio``); a ``VoiceAdapter`` keeps
running statistics of the source voice across the sentences of a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nodes.io.media import Audio

FRAME_MS = 5.0
GRID_HZ = np.linspace(0.0, 8000.0, 257)  # envelope statistics live on this frequency grid
WARPS = np.exp(np.linspace(np.log(0.80), np.log(1.25), 37))
FIT_BAND = (GRID_HZ >= 150) & (GRID_HZ <= 5000)
MAX_EQ_DB = 12.0


class NotEnoughSpeech(ValueError):
    """The reference holds too little voiced speech to estimate a target."""


@dataclass(frozen=True)
class VoiceTarget:
    f0_log_mean: float
    f0_log_std: float
    envelope: np.ndarray  # mean log power envelope of voiced frames on GRID_HZ
    voiced_seconds: float


@dataclass
class _Analysis:
    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    rate: int


def analyse(samples: np.ndarray, rate: int) -> _Analysis:
    import pyworld as pw

    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, t = pw.dio(x, rate, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=500.0)
    f0 = pw.stonemask(x, f0, t, rate)
    sp = pw.cheaptrick(x, f0, t, rate)
    ap = pw.d4c(x, f0, t, rate)
    return _Analysis(f0, sp, ap, rate)


def _envelope_on_grid(sp: np.ndarray, rate: int) -> np.ndarray:
    """Mean log envelope of frames ``sp`` (frames x bins) on ``GRID_HZ``."""
    freqs = np.linspace(0.0, rate / 2, sp.shape[1])
    mean = np.log(np.maximum(sp, 1e-16)).mean(axis=0)
    return np.interp(GRID_HZ, freqs, mean)


def _stats(a: _Analysis) -> tuple[np.ndarray, np.ndarray]:
    voiced = a.f0 > 0
    return np.log(a.f0[voiced]), a.sp[voiced]


def target_from_audio(audio: Audio, min_voiced_seconds: float = 1.0) -> VoiceTarget:
    a = analyse(audio.samples, audio.sample_rate)
    lf0, sp = _stats(a)
    voiced = len(lf0) * FRAME_MS / 1000
    if voiced < min_voiced_seconds:
        raise NotEnoughSpeech(f"the reference has only {voiced:.1f} s of voiced speech; need at least "
                              f"{min_voiced_seconds:.1f} s")
    return VoiceTarget(float(lf0.mean()), float(lf0.std()), _envelope_on_grid(sp, a.rate), voiced)


@dataclass
class VoiceAdapter:
    """Adapts successive chunks of one source voice towards ``target`` (statistics accumulate per stream)."""

    target: VoiceTarget
    strength: float = 1.0
    _lf0_sum: float = 0.0
    _lf0_sq: float = 0.0
    _n: int = 0
    _env_sum: np.ndarray = field(default_factory=lambda: np.zeros_like(GRID_HZ))

    def _update(self, lf0: np.ndarray, sp: np.ndarray, rate: int) -> None:
        if len(lf0) == 0:
            return
        self._lf0_sum += float(lf0.sum())
        self._lf0_sq += float((lf0**2).sum())
        self._env_sum += _envelope_on_grid(sp, rate) * len(lf0)
        self._n += len(lf0)

    def process(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Adapted samples (same length and rate); silence or unvoiced chunks pass through unchanged."""
        import pyworld as pw

        if len(samples) < rate * 0.05 or not np.any(samples):
            return samples.astype(np.float32)
        a = analyse(samples, rate)
        lf0, sp_voiced = _stats(a)
        self._update(lf0, sp_voiced, rate)
        if self._n < 20:  # under 0.1 s of voiced speech seen: nothing to estimate from
            return samples.astype(np.float32)
        src_mean = self._lf0_sum / self._n
        src_std = max(np.sqrt(max(self._lf0_sq / self._n - src_mean**2, 0.0)), 1e-3)
        s = self.strength
        f0 = a.f0.copy()
        voiced = f0 > 0
        z = (np.log(f0[voiced]) - src_mean) / src_std
        t_mean = src_mean + s * (self.target.f0_log_mean - src_mean)
        t_std = src_std + s * (self.target.f0_log_std - src_std)
        f0[voiced] = np.exp(t_mean + z * t_std)

        src_env = self._env_sum / self._n
        warp = self._fit_warp(src_env) ** s
        eq = self._equaliser(src_env, warp) * s
        sp = self._transform_envelope(a.sp, rate, warp, eq)
        y = pw.synthesize(f0, sp, a.ap, rate, FRAME_MS)[: len(samples)]
        if len(y) < len(samples):
            y = np.pad(y, (0, len(samples) - len(y)))
        rms_in = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        rms_out = float(np.sqrt(np.mean(y**2))) or 1.0
        y = y * (rms_in / rms_out)
        return np.clip(y, -1.0, 1.0).astype(np.float32)

    def _fit_warp(self, src_env: np.ndarray) -> float:
        """The frequency scale factor w that best maps the source envelope onto the target's: E'(f) = E(f / w)."""
        target = self.target.envelope[FIT_BAND]
        target = target - target.mean()
        best, best_err = 1.0, np.inf
        for w in WARPS:
            warped = np.interp(GRID_HZ / w, GRID_HZ, src_env)[FIT_BAND]
            err = float(np.mean((warped - warped.mean() - target) ** 2))
            if err < best_err:
                best, best_err = float(w), err
        return best

    def _equaliser(self, src_env: np.ndarray, warp: float) -> np.ndarray:
        """Smoothed log-gain on GRID_HZ that takes the warped source's long-term envelope to the target's."""
        warped = np.interp(GRID_HZ / warp, GRID_HZ, src_env)
        diff = self.target.envelope - warped
        diff -= diff[FIT_BAND].mean()
        kernel = np.hanning(15)
        diff = np.convolve(diff, kernel / kernel.sum(), mode="same")
        limit = MAX_EQ_DB / 10 * np.log(10)  # dB of power -> natural log
        return np.clip(diff, -limit, limit)

    @staticmethod
    def _transform_envelope(sp: np.ndarray, rate: int, warp: float, eq: np.ndarray) -> np.ndarray:
        freqs = np.linspace(0.0, rate / 2, sp.shape[1])
        log_sp = np.log(np.maximum(sp, 1e-16))
        source_freqs = np.clip(freqs / warp, 0.0, rate / 2)
        warped = np.stack([np.interp(source_freqs, freqs, frame) for frame in log_sp])
        gain = np.interp(freqs, GRID_HZ, eq, right=0.0)
        return np.ascontiguousarray(np.exp(warped + gain[None, :]))


def adapt_audio(audio: Audio, target: VoiceTarget, strength: float = 1.0) -> Audio:
    """One-shot adaptation of a whole utterance."""
    adapter = VoiceAdapter(target, strength)
    return Audio(adapter.process(audio.samples, audio.sample_rate), audio.sample_rate)
