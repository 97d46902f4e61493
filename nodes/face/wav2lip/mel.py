"""Wav2Lip's mel-spectrogram front end (16 kHz, n_fft 800, hop 200, 80 mels 55-7600 Hz, pre-emphasis 0.97,
dB with -100 dB floor and 20 dB reference, normalised symmetrically to [-4, 4]), computed on any slice of a
stream so that frames can be rendered as audio arrives. 80 mel frames per second; a video frame i at 25 fps
uses the 16 mel frames starting at int(i * 80 / 25) (0.2 s of audio from the frame's start).
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
MEL_STEP = 16  # mel frames per video frame window
MEL_FPS = SAMPLE_RATE / HOP  # 80


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    f = np.asarray(f, np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp = 200.0 / 3
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, 1000.0 * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """(80, 401) Slaney-normalised triangular filters (librosa.filters.mel(htk=False, norm='slaney'))."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:N_MELS + 2] - mel_f[:N_MELS])
    return (weights * enorm[:, None]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(WIN)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / WIN)).astype(np.float32)  # periodic Hann


def mel_frames(audio: np.ndarray, first: int, count: int, offset: int = 0) -> np.ndarray:
    """Normalised mel frames ``first .. first+count-1`` of a 16 kHz stream, (80, count).

    ``audio`` holds the stream's samples from sample ``offset`` on; samples outside it count as silence
    (librosa's centred STFT with zero padding). Frame j is centred on sample j * HOP.
    """
    start = first * HOP - N_FFT // 2 - 1  # one extra sample for the pre-emphasis filter
    length = (count - 1) * HOP + N_FFT + 1
    seg = np.zeros(length, np.float32)
    lo, hi = max(start, offset), min(start + length, offset + len(audio))
    if hi > lo:
        seg[lo - start:hi - start] = audio[lo - offset:hi - offset]
    emph = seg[1:] - PREEMPHASIS * seg[:-1]
    idx = np.arange(count)[:, None] * HOP + np.arange(N_FFT)[None, :]
    spec = np.abs(np.fft.rfft(emph[idx] * _window(), n=N_FFT, axis=1)).T  # (401, count)
    mel = mel_basis() @ spec
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS
    return np.clip(norm, -MAX_ABS, MAX_ABS).astype(np.float32)


def window_for_frame(index: int, fps: float = 25.0) -> int:
    """The first mel frame of video frame ``index``'s window."""
    return int(index * MEL_FPS / fps)
