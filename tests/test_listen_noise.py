"""Hearing in noise: the noise-suppression front end touches only noisy turns; final passes use beam search,
incremental passes stay greedy."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.listen.denoise import GATE_SNR_DB, estimated_snr_db, suppress_noise

RATE = 16000


def voiced(seconds: float = 1.5, hz: float = 180.0) -> np.ndarray:
    """A vowel-like harmonic sound with a syllable rhythm (no pauses inside)."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(hz * (1 + 0.05 * np.sin(2 * np.pi * 2 * t))) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def turn(snr_db: float | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(the turn as the VAD hands it over: 200 ms pre-roll + speech + 200 ms trailing silence, its speech part)."""
    pad = np.zeros(int(0.2 * RATE), np.float32)
    speech = voiced()
    clean = np.concatenate([pad, speech, pad])
    if snr_db is None:
        return clean, speech
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(speech ** 2) / 10 ** (snr_db / 10))
    return clean + noise, speech


def test_clean_turns_pass_through_untouched() -> None:
    digital, _ = turn(None)  # synthetic speech: digital silence around it
    assert estimated_snr_db(digital) == float("inf")
    assert suppress_noise(digital) is digital or np.array_equal(suppress_noise(digital), digital)
    quiet_room, _ = turn(45.0)  # a close microphone in a quiet room
    assert estimated_snr_db(quiet_room) > GATE_SNR_DB
    assert np.array_equal(suppress_noise(quiet_room), quiet_room)
    tiny = np.full(400, 0.01, np.float32)  # too short to judge
    assert np.array_equal(suppress_noise(tiny), tiny)


@pytest.mark.parametrize("snr_db", [10.0, 15.0, 20.0])
def test_noisy_turns_are_measured_and_cleaned(snr_db: float) -> None:
    noisy, speech = turn(snr_db)
    estimate = estimated_snr_db(noisy)
    assert abs(estimate - snr_db) < 3.0, estimate  # the edges are where the noise is measured
    out = suppress_noise(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    edge = slice(0, int(0.2 * RATE))  # noise only
    body = slice(int(0.3 * RATE), int(1.6 * RATE))  # speech
    noise_drop_db = 10 * np.log10(np.mean(noisy[edge] ** 2) / np.mean(out[edge] ** 2))
    assert noise_drop_db > 0.8, noise_drop_db  # a gentle gate (see nodes/listen/denoise.py): about 1.2 dB here
    error_before = np.mean((noisy[body] - np.concatenate([np.zeros(int(0.2 * RATE)), speech])[body]) ** 2)
    error_after = np.mean((out[body] - np.concatenate([np.zeros(int(0.2 * RATE)), speech])[body]) ** 2)
    assert error_after < 0.9 * error_before  # closer to the clean speech, not just quieter
    assert np.mean(out[body] ** 2) > 0.8 * np.mean(speech[int(0.1 * RATE):int(1.4 * RATE)] ** 2)  # speech kept


def test_every_pass_decodes_with_beam_search() -> None:
    """Incremental passes too: in live use the pass that ran at the turn's closing pause is reused as the final."""
    from nodes.listen import weights
    from nodes.listen.backends import BEAM, FasterWhisperBackend

    try:
        found = weights.locate("whisper-base")
    except weights.WhisperWeightsMissing:
        pytest.skip("whisper-base is not installed (python main.py models install)")
    backend = FasterWhisperBackend(found.path, cpu_threads=1)
    beams: list[int] = []

    class Spy:  # the CTranslate2 model, recording the beam width of each decode
        def __init__(self, model: object) -> None:
            self._model = model

        def generate(self, *args: object, **kwargs: object) -> object:
            beams.append(int(kwargs["beam_size"]))  # type: ignore[call-overload]
            return self._model.generate(*args, **kwargs)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self._model, name)

    backend.model.model = Spy(backend.model.model)
    noisy, _ = turn(15.0)
    backend.transcribe(noisy, ("en",), quick=True)
    backend.transcribe(noisy, ("en",))
    assert BEAM > 1 and beams and set(beams) == {BEAM}
