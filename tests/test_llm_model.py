"""The scripted dialog through the real in-process model (llama.cpp on SmolLM2-135M, the small default model
for plumbing), with the dialog memory in a real SQLite store: no mocks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from engine.queue.sqlite_store import Store
from nodes.think.backends.base import ModelMissing
from nodes.think.backends.select import find_gguf
from nodes.think.conversation import Conversation
from nodes.think.memory import DialogMemory, DialogTurn
from nodes.think.persona import load_persona
from nodes.think.reply import ReplyInterrupted, ReplyTiming, stream_reply
from nodes.think.tokens import MESSAGE_OVERHEAD
from nodes.io.media import EMOTIONS, TextChunk

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -r requirements/llm.txt)")

SMALL_MODEL = "smollm2-135m-instruct"
SCRIPT = [
    "Hi! My name is Tom and I am a pilot.",
    "What is your name?",
    "I flew to Paris yesterday. The weather was awful, with lots of rain and fog all day.",
    "Do you remember my name?",
]


@pytest.fixture(scope="module")
def backend():
    from nodes.think.backends.llamacpp import LlamaCppBackend

    try:
        path = find_gguf(SMALL_MODEL)
    except ModelMissing as e:
        pytest.skip(f"{e} (python main.py models install {SMALL_MODEL})")
    chat = LlamaCppBackend(path, n_ctx=2048, n_threads=2)
    chat.llama()
    yield chat
    asyncio.run(chat.close())


def test_scripted_dialog_runs_through_the_real_model_with_memory(backend, tmp_path: Path) -> None:
    async def dialog() -> None:
        with Store(tmp_path / "memory.sqlite") as store:
            memory = DialogMemory(store, "dialog", count=backend.count_tokens)
            persona = load_persona("alisa")
            from nodes.think.prompt import build_prompt
            alone = build_prompt(persona, SCRIPT[2], None, 8192, backend.count_tokens).tokens
            budget = alone + 130  # tight: room for about one exchange, so old turns must be folded
            talk = Conversation(persona, backend, memory, context_tokens=budget, temperature=0.0,
                                max_tokens=48, seed=1)
            for turn, text in enumerate(SCRIPT, start=1):
                reply, chunks = await talk.reply_text(text, turn_id=turn)
                assert chunks and chunks[-1].final and not any(c.final for c in chunks[:-1])
                assert all(isinstance(c, TextChunk) and c.turn_id == turn and c.emotion in EMOTIONS for c in chunks)
                assert reply == " ".join(c.text for c in chunks if c.text)
                prompt = talk.last_prompt
                assert prompt is not None and prompt.tokens <= budget
                # the exact count of what the model reads: the rendered chat template, tokenised
                assert talk.last_timing is not None and talk.last_timing.first_token is not None
            assert prompt.folded > 0 or len(store.turns("dialog")) < 2 * len(SCRIPT)
            about = next(m["content"] for m in prompt.messages if "What you know about the person" in m["content"])
            assert "is called Tom." in about  # turn one's name reaches turn four's prompt
            assert prompt.messages[-2]["content"] == SCRIPT[-1]
            stored = store.turns("dialog")
            assert stored[0].role == "system" and stored[0].meta.get("summary")  # folded into a summary
            assert [t.role for t in stored[-2:]] == ["user", "assistant"]
            for t in stored[1:]:  # exact counts from the model's tokenizer, notes and raw text included
                turn = DialogTurn(t.role, t.text, t.meta.get("note"), t.meta.get("raw"))
                assert t.tokens == sum(backend.count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in turn.messages())

    asyncio.run(dialog())


def test_closing_the_reply_stops_generation_within_a_token(backend) -> None:
    async def run() -> None:
        messages = [{"role": "user", "content": "Count from one to one hundred in words."}]
        parts = backend.stream_chat(messages, max_tokens=400, temperature=0.0)
        got = [await parts.__anext__() for _ in range(3)]
        began = time.perf_counter()
        await parts.aclose()
        assert time.perf_counter() - began < 3.0  # one token; 400 tokens would take tens of seconds
        assert len(got) == 3
        # the model is free again at once
        again = [p async for p in backend.stream_chat(messages, max_tokens=4, temperature=0.0)]
        assert again

    asyncio.run(run())


def test_an_interrupt_flag_stops_the_reply(backend) -> None:
    async def run() -> None:
        flag = {"set": False}
        timing = ReplyTiming()
        got = []
        with pytest.raises(ReplyInterrupted):
            async for chunk in stream_reply(backend, [{"role": "user", "content": "Tell me a long story."}],
                                            max_tokens=300, temperature=0.0, timing=timing,
                                            interrupted=lambda: flag["set"]):
                got.append(chunk)
                flag["set"] = True
        assert not timing.complete and timing.pieces < 300

    asyncio.run(run())



def test_prewarm_evaluates_the_prompt_head_so_the_first_reply_reuses_it(backend, tmp_path: Path) -> None:
    """The persona prompt is evaluated before the first message; the first reply then evaluates only the message,
    its closing instruction and its own tokens (llama-cpp-python matches the cached prefix)."""
    async def run() -> None:
        with Store(tmp_path / "memory.sqlite") as store:
            llama = backend.llama()
            llama.reset()
            talk = Conversation(load_persona("alisa"), backend, DialogMemory(store, "warm", count=backend.count_tokens),
                                context_tokens=1536, temperature=0.0, max_tokens=8, seed=1)
            assert await talk.prewarm(("en",)) > 1  # the English head (Alisa's own default is Russian)
            assert llama.n_tokens > 300  # the system prompt and the example dialog are in the KV cache
            evaluated: list[int] = []
            real_eval = llama.eval
            llama.eval = lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1]
            try:
                await talk.reply_text("Hello! What do you like to read?")
            finally:
                del llama.eval
            assert evaluated and sum(evaluated) < 80, evaluated  # not the ~600-token prompt again

    asyncio.run(run())


def test_a_reply_continues_from_a_given_opening(backend) -> None:
    """llama.cpp writes the opening into the assistant turn of the model's chat template and continues it."""
    messages = [{"role": "system", "content": "You are Alisa."}, {"role": "user", "content": "Hi, I'm Tom."},
                {"role": "assistant", "content": "Hi Tom!"}, {"role": "user", "content": "What is my name?"}]

    async def reply(prefix: str | None) -> str:
        pieces = [p async for p in backend.stream_chat(messages, temperature=0.0, max_tokens=12, seed=1,
                                                       prefix=prefix)]
        return "".join(pieces)

    continued = asyncio.run(reply("Your name is"))
    assert continued.startswith("Your name is") and len(continued) > len("Your name is")
    assert "<|im" not in continued and "<|" not in continued  # the template's own tokens never leak out
    assert backend.continues_reply
    tokens, stops = backend._continued_prompt(backend.llama(), messages, "Your name is")
    text = backend.llama().detokenize(tokens).decode("utf-8", "replace")
    assert text.rstrip().endswith("Your name is") and "What is my name?" in text and stops
