"""TEST DOUBLES ONLY: small stand-ins for the listen / think / speak / face nodes, so the live-session
orchestration (server/talk/, nodes/live/) can be tested fast and deterministically without models.

They do simple real work on their inputs (nothing is canned): the VAD double cuts turns by energy, the ASR
double "recognises" the pitch of a tone (440 Hz -> "hello", 660 Hz -> "goodbye", 880 Hz -> "weather"), the LLM
double echoes the user's words in sentences, the TTS double speaks a tone whose length follows the text, and
the face double draws frames whose brightness follows the speech. Never register them outside tests.

The live graph they form mirrors workflows/avatar_chat: mic -> VAD -> ASR -> UserTurns -> LLM -> ReplyMarks ->
TTS -> SpeechMarks -> face -> VideoOutLive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from engine.graph import types as T
from engine.graph.node import Input, Node, Output
from engine.graph.registry import NodeRegistry
from nodes.io.media import AudioChunk, Frame, TextChunk

RATE = 16000
WORDS = {440: "hello", 660: "goodbye", 880: "weather"}


def tone(freq: float, seconds: float, rate: int = RATE, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def frames_of(samples: np.ndarray, frame: int = 320) -> list[bytes]:
    """PCM16 messages of 20 ms, as the Talk page's mic worklet sends them."""
    data = pcm16(samples)
    step = frame * 2
    return [data[i:i + step] for i in range(0, len(data), step)]


class DoubleMic(Node):
    DETERMINISTIC = False
    INPUTS = ()
    OUTPUTS = (Output("audio_stream", T.AUDIO_STREAM),)

    async def run(self, ctx: Any) -> tuple[Any]:
        async def gen():
            async for data in ctx.session.input_stream("mic"):
                samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
                yield AudioChunk(samples, RATE)
        return (gen(),)


class DoubleVAD(Node):
    """Energy VAD: speech when RMS > 0.05; speech_start after 60 ms; a turn ends after 200 ms of silence."""

    DETERMINISTIC = False
    INPUTS = (Input.socket("audio_stream", T.AUDIO_STREAM),)
    OUTPUTS = (Output("speech", T.AUDIO_STREAM),)

    async def run(self, ctx: Any, audio_stream: Any) -> tuple[Any]:
        async def gen():
            turn: list[np.ndarray] = []
            voiced = silent = 0
            started = False
            async for chunk in audio_stream:  # durations, not chunk counts: the server may coalesce mic frames
                loud = float(np.sqrt(np.mean(chunk.samples ** 2))) > 0.05 if len(chunk.samples) else False
                seconds = len(chunk.samples) / RATE
                if loud:
                    voiced += seconds
                    silent = 0
                    turn.append(chunk.samples)
                    if voiced >= 0.06 - 1e-9 and not started:
                        started = True
                        ctx.session.emit_event("speech_start", {"node": ctx.node_id})
                elif turn:
                    silent += seconds
                    if silent >= 0.2 - 1e-9:
                        if started:
                            ctx.session.emit_event("speech_end", {"node": ctx.node_id,
                                                                  "speech_end_t": time.time() - 0.2})
                            yield AudioChunk(np.concatenate(turn), RATE, final=True)
                        turn, voiced, silent, started = [], 0, 0, False
        return (gen(),)


class DoubleASR(Node):
    DETERMINISTIC = False
    INPUTS = (Input.socket("speech", T.AUDIO_STREAM), Input.number("seconds", default=0.05, min=0, max=10))
    OUTPUTS = (Output("text_stream", T.TEXT_STREAM),)

    async def run(self, ctx: Any, speech: Any, seconds: float = 0.05) -> tuple[Any]:
        async def gen():
            async for chunk in speech:
                spectrum = np.abs(np.fft.rfft(chunk.samples))
                freq = np.fft.rfftfreq(len(chunk.samples), 1 / RATE)[int(np.argmax(spectrum))]
                word = min(WORDS.items(), key=lambda kv: abs(kv[0] - freq))[1]
                await asyncio.sleep(seconds)
                yield TextChunk(word, final=True)
        return (gen(),)


class DoubleLLM(Node):
    DETERMINISTIC = False
    INPUTS = (Input.socket("text_stream", T.TEXT_STREAM), Input.integer("sentences", default=2, min=1, max=50),
              Input.number("seconds", default=0.05, min=0, max=10))
    OUTPUTS = (Output("sentences", T.TEXT_STREAM),)

    async def run(self, ctx: Any, text_stream: Any, sentences: int = 2, seconds: float = 0.05) -> tuple[Any]:
        async def gen():
            async for turn in text_stream:
                await asyncio.sleep(seconds)
                ctx.session.emit_event("llm_reply", {"turn_id": turn.turn_id, "first_token_s": seconds})
                for i in range(sentences):
                    await asyncio.sleep(seconds)
                    text = f"You said {turn.text}." if i == 0 else f"Sentence {i + 1} about {turn.text}."
                    yield TextChunk(text, "neutral", i == sentences - 1, turn.turn_id)
        return (gen(),)


class DoubleTTS(Node):
    """A 300 Hz tone, 0.04 s per character, in 0.2 s chunks; ``rtf`` seconds of work per second of audio."""

    DETERMINISTIC = False
    INPUTS = (Input.socket("text_stream", T.TEXT_STREAM), Input.number("rtf", default=0.05, min=0, max=10),
              Input.combo("voice", ["low", "high"], default="low"))
    OUTPUTS = (Output("audio_stream", T.AUDIO_STREAM),)

    async def run(self, ctx: Any, text_stream: Any, rtf: float = 0.05, voice: str = "low") -> tuple[Any]:
        async def gen():
            start = 0.0
            current = -1
            async for sentence in text_stream:
                if sentence.turn_id != current:
                    current, start = sentence.turn_id, 0.0
                audio = tone(300 if voice == "low" else 600, 0.04 * max(len(sentence.text), 1), amp=0.3)
                step = RATE // 5
                for i in range(0, len(audio), step):
                    part = audio[i:i + step]
                    await asyncio.sleep(rtf * len(part) / RATE)
                    last = i + step >= len(audio)
                    yield AudioChunk(part, RATE, start, sentence.text, emotion=sentence.emotion,
                                     final=last and sentence.final, turn_id=sentence.turn_id)
                    start += len(part) / RATE
        return (gen(),)


class DoubleFace(Node):
    """25 fps 64x64 frames; brightness follows the audio RMS; each frame carries its 40 ms of audio (a chunk's
    remainder shorter than a frame becomes a short frame: good enough for a double)."""

    DETERMINISTIC = False
    INPUTS = (Input.socket("audio_stream", T.AUDIO_STREAM),
              Input.integer("idle_frames", default=0, min=0, max=1000, tooltip="silent turn-0 frames after a reply"))
    OUTPUTS = (Output("frames", T.FRAME_STREAM),)

    async def run(self, ctx: Any, audio_stream: Any, idle_frames: int = 0) -> tuple[Any]:
        async def gen():
            index = 0
            per_frame = RATE // 25
            async for chunk in audio_stream:
                if chunk.final and idle_frames:
                    yield Frame(np.full((64, 64, 3), 40, np.uint8), index, index / 25,
                                np.zeros(per_frame, np.float32), RATE, chunk.turn_id)
                    index += 1
                    for _ in range(idle_frames):  # idling while the user thinks: real time, turn 0, silent
                        await asyncio.sleep(0.04)
                        yield Frame(np.full((64, 64, 3), 7, np.uint8), index, index / 25,
                                    np.zeros(per_frame, np.float32), RATE, 0)
                        index += 1
                    continue
                for i in range(0, len(chunk.samples), per_frame):
                    part = chunk.samples[i:i + per_frame]
                    level = int(min(255, 40 + 600 * float(np.sqrt(np.mean(part ** 2))))) if len(part) else 0
                    image = np.full((64, 64, 3), level, dtype=np.uint8)
                    # like the real FramePump: one timeline for the whole run (pts keeps growing across turns)
                    yield Frame(image, index, index / 25, part, RATE, chunk.turn_id)
                    index += 1
        return (gen(),)


def double_registry() -> NodeRegistry:
    from nodes.live.nodes import ReplyMarks, SpeechMarks, UserTurns
    from nodes.render.nodes import VideoOutLive

    registry = NodeRegistry()
    for cls in (DoubleMic, DoubleVAD, DoubleASR, DoubleLLM, DoubleTTS, DoubleFace, UserTurns, ReplyMarks,
                SpeechMarks, VideoOutLive):
        registry.register(cls, "tests")
    return registry


def double_workflow(llm_sentences: int = 2, llm_seconds: float = 0.05, tts_rtf: float = 0.05,
                    asr_seconds: float = 0.05, idle_frames: int = 0) -> dict[str, Any]:
    return {
        "1": {"class_type": "DoubleMic", "inputs": {}},
        "2": {"class_type": "DoubleVAD", "inputs": {"audio_stream": ["1", 0]}},
        "3": {"class_type": "DoubleASR", "inputs": {"speech": ["2", 0], "seconds": asr_seconds}},
        "4": {"class_type": "UserTurns", "inputs": {"transcripts": ["3", 0], "typed_text": True}},
        "5": {"class_type": "DoubleLLM", "inputs": {"text_stream": ["4", 0], "sentences": llm_sentences,
                                                    "seconds": llm_seconds}},
        "6": {"class_type": "ReplyMarks", "inputs": {"sentences": ["5", 0]}},
        "7": {"class_type": "DoubleTTS", "inputs": {"text_stream": ["6", 0], "rtf": tts_rtf, "voice": "low"}},
        "8": {"class_type": "SpeechMarks", "inputs": {"audio_stream": ["7", 0]}},
        "9": {"class_type": "DoubleFace", "inputs": {"audio_stream": ["8", 0], "idle_frames": idle_frames}},
        "10": {"class_type": "VideoOutLive", "inputs": {"frames": ["9", 0]}},
    }
