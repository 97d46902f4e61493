"""Audio file decoding: every WAV flavour, MP3/OGG/FLAC, any rate and layout -> 16 kHz mono; errors; streaming."""

from __future__ import annotations

import struct

import numpy as np
import psutil
import pytest
import soundfile

from nodes.common.audio import (AudioDecodeError, float_to_pcm16, iter_audio, load_audio, pcm16_to_float, probe_duration,
                            write_wav)
from nodes.io.media import Audio


def tone(freq: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def peak_hz(audio: Audio) -> float:
    spectrum = np.abs(np.fft.rfft(audio.samples))
    return float(np.argmax(spectrum) * audio.sample_rate / len(audio.samples))


@pytest.mark.parametrize("fmt,subtype,rate,channels", [
    ("WAV", "PCM_U8", 22050, 1),
    ("WAV", "PCM_16", 44100, 2),
    ("WAV", "PCM_24", 48000, 1),
    ("WAV", "PCM_32", 16000, 1),
    ("WAV", "FLOAT", 32000, 2),
    ("WAVEX", "PCM_24", 44100, 6),  # WAVE_FORMAT_EXTENSIBLE, 5.1
    ("WAV", "PCM_16", 8000, 2),  # 8 kHz stereo
    ("FLAC", "PCM_16", 44100, 2),
    ("OGG", "VORBIS", 48000, 2),
    ("MP3", "MPEG_LAYER_III", 44100, 2),
])
def test_formats_decode_to_16k_mono(tmp_path, fmt, subtype, rate, channels):
    path = tmp_path / f"tone.{fmt.lower().replace('wavex', 'wav')}"
    soundfile.write(str(path), tone(440.0, 1.5, rate, channels), rate, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.sample_rate == 16000 and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration - 1.5) < 0.06, audio.duration  # MP3 adds encoder padding
    assert abs(peak_hz(audio) - 440.0) < 5
    assert 0.3 < np.abs(audio.samples).max() <= 1.0


def test_wave_format_extensible_header_is_really_extensible(tmp_path):
    path = tmp_path / "ext.wav"
    soundfile.write(str(path), tone(300.0, 0.5, 48000, 2), 48000, format="WAVEX", subtype="PCM_24")
    fmt_tag = struct.unpack("<H", path.read_bytes()[20:22])[0]
    assert fmt_tag == 0xFFFE
    assert abs(peak_hz(load_audio(path)) - 300.0) < 5


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage garbage" * 3, "not a recognised audio format"),
    (b"hello, this is a text file, not audio\n" * 50, "not a recognised audio format"),
])
def test_bad_files_raise_clear_errors(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_random_bytes_and_missing_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.mp3"
    path.write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError, match="noise.mp3"):
        load_audio(path)
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


def test_zero_length_wav_is_empty_audio(tmp_path):
    path = tmp_path / "zero.wav"
    soundfile.write(str(path), np.zeros(0, dtype=np.float32), 16000)
    audio = load_audio(path)
    assert audio.samples.shape == (0,) and audio.sample_rate == 16000


def test_pcm16_round_trip_and_write_wav(tmp_path):
    samples = np.array([0.0, 0.5, -0.5, 0.999, -1.0], dtype=np.float32)
    back = pcm16_to_float(float_to_pcm16(samples))
    assert np.allclose(back, samples, atol=1 / 32767)
    with pytest.raises(ValueError):
        pcm16_to_float(b"\x00\x01\x02")
    path = write_wav(tmp_path / "out" / "x.wav", Audio(tone(1000.0, 0.25, 24000), 24000))
    again = load_audio(path, target_rate=24000)
    assert len(again.samples) == 6000 and abs(peak_hz(again) - 1000.0) < 10


def test_iter_audio_chunks_match_whole_decode(tmp_path):
    path = tmp_path / "t.wav"
    soundfile.write(str(path), tone(523.0, 2.3, 44100, 2), 44100)
    chunks = list(iter_audio(path, 16000, chunk_seconds=0.5))
    assert all(len(c) == 8000 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 8000
    whole = load_audio(path)
    assert np.allclose(np.concatenate(chunks), whole.samples, atol=1e-6)


def sparse_wav(path, seconds: float, rate: int = 8000, channels: int = 2) -> None:
    """A valid PCM16 WAV of ``seconds`` of silence written as a sparse file (no disk or memory cost)."""
    n = int(seconds * rate) * channels * 2
    with open(path, "wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " +
                 struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16) +
                 b"data" + struct.pack("<I", n))
        fh.truncate(44 + n)


def test_hour_long_file_streams_with_bounded_memory(tmp_path):
    path = tmp_path / "hour.wav"
    sparse_wav(path, 3600.0, rate=16000, channels=1)  # one hour (115 MB on paper, sparse on disk)
    assert probe_duration(path) == pytest.approx(3600.0)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    total = 0
    for i, chunk in enumerate(iter_audio(path, 16000, chunk_seconds=5.0)):
        total += len(chunk)
        if i % 10 == 0:
            peak = max(peak, proc.memory_info().rss)
    assert total == 3600 * 16000
    # The whole hour at 16 kHz float32 would be 230 MB; streaming stays far below that.
    assert peak - base < 80 * 2**20, f"RSS grew by {(peak - base) / 2**20:.0f} MiB"
