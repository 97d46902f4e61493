"""Lip sync of the default animator, measured independently with MediaPipe on the rendered frames
(benchmarks/lipsync.py on a short subset: one English and one Russian utterance, two portraits)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("soundfile")

ROOT = Path(__file__).resolve().parent.parent


def _lipsync():
    spec = importlib.util.spec_from_file_location("face_lipsync_benchmark", ROOT / "benchmarks" / "lipsync.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed (requirements/apt-face.txt: apt-get install -y espeak-ng)")
def test_default_animator_lip_sync_targets(tmp_path: Path):
    L = _lipsync()
    utterances = (L.UTTERANCES[1], L.UTTERANCES[8])  # en, ru
    summary = L.run("default", utterances, ("astronaut", "grace_hopper"), workdir=tmp_path, log=lambda *_: None)
    assert summary["portraits"] == 2 and summary["languages"] == ["en", "ru"]
    assert summary["agreement_pooled_min"] >= 0.97, summary["per_portrait"]
    assert summary["lag_pooled_max_abs"] <= 1, summary["per_portrait"]
    assert summary["r_pooled_min"] >= 0.9, summary["per_portrait"]


def test_score_detects_a_late_mouth():
    """The measurement itself: a lip gap that trails the voice by 3 frames is reported as lag 3 and fails (a)."""
    import numpy as np

    L = _lipsync()
    rng = np.random.default_rng(0)
    db = np.full(200, -120.0)
    for start in range(10, 190, 30):
        db[start:start + 15] = -20 + 6 * rng.standard_normal(15)
    env = np.clip(db - (db.max() - 40), 0, None)
    gap = 0.1 + 0.01 * np.roll(env, 3) + 0.002 * rng.standard_normal(200)
    agreement, lag, r = L.score(db, gap)
    assert lag == 3 and agreement < 0.97
    agreement, lag, r = L.score(db, 0.1 + 0.01 * env)
    assert lag == 0 and agreement > 0.97 and r > 0.99
