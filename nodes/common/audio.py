"""Audio helpers shared by the nodes, each defined once: decoding (any container/codec PyAV (FFmpeg) reads, to
mono float32), THE resampler (``resample`` for whole arrays, ``StreamResampler`` for chunked streams; both soxr HQ)
and PCM16 <-> float conversion (``pcm16_to_float``, ``float_to_pcm16``).

``load_audio`` reads a whole file; ``iter_audio`` streams it in fixed-size chunks with bounded memory (an hour
of audio never sits in memory at once). Decoding is PyAV; channels are averaged to mono; resampling is soxr
(streaming, so chunk edges are seamless). WAV of any flavour (PCM 8/16/24/32-bit, float, WAVE_FORMAT_EXTENSIBLE),
MP3, OGG/Vorbis/Opus, FLAC and whatever else FFmpeg decodes are accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nodes.io.media import Audio

logger = logging.getLogger(__name__)

DEFAULT_RATE = 16000


class AudioDecodeError(ValueError):
    """A file could not be read as audio; the message names the file and what to do."""


def pcm16_to_float(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Little-endian signed 16-bit PCM (bytes or an int16 array) -> float32 in [-1, 1)."""
    if isinstance(data, np.ndarray):
        ints = data.astype("<i2", copy=False)
    else:
        raw = bytes(data)
        if len(raw) % 2:
            raise ValueError(f"PCM16 data must have an even number of bytes, got {len(raw)}")
        ints = np.frombuffer(raw, dtype="<i2")
    return ints.astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian signed 16-bit PCM bytes (clipped)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 samples with soxr (high quality)."""
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ").astype(np.float32)


class StreamResampler:
    """Resamples a chunked mono float32 stream with seamless chunk edges (soxr HQ, the same filter as
    ``resample``). The input rate may change between chunks: the stream then starts over at the new rate."""

    def __init__(self, to_rate: int) -> None:
        self.to_rate = to_rate
        self._from_rate: int | None = None
        self._stream = None

    def __call__(self, samples: np.ndarray, from_rate: int, last: bool = False) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if from_rate == self.to_rate:
            return samples
        if self._stream is None or from_rate != self._from_rate:
            import soxr

            self._stream = soxr.ResampleStream(from_rate, self.to_rate, 1, dtype="float32", quality="HQ")
            self._from_rate = from_rate
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype=np.float32)


def write_wav(path: Path | str, audio: Audio) -> Path:
    """Write ``audio`` as a 16-bit PCM mono WAV file."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.clip(audio.samples, -1.0, 1.0), audio.sample_rate, subtype="PCM_16")
    return path


def _decode_error(path: Path, reason: str) -> AudioDecodeError:
    return AudioDecodeError(f"cannot read audio file {path}: {reason}. Use a WAV, MP3, OGG or FLAC file that "
                            f"plays in a media player (re-export or re-record it if it is damaged).")


def _decoded_blocks(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 block, its sample rate) for each decoded frame of the first audio stream."""
    import av

    if not path.is_file():
        raise _decode_error(path, "no such file")
    if path.stat().st_size == 0:
        raise _decode_error(path, "the file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise _decode_error(path, f"not a recognised audio format ({exc})") from exc
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise _decode_error(path, "it has no audio stream")
        to_float = av.AudioResampler(format="fltp")  # sample format only: keeps the layout and rate
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    for converted in to_float.resample(frame):
                        planes = converted.to_ndarray()  # (channels, n) float32
                        yield planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0], \
                            converted.sample_rate
        except av.FFmpegError as exc:
            raise _decode_error(path, f"decoding failed ({exc})") from exc


def iter_audio(path: Path | str, target_rate: int = DEFAULT_RATE, chunk_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Stream ``path`` as mono float32 chunks of ``chunk_seconds`` at ``target_rate`` (the last may be shorter).

    Memory stays bounded by a few chunks whatever the file's length. Raises ``AudioDecodeError``.
    """
    path = Path(path)
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    chunk = max(1, int(round(chunk_seconds * target_rate)))
    pending: list[np.ndarray] = []
    pending_len = 0
    resampler = None
    source_rate = None
    for block, rate in _decoded_blocks(path):
        if source_rate is None:
            source_rate = rate
            if rate != target_rate:
                resampler = StreamResampler(target_rate)
        elif rate != source_rate:
            raise _decode_error(path, f"the sample rate changes mid-stream ({source_rate} -> {rate} Hz)")
        out = resampler(block, rate) if resampler is not None else block
        if len(out):
            pending.append(np.asarray(out, dtype=np.float32))
            pending_len += len(out)
        while pending_len >= chunk:
            joined = np.concatenate(pending)
            yield joined[:chunk]
            rest = joined[chunk:]
            pending, pending_len = ([rest] if len(rest) else []), len(rest)
    if source_rate is None:
        return  # a valid container with no audio frames: zero samples
    if resampler is not None:
        tail = resampler(np.zeros(0, dtype=np.float32), source_rate, last=True)
        if len(tail):
            pending.append(np.asarray(tail, dtype=np.float32))
    if pending:
        joined = np.concatenate(pending)
        for start in range(0, len(joined), chunk):
            yield joined[start:start + chunk]


def load_audio(path: Path | str, target_rate: int = DEFAULT_RATE) -> Audio:
    """Decode the whole of ``path`` into mono float32 ``Audio`` at ``target_rate``. Raises ``AudioDecodeError``."""
    blocks = list(iter_audio(path, target_rate, chunk_seconds=30.0))
    samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return Audio(samples=samples.astype(np.float32, copy=False), sample_rate=target_rate)


def probe_duration(path: Path | str) -> float | None:
    """Duration in seconds from the container's header (cheap, no decoding); None when the header does not say."""
    import av

    path = Path(path)
    try:
        with av.open(str(path), mode="r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000
    except (av.FFmpegError, OSError):
        return None
    return None
