"""nodes/live/nodes.py: turn numbering and merging of typed text, latency marks, chunk splitting (no models)."""

from __future__ import annotations

import asyncio

import numpy as np

from engine.graph.executor import Executor
from engine.graph.registry import NodeRegistry
from engine.live.session import Session
from nodes.live.nodes import ReplyMarks, SpeechMarks, UserTurns, split_chunk
from nodes.io.media import AudioChunk, PhonemeTiming, TextChunk


def test_split_chunk_keeps_timeline_timings_and_final():
    timings = (PhonemeTiming("a", 0.5, 0.6),)
    chunk = AudioChunk(np.arange(22050, dtype=np.float32), 22050, start=1.0, text="hi", timings=timings,
                       emotion="happy", final=True, turn_id=3)
    pieces = split_chunk(chunk, 0.2)
    assert len(pieces) == 5
    assert np.array_equal(np.concatenate([p.samples for p in pieces]), chunk.samples)
    assert [p.final for p in pieces] == [False] * 4 + [True]
    assert [round(p.start, 4) for p in pieces] == [1.0, 1.2, 1.4, 1.6, 1.8]
    assert all(p.timings == timings and p.turn_id == 3 and p.emotion == "happy" for p in pieces)
    assert split_chunk(chunk, 0) == [chunk]


class _Transcripts:
    """An async iterator of transcripts fed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


class _Ctx:
    def __init__(self, session):
        self.session = session
        self.node_id = "6"


async def test_user_turns_merges_speech_and_typed_text_with_session_wide_turn_ids():
    session = Session("s1", Executor(NodeRegistry()), {})
    events = []
    session.on_event = lambda e: events.append((e.type, e.data))
    transcripts = _Transcripts()
    (stream,) = await UserTurns("6").run(_Ctx(session), transcripts, True)
    it = aiter(stream)
    await transcripts.queue.put(TextChunk("hello there", final=True, turn_id=7))
    first = await anext(it)
    session.feed("text", "  typed   words ".encode())
    second = await anext(it)
    await transcripts.queue.put(TextChunk("   ", final=True))  # nothing said: not a turn
    await transcripts.queue.put(TextChunk("again", final=True))
    third = await anext(it)
    assert [(c.text, c.turn_id) for c in (first, second, third)] == [("hello there", 1), ("typed words", 2),
                                                                      ("again", 3)]
    turns = [d for t, d in events if t == "user_turn"]
    assert [(d["turn_id"], d["source"]) for d in turns] == [(1, "voice"), (2, "text"), (3, "voice")]
    await it.aclose()
    # a restarted graph (barge-in) continues the numbering
    (stream,) = await UserTurns("6").run(_Ctx(session), None, True)
    session.feed("text", b"after restart")
    assert (await anext(aiter(stream))).turn_id == 4


async def test_marks_fire_once_per_turn_and_pass_everything_through():
    session = Session("s2", Executor(NodeRegistry()), {})
    events = []
    session.on_event = lambda e: events.append((e.type, e.data))

    async def sentences():
        yield TextChunk("One.", turn_id=1)
        yield TextChunk("Two.", final=True, turn_id=1)
        yield TextChunk("Three.", final=True, turn_id=2)

    (out,) = await ReplyMarks("8").run(_Ctx(session), sentences())
    assert [c.text async for c in out] == ["One.", "Two.", "Three."]
    marks = [(d["turn_id"], d["stage"]) for t, d in events if t == "turn_mark"]
    assert marks == [(1, "llm_first_sentence"), (2, "llm_first_sentence")]
    spoken = [(d["turn_id"], d["text"], d["final"]) for t, d in events if t == "avatar_sentence"]
    assert spoken == [(1, "One.", False), (1, "Two.", True), (2, "Three.", True)]

    async def audio():
        yield AudioChunk(np.zeros(16000, np.float32), 16000, turn_id=1, final=True)

    (out,) = await SpeechMarks("10").run(_Ctx(session), audio(), 250)
    pieces = [c async for c in out]
    assert [len(p.samples) for p in pieces] == [4000] * 4 and pieces[-1].final
    assert [d["stage"] for t, d in events if t == "turn_mark"][-1] == "tts_first_chunk"
