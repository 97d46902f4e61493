"""Per-turn latency stamps of a live conversation: when each stage of a reply first happened.

A turn's clock starts at the end of the user's speech (or at the moment a typed message arrived) and each
stage records the wall-clock time (epoch milliseconds, the browser's clock on the same machine) it was
first reached. Only the first mark of a stage counts: later sentences and chunks of the same turn do not
move it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Stages in pipeline order. ``end_of_speech`` is the origin of every duration.
STAGES: tuple[str, ...] = (
    "end_of_speech",
    "asr_final",
    "llm_first_token",
    "llm_first_sentence",
    "tts_first_chunk",
    "first_frame_sent",
    "first_audio_played",
    "first_frame_played",
)
ORIGIN = "end_of_speech"
PLAYED = ("first_audio_played", "first_frame_played")


@dataclass
class TurnStamps:
    turn_id: int
    stamps: dict[str, float] = field(default_factory=dict)  # stage -> epoch ms
    recorded: bool = False

    def mark(self, stage: str, at_ms: float) -> bool:
        """Record ``stage`` at ``at_ms`` unless it was already recorded; True when this call set it."""
        if stage in self.stamps:
            return False
        self.stamps[stage] = float(at_ms)
        return True

    def since_origin(self) -> dict[str, float]:
        """Milliseconds from the end of speech to each later stage (empty without an origin)."""
        origin = self.stamps.get(ORIGIN)
        if origin is None:
            return {}
        return {k: v - origin for k, v in self.stamps.items() if k != ORIGIN}

    @property
    def played(self) -> bool:
        return all(k in self.stamps for k in PLAYED)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation; None for no values."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(turns: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float | int | None]]:
    """Median / p90 / count of each stage's delay after the end of speech, over turns' stamps (epoch ms)."""
    per_stage: dict[str, list[float]] = {}
    for stamps in turns:
        origin = stamps.get(ORIGIN)
        if origin is None:
            continue
        for stage, at in stamps.items():
            if stage != ORIGIN:
                per_stage.setdefault(stage, []).append(at - origin)
    order = {s: i for i, s in enumerate(STAGES)}
    out: dict[str, dict[str, float | int | None]] = {}
    for stage in sorted(per_stage, key=lambda s: order.get(s, len(order))):
        values = per_stage[stage]
        out[stage] = {"median_ms": statistics.median(values), "p90_ms": percentile(values, 0.9),
                      "n": len(values)}
    return out
