"""One reply: stream the backend's tokens, cut them into sentences, label each with an emotion, and time it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from nodes.think.backends.base import ChatBackend, Message
from nodes.think.emotion import label_emotion
from nodes.common.text import SentenceSplitter, clean_for_speech
from nodes.io.media import TextChunk


# The first piece of a reply may end at a comma (or ; : dash) once it is this long, so that speech starts sooner; the
# small default model often opens with a clause ("As a language model, ...", "Мне нравится читать книги, ..."), and
# a 60-character threshold made the TTS wait for the whole first sentence. Measured on 11 replies of the default
# model (en + ru): 9.5 -> 6.6 tokens to the first piece on average, 3-11 fewer on the 4 replies that had such a
# clause (0.2-0.6 s at 17 tok/s). Later sentences are never cut at commas, so the prosody of the rest stays whole.
FIRST_CLAUSE_CHARS = 15  # about three words ("As an AI model,"); a shorter one ("Oh,", "Hi Tom,") stays whole


class ReplyInterrupted(Exception):
    """The reply was stopped (interrupt or barge-in) before the model finished."""


@dataclass
class ReplyTiming:
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None  # seconds from ``started``
    first_sentence: float | None = None
    finished: float | None = None
    pieces: int = 0  # streamed pieces (one token each for llama.cpp and Ollama)
    raw_text: str = ""  # what the model wrote, before cleaning and cutting
    sentences: list[str] = field(default_factory=list)
    complete: bool = False  # the model finished (not cut short by a barge-in)

    @property
    def reply(self) -> str:
        return " ".join(s for s in self.sentences if s)

    def tokens_per_second(self) -> float | None:
        if self.finished is None or self.first_token is None or self.pieces < 2:
            return None
        span = self.finished - self.first_token
        return (self.pieces - 1) / span if span > 0 else None


async def stream_reply(backend: ChatBackend, messages: list[Message], *, turn_id: int = 0,
                       temperature: float = 0.7, max_tokens: int = 120, seed: int | None = None,
                       timing: ReplyTiming | None = None, interrupted: Callable[[], bool] | None = None,
                       stop_early: Callable[[], bool] | None = None,
                       first_comma_chars: int = FIRST_CLAUSE_CHARS,
                       on_first_token: Callable[[], None] | None = None,
                       avoid_copying: str | None = None, prefix: str | None = None) -> AsyncIterator[TextChunk]:
    """TextChunks of the reply, one per sentence, the last with ``final=True`` (an empty final chunk when the
    model said nothing speakable). Closing this iterator stops the backend. Between tokens, ``interrupted()``
    raises ``ReplyInterrupted`` and ``stop_early()`` (a barge-in) ends the reply quietly, without a final chunk.
    ``on_first_token()`` is called once, when the model's first piece arrives (a latency mark for live sessions).
    ``prefix``: the reply's opening, continued by backends that can (``continues_reply``), ignored by the others."""
    timing = timing if timing is not None else ReplyTiming()
    splitter = SentenceSplitter(first_comma_chars=first_comma_chars)
    raw: list[str] = []

    def chunk(sentence: str, final: bool) -> TextChunk | None:
        spoken = clean_for_speech(sentence)
        if not spoken and not final:
            return None
        if spoken:
            timing.sentences.append(spoken)
            if timing.first_sentence is None:
                timing.first_sentence = time.perf_counter() - timing.started
        return TextChunk(spoken, label_emotion(spoken) if spoken else "neutral", final, turn_id)

    extra: dict[str, str] = {"avoid_copying": avoid_copying} if avoid_copying else {}
    if prefix and getattr(backend, "continues_reply", False):  # the others get the answer's form in the prompt
        extra["prefix"] = prefix
    parts = backend.stream_chat(messages, temperature=temperature, max_tokens=max_tokens, seed=seed, **extra)
    try:
        async with aclosing(parts):
            async for piece in parts:
                if interrupted is not None and interrupted():
                    raise ReplyInterrupted("the reply was interrupted")
                if stop_early is not None and stop_early():
                    return
                if timing.first_token is None:
                    timing.first_token = time.perf_counter() - timing.started
                    if on_first_token is not None:
                        on_first_token()
                timing.pieces += 1
                raw.append(piece)
                for sentence in splitter.feed(piece):
                    out = chunk(sentence, False)
                    if out is not None:
                        yield out
        timing.complete = True
        rest = [s for s in (clean_for_speech(s) for s in splitter.flush()) if s]
        for index, sentence in enumerate(rest):
            out = chunk(sentence, index == len(rest) - 1)
            if out is not None:
                yield out
        if not rest:
            yield TextChunk("", "neutral", True, turn_id)
    finally:
        timing.raw_text = "".join(raw)
        timing.finished = time.perf_counter() - timing.started
