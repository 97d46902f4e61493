"""The 3-minute version of benchmarks/soak.py (the hour-long soak), with the default stack: continuous spoken
conversation in English and Russian with barge-ins and session turnover; zero errors, RSS growth < 5 % after
warm-up, no leaked threads or file descriptors, every session freed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
async def test_three_minute_soak_with_the_default_stack():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the simulated user speaks with it)")
    from nodes.listen import weights

    if not weights.available_models():
        pytest.skip("no Whisper weights installed (python main.py models install whisper-base)")
    import soak

    from engine.app.malloc import limit_malloc_arenas

    limit_malloc_arenas()  # as main.py does at start-up (arenas that earlier tests' threads created stay)
    report = await soak.soak(minutes=3.0, session_turns=3, barge_every=4, turn_timeout=120.0)
    verdict = report.verdict()
    print(f"\nsoak 3 min: {report.turns} turns, {report.barge_ins} barge-ins, {report.sessions} sessions; "
          f"{verdict}; samples {report.samples}")
    assert not report.errors, report.errors
    assert report.sessions >= 2 and report.turns >= 4
    assert verdict["rss_growth"] < soak.MAX_RSS_GROWTH, verdict
    assert verdict["threads_end"] <= verdict["threads_baseline"], verdict
    assert verdict["fds_end"] <= verdict["fds_baseline"], verdict
    assert verdict["passed"], verdict
