"""The persona's own voice from the voices installed here: WORLD (``pyworld``) pitch and formant shaping.

No installable Russian voice is a woman's (Festival ``msu_ru_nsh`` is a man at ~130 Hz; see
``shared/notes/tts.md``), and Piper's English voice is a man too. A ``VoiceShape`` says who the persona sounds
like - gender and the target median pitch, from the persona file's ``voice:`` section - and ``VoiceShaper``
moves each sentence of a backend voice there:

* F0: the log-F0 contour is shifted so that its median lands on the target median (the source's running median
  over the sentences seen so far), its spread scaled by ``f0_spread``; unvoiced frames stay unvoiced;
* formants: the spectral envelope is warped along frequency by ``formant_shift`` (a woman's vocal tract is
  shorter: formants ~15 % higher than a man's), only when the source's gender differs from the target's;
* aperiodicity is kept, and the output has the input's length and loudness.

Sentence-sized pieces are shaped in sub-pieces of about ``FIRST_PIECE_S`` first, so the first audio of a reply
leaves early; voices above ``SHAPE_RATE`` are shaped (and come out) at that rate. A ``voice.VoiceTarget`` (from
a user's recordings, ``adapt``) stacks on top of this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

FRAME_MS = 5.0
FIRST_PIECE_S = 0.25  # the first sub-piece of a reply: short, so it is shaped (and sent) quickly
SHAPE_RATE = 16000  # shaping runs (and its output is) at this rate at most: WORLD costs ~3x more at 32 kHz
PIECE_S = 2.0  # later sub-pieces
OVERLAP_S = 0.04  # analysis context on each side of a sub-piece (cross-faded away)

# the gender of each backend's voice per language (what the shaper starts from)
SOURCE_GENDER = {("festival", "ru"): "male", ("festival", "en"): "female", ("piper", "en"): "male",
                 ("espeak", "ru"): "male", ("espeak", "en"): "male"}
SOURCE_MEDIAN_HZ = {"male": 125.0, "female": 200.0}  # a start value before any speech has been analysed


@dataclass(frozen=True)
class VoiceShape:
    """Who the persona sounds like (from the ``voice:`` section of her persona file)."""

    gender: str = "female"  # "female" | "male"
    pitch_hz: tuple[float, float] = (180.0, 260.0)  # the range her median pitch must stay in
    median_hz: float = 215.0  # target median F0
    f0_spread: float = 1.1  # scale of the log-F0 spread around the median (livelier intonation above 1)
    formant_shift: float = 1.14  # envelope warp when the source voice is of the other gender
    reference: str = ""  # optional: a clip in the input folder, or "voice:NAME" (``main.py voice prepare``)
    backends: tuple[tuple[str, str], ...] = ()  # (language, backend) the voice prefers, e.g. (("en", "festival"),)

    def backend_for(self, language: str) -> str | None:
        return dict(self.backends).get(language)

    def __post_init__(self) -> None:
        lo, hi = self.pitch_hz
        if not 50 <= lo < hi <= 500:
            raise ValueError(f"voice pitch range {self.pitch_hz} must be two frequencies 50-500 Hz, low first")
        if not lo <= self.median_hz <= hi:
            raise ValueError(f"voice median pitch {self.median_hz} Hz is outside its range {self.pitch_hz}")
        if self.gender not in ("female", "male"):
            raise ValueError(f"voice gender must be 'female' or 'male', got {self.gender!r}")
        if not 0.7 <= self.formant_shift <= 1.4:
            raise ValueError(f"formant_shift {self.formant_shift} is outside 0.7-1.4")

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> VoiceShape:
        """From a persona file's ``voice:`` mapping (unknown keys are an error, so typos are caught)."""
        known = {"gender", "pitch_hz", "median_hz", "f0_spread", "formant_shift", "reference", "backends", "age"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown voice keys {sorted(unknown)}; known: {sorted(known)}")
        kwargs: dict[str, object] = {k: v for k, v in data.items() if k != "age"}
        if "pitch_hz" in kwargs:
            lo, hi = kwargs["pitch_hz"]  # type: ignore[misc]
            kwargs["pitch_hz"] = (float(lo), float(hi))
            kwargs.setdefault("median_hz", (float(lo) * float(hi)) ** 0.5)
        if "backends" in kwargs:
            kwargs["backends"] = tuple((str(k), str(v)) for k, v in dict(kwargs["backends"]).items())  # type: ignore
        if kwargs.get("reference") is None:
            kwargs["reference"] = ""
        return cls(**kwargs)  # type: ignore[arg-type]


def median_f0(samples: np.ndarray, rate: int) -> float | None:
    """Median F0 (Hz) of the voiced frames, or None when nothing is voiced."""
    import pyworld as pw

    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, t = pw.dio(x, rate, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=600.0)
    f0 = pw.stonemask(x, f0, t, rate)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if len(voiced) else None


@dataclass
class VoiceShaper:
    """Shapes successive pieces of one backend voice (one language) towards ``shape``."""

    shape: VoiceShape
    source_gender: str = "male"
    _log_f0: list[float] = field(default_factory=list)  # voiced log-F0 frames seen (bounded)

    def _source_median(self) -> float:
        if len(self._log_f0) < 40:
            return float(np.log(SOURCE_MEDIAN_HZ[self.source_gender]))
        return float(np.median(self._log_f0))

    @staticmethod
    def output_rate(rate: int) -> int:
        return min(rate, SHAPE_RATE)

    def pieces(self, samples: np.ndarray, rate: int, first: bool) -> Iterator[tuple[np.ndarray, bool]]:
        """The shaped ``samples`` in consecutive sub-pieces at ``output_rate(rate)``, each with whether it is the
        last (their concatenation lasts as long as the input). Each sub-piece is yielded as soon as it is shaped:
        the first audio of a reply must not wait for the next sub-piece."""
        if rate > SHAPE_RATE:
            from nodes.common.audio import resample

            samples, rate = resample(samples, rate, SHAPE_RATE), SHAPE_RATE
        n = len(samples)
        bounds, pos = [], 0
        size = FIRST_PIECE_S if first else PIECE_S
        while pos < n:
            end = min(n, pos + int(size * rate))
            if n - end < int(0.2 * rate):  # no tiny last piece
                end = n
            bounds.append((pos, end))
            pos, size = end, PIECE_S
        ctx = int(OVERLAP_S * rate)
        fade = ctx // 2
        tail: np.ndarray | None = None  # the last ``fade`` samples of the previous sub-piece, held back
        for i, (start, end) in enumerate(bounds):
            lo, hi = max(0, start - ctx), min(n, end + ctx)
            out = self.process(samples[lo:hi], rate)
            body = out[start - lo: end - lo]
            if tail is not None:  # cross-fade the seam (each sub-piece was synthesised with its own phase)
                ramp = np.linspace(0.0, 1.0, len(tail), dtype=np.float32)
                head = out[start - lo - len(tail): start - lo]
                seam = tail * (1 - ramp) + head * ramp
                body = np.concatenate([seam.astype(np.float32), body])
                tail = None
            last = i == len(bounds) - 1
            if not last and len(body) > fade:
                body, tail = body[:-fade], body[-fade:]
            yield body, last

    def process(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """``samples`` shaped (same length and loudness); silence passes through."""
        import pyworld as pw

        samples = np.asarray(samples, dtype=np.float32)
        if len(samples) < rate * 0.03 or not np.any(np.abs(samples) > 1e-4):
            return samples
        x = np.ascontiguousarray(samples, dtype=np.float64)
        f0, t = pw.dio(x, rate, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=600.0)
        f0 = pw.stonemask(x, f0, t, rate)
        voiced = f0 > 0
        if not voiced.any():
            return samples
        log_f0 = np.log(f0[voiced])
        self._log_f0 = (self._log_f0 + log_f0.tolist())[-4000:]
        src = self._source_median()
        target = np.log(self.shape.median_hz)
        new_f0 = f0.copy()
        new_f0[voiced] = np.exp(target + (log_f0 - src) * self.shape.f0_spread)
        sp = pw.cheaptrick(x, f0, t, rate)
        ap = pw.d4c(x, f0, t, rate)
        if self.source_gender != self.shape.gender:
            factor = self.shape.formant_shift if self.shape.gender == "female" else 1 / self.shape.formant_shift
            sp = warp_envelope(sp, factor)
        y = pw.synthesize(new_f0, sp, ap, rate, FRAME_MS)[: len(samples)]
        if len(y) < len(samples):
            y = np.pad(y, (0, len(samples) - len(y)))
        rms_in = float(np.sqrt(np.mean(x ** 2)))
        rms_out = float(np.sqrt(np.mean(y ** 2))) or 1.0
        return np.clip(y * (rms_in / rms_out), -1.0, 1.0).astype(np.float32)


def warp_envelope(sp: np.ndarray, factor: float) -> np.ndarray:
    """The spectral envelope with its formants moved up by ``factor`` (E'(f) = E(f / factor))."""
    bins = sp.shape[1]
    freqs = np.arange(bins, dtype=np.float64)
    source = np.clip(freqs / factor, 0, bins - 1)
    log_sp = np.log(np.maximum(sp, 1e-16))
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, bins - 1)
    frac = source - lo
    warped = log_sp[:, lo] * (1 - frac) + log_sp[:, hi] * frac
    return np.ascontiguousarray(np.exp(warped))
