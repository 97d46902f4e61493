"""Streaming voice activity detection with Silero VAD v6 (the ONNX model shipped in faster-whisper), on onnxruntime.

``VoiceActivityDetector`` is a plain class (no engine needed): push 16 kHz mono float32 samples in any chunk
sizes and get back events:

* ``SpeechStarted`` once a burst of speech has lasted ``min_speech_ms`` (the session uses it for barge-in);
* ``SpeechAudio`` partial audio of the turn in progress, at most every ``partial_interval_ms`` while speech goes
  on and at once when a pause begins (trailing silence is held back until speech resumes or the turn ends);
* ``TurnEnded`` with the whole turn (the partials' audio plus at most ``speech_pad_ms`` of trailing silence,
  preceded by up to ``speech_pad_ms`` of pre-roll) after ``min_silence_ms`` of silence, or when the turn reaches
  ``max_turn_s``. Bursts shorter than ``min_speech_ms`` are dropped without any event.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW = 512  # samples per Silero v6 step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees
WINDOW_MS = WINDOW * 1000 / SAMPLE_RATE
VAD_MODEL_ID = "silero-vad-v6"
VAD_FILE = "silero_vad_v6.onnx"


def vad_model_path() -> Path:
    """The Silero VAD ONNX file: from the model store when installed there, else inside the faster-whisper package."""
    try:
        from engine.models.catalogue import default_store

        return default_store().file(VAD_MODEL_ID, VAD_FILE)
    except Exception as exc:  # no store, or not installed there: use the copy faster-whisper ships
        logger.debug("model store has no %s (%s); using faster-whisper's copy", VAD_MODEL_ID, exc)
    try:
        import faster_whisper
    except ImportError as exc:
        raise FileNotFoundError("Silero VAD needs the faster-whisper package (it ships the ONNX model): "
                                "pip install -r requirements/asr.txt") from exc
    path = Path(faster_whisper.__file__).parent / "assets" / VAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall faster-whisper==1.2.1")
    return path


class SileroVAD:
    """One Silero v6 stream: speech probability per 512-sample window, state carried between calls."""

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(str(model_path or vad_model_path()), sess_options=opts,
                                                     providers=["CPUExecutionProvider"])
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, window: np.ndarray) -> float:
        if window.shape != (WINDOW,):
            raise ValueError(f"Silero VAD takes windows of {WINDOW} samples, got {window.shape}")
        x = np.concatenate([self._context, window.astype(np.float32, copy=False)])[None]
        prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = window[-CONTEXT:].astype(np.float32, copy=True)
        return float(np.asarray(prob).reshape(-1)[0])


@dataclass(frozen=True)
class SpeechStarted:
    turn_id: int
    time: float  # seconds from the start of the stream when the speech began


@dataclass(frozen=True)
class SpeechAudio:
    turn_id: int
    samples: np.ndarray
    offset: float  # seconds from the start of the turn


@dataclass(frozen=True)
class TurnEnded:
    turn_id: int
    samples: np.ndarray  # the whole turn
    start: float  # seconds from the start of the stream
    end: float
    speech_end: float  # when the last voiced window ended (seconds from the start of the stream)


VADEvent = SpeechStarted | SpeechAudio | TurnEnded


@dataclass
class VADConfig:
    threshold: float = 0.5
    min_silence_ms: float = 500.0  # silence that ends a turn
    min_speech_ms: float = 250.0  # shorter bursts are ignored
    speech_pad_ms: float = 200.0  # pre-roll and trailing silence kept around a turn
    partial_interval_ms: float = 1000.0  # how often the turn in progress is offered while speech goes on
    max_turn_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.min_silence_ms < WINDOW_MS:
            raise ValueError(f"min_silence_ms must be at least {WINDOW_MS:.0f}, got {self.min_silence_ms}")
        if self.max_turn_s <= 1.0:
            raise ValueError(f"max_turn_s must be above 1 second, got {self.max_turn_s}")

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


@dataclass
class _Turn:
    turn_id: int
    start_sample: int  # stream position of the turn's first sample (pre-roll included)
    audio: list[np.ndarray] = field(default_factory=list)  # voiced audio so far (incl. pre-roll, inner pauses)
    held: list[np.ndarray] = field(default_factory=list)  # trailing silence not yet part of the turn
    voiced_windows: int = 0
    silence_windows: int = 0
    delivered: int = 0  # samples of ``audio`` already offered as SpeechAudio
    since_partial: int = 0
    started: bool = False  # SpeechStarted emitted
    speech_end_sample: int = 0

    @property
    def length(self) -> int:
        return sum(len(a) for a in self.audio)


class VoiceActivityDetector:
    """Cuts a 16 kHz mono stream into user turns. Not thread-safe: one stream per instance."""

    def __init__(self, config: VADConfig | None = None, model: SileroVAD | None = None) -> None:
        self.config = config or VADConfig()
        self.model = model or SileroVAD()
        self.reset()

    def reset(self) -> None:
        self.model.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # samples consumed (window aligned)
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, int(self.config.speech_pad_ms / WINDOW_MS)))
        self._turn: _Turn | None = None
        self._next_turn_id = 0
        self.last_probability = 0.0

    @property
    def in_speech(self) -> bool:
        return self._turn is not None

    def push(self, samples: np.ndarray) -> list[VADEvent]:
        """Feed samples (16 kHz mono float32); returns the events they complete, in order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n_windows = len(data) // WINDOW
        events: list[VADEvent] = []
        for i in range(n_windows):
            events.extend(self._step(data[i * WINDOW:(i + 1) * WINDOW]))
        self._pending = data[n_windows * WINDOW:].copy()
        return events

    def flush(self) -> list[VADEvent]:
        """End of stream: finish the turn in progress (if it has enough speech)."""
        events: list[VADEvent] = []
        if len(self._pending):
            events.extend(self.push(np.zeros(WINDOW - len(self._pending), dtype=np.float32)))
        if self._turn is not None:
            events.extend(self._end_turn())
        return events

    # ------------------------------------------------------------------------------------------------
    def _step(self, window: np.ndarray) -> list[VADEvent]:
        cfg = self.config
        prob = self.model(window)
        self.last_probability = prob
        self._position += WINDOW
        events: list[VADEvent] = []
        turn = self._turn
        if turn is None:
            if prob >= cfg.threshold:
                preroll = list(self._preroll)
                self._preroll.clear()
                start = self._position - WINDOW - sum(len(p) for p in preroll)
                turn = self._turn = _Turn(self._next_turn_id, start, audio=preroll + [window.copy()],
                                          voiced_windows=1, speech_end_sample=self._position)
                self._next_turn_id += 1
                events.extend(self._maybe_started(turn))
            else:
                self._preroll.append(window.copy())
            return events
        if prob >= cfg.threshold or (prob >= cfg.neg_threshold and turn.silence_windows == 0):
            if turn.held:  # a pause inside the turn: it becomes part of the turn
                turn.audio.extend(turn.held)
                turn.held = []
            turn.silence_windows = 0
            turn.audio.append(window.copy())
            turn.voiced_windows += 1
            turn.since_partial += WINDOW
            turn.speech_end_sample = self._position
            events.extend(self._maybe_started(turn))
            if turn.started and turn.since_partial * 1000 / SAMPLE_RATE >= cfg.partial_interval_ms:
                events.extend(self._partial(turn))
        else:
            if turn.silence_windows == 0 and turn.started:
                events.extend(self._partial(turn))  # a pause begins: offer everything voiced so far
            turn.held.append(window.copy())
            turn.silence_windows += 1
            if turn.silence_windows * WINDOW_MS >= cfg.min_silence_ms:
                events.extend(self._end_turn())
                return events
        if turn.length / SAMPLE_RATE >= cfg.max_turn_s:
            events.extend(self._end_turn())
        return events

    def _maybe_started(self, turn: _Turn) -> list[VADEvent]:
        if turn.started or turn.voiced_windows * WINDOW_MS < self.config.min_speech_ms:
            return []
        turn.started = True
        events: list[VADEvent] = [SpeechStarted(turn.turn_id, turn.start_sample / SAMPLE_RATE)]
        return events + self._partial(turn)

    def _partial(self, turn: _Turn) -> list[VADEvent]:
        audio = np.concatenate(turn.audio) if turn.audio else np.zeros(0, dtype=np.float32)
        new = audio[turn.delivered:]
        turn.since_partial = 0
        if not len(new):
            return []
        offset = turn.delivered / SAMPLE_RATE
        turn.delivered = len(audio)
        turn.audio = [audio]
        return [SpeechAudio(turn.turn_id, new, offset)]

    def _end_turn(self) -> list[VADEvent]:
        turn = self._turn
        self._turn = None
        assert turn is not None
        pad_windows = int(self.config.speech_pad_ms / WINDOW_MS)
        trailing = turn.held[:pad_windows]
        # what was held beyond the pad is silence before the next turn: it becomes pre-roll
        for w in turn.held[pad_windows:]:
            self._preroll.append(w)
        if not turn.started:
            return []
        events: list[VADEvent] = []
        if turn.delivered < turn.length:
            events.extend(self._partial(turn))
        samples = np.concatenate(turn.audio + trailing)
        start = turn.start_sample / SAMPLE_RATE
        events.append(TurnEnded(turn.turn_id, samples, start, start + len(samples) / SAMPLE_RATE,
                                turn.speech_end_sample / SAMPLE_RATE))
        return events
