"""A voice's adaptation target from 5-10 minutes of recordings, without XTTS weights.

``main.py voice prepare DIR --name NAME`` cuts and transcribes the recordings into ``<data>/user/voices/NAME/``;
``build_target`` then averages over all its clips the WORLD F0 statistics (log-F0 mean and spread of the voiced
frames) and the spectral envelope (mean log envelope of the voiced frames), and ``save_target`` writes them as
``target.npz`` beside the dataset. A persona names it with ``voice: {reference: "voice:NAME"}`` (or Load Voice
reads the same numbers from clips): the default voice, already shaped to the persona's gender and pitch, is then
adapted towards the recordings (``adapt.VoiceAdapter``). XTTS fine-tuning (``voice train``) stays the path for
users with an XTTS checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.files.folders import folders
from nodes.speak.adapt import FRAME_MS, NotEnoughSpeech, VoiceTarget, _envelope_on_grid, _stats, analyse

TARGET_FILE = "target.npz"


class TargetMissing(FileNotFoundError):
    """No prepared target for the voice; the message says how to make one."""


def voice_dir(name: str) -> Path:
    return folders.get("user") / "voices" / name


def build_target(clips: list[tuple[np.ndarray, int]], min_voiced_seconds: float = 5.0) -> VoiceTarget:
    """F0 statistics and the averaged spectral envelope of the voiced frames of all ``clips`` (samples, rate)."""
    lf0_all: list[np.ndarray] = []
    env_sum: np.ndarray | None = None
    frames = 0
    for samples, rate in clips:
        a = analyse(samples, rate)
        lf0, sp = _stats(a)
        if len(lf0) == 0:
            continue
        lf0_all.append(lf0)
        env = _envelope_on_grid(sp, rate) * len(lf0)
        env_sum = env if env_sum is None else env_sum + env
        frames += len(lf0)
    voiced = frames * FRAME_MS / 1000
    if env_sum is None or voiced < min_voiced_seconds:
        raise NotEnoughSpeech(f"the recordings hold {voiced:.1f} s of voiced speech; need at least "
                              f"{min_voiced_seconds:.0f} s (5-10 minutes of speech are recommended)")
    lf0 = np.concatenate(lf0_all)
    return VoiceTarget(float(lf0.mean()), float(lf0.std()), env_sum / frames, voiced)


def save_target(target: VoiceTarget, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TARGET_FILE
    np.savez(path, f0_log_mean=target.f0_log_mean, f0_log_std=target.f0_log_std, envelope=target.envelope,
             voiced_seconds=target.voiced_seconds)
    return path


def load_target(name: str) -> VoiceTarget:
    path = voice_dir(name) / TARGET_FILE
    if not path.is_file():
        raise TargetMissing(f"voice {name!r} has no {TARGET_FILE} in {path.parent}; run "
                            f"`python main.py voice prepare DIR --name {name}` on 5-10 minutes of recordings")
    with np.load(path) as data:
        return VoiceTarget(float(data["f0_log_mean"]), float(data["f0_log_std"]), np.asarray(data["envelope"]),
                           float(data["voiced_seconds"]))


def target_from_dataset(name: str, folder: Path | None = None) -> Path:
    """Build and save the target of the prepared dataset ``name`` (its ``wavs/``); returns the file. ``folder``:
    the dataset's folder when it is not (yet) at ``voice_dir(name)`` (``voice prepare`` builds it aside)."""
    import soundfile as sf

    folder = folder or voice_dir(name)
    wavs = sorted((folder / "wavs").glob("*.wav"))
    if not wavs:
        raise TargetMissing(f"voice {name!r} has no prepared clips in {folder / 'wavs'}; run "
                            f"`python main.py voice prepare DIR --name {name}` first")
    clips = []
    for wav in wavs:
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
        clips.append((samples.mean(axis=1), int(rate)))
    return save_target(build_target(clips), folder)
