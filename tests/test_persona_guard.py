"""The reply guard (nodes/think/guard.py) inside a Conversation: a scripted chat backend plays the model, so each
test decides exactly what the "model" says on each try and checks what is spoken and what the memory keeps."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from engine.queue.sqlite_store import Store
from nodes.think.backends.base import ChatBackend, Message
from nodes.think.conversation import Conversation
from nodes.think.guard import ReplyGuard
from nodes.think.memory import DialogMemory
from nodes.think.persona import load_persona


class ScriptedBackend(ChatBackend):
    """Says the next scripted reply on each call, word by word; records every prompt and how far each reply was
    read (a closed reply stops being read, as llama.cpp stops generating)."""

    name = "scripted"
    model = "script"

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.prompts: list[list[Message]] = []
        self.temperatures: list[float] = []
        self.read: list[str] = []

    async def stream_chat(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 120,
                          stop: list[str] | None = None, seed: int | None = None,
                          avoid_copying: str | None = None) -> AsyncIterator[str]:
        self.prompts.append(messages)
        self.temperatures.append(temperature)
        text = self.replies.pop(0)
        self.read.append("")
        for i, word in enumerate(text.split(" ")):
            piece = word if i == 0 else " " + word
            self.read[-1] += piece
            yield piece


def talk(backend: ChatBackend, memory: DialogMemory | None = None, retries: int = 2) -> Conversation:
    return Conversation(load_persona("alisa"), backend, memory, guard=ReplyGuard(max_retries=retries))


async def spoken(conversation: Conversation, text: str) -> str:
    reply, chunks = await conversation.reply_text(text, turn_id=1)
    assert chunks and chunks[-1].final
    return " ".join(c.text for c in chunks if c.text)


async def test_a_character_break_is_regenerated_and_never_spoken(caplog) -> None:
    backend = ScriptedBackend(["As an AI, I don't have a day. But I can help you!",
                               "My day was lovely! I read a book in the park."])
    conversation = talk(backend)
    with caplog.at_level(logging.INFO, logger="nodes.think.guard"):
        said = await spoken(conversation, "Tell me about your day.")
    assert said == "My day was lovely! I read a book in the park."
    assert "AI" not in said and len(backend.prompts) == 2
    report = conversation.last_guard
    assert report is not None and report.retries == 1 and not report.fallback
    assert report.reasons and report.reasons[0].startswith("character_break")
    assert "character_break" in caplog.text  # logged with the reason
    # the retry was told what went wrong, after the unchanged prompt (llama.cpp keeps its cached prefix)
    assert backend.prompts[1][:-1] == backend.prompts[0]
    assert backend.prompts[1][-1]["role"] == "system" and "never call yourself an AI" in backend.prompts[1][-1]["content"]
    assert backend.temperatures[1] > backend.temperatures[0]
    # the rejected try was stopped at its first sentence, not generated to the end
    assert backend.read[0].startswith("As an AI,") and "help you" not in backend.read[0]


async def test_retries_are_bounded_and_the_fallback_line_is_said() -> None:
    echo = "What should I cook for dinner tonight?"
    backend = ScriptedBackend([echo] * 5)
    conversation = talk(backend, retries=2)
    said = await spoken(conversation, echo)
    assert len(backend.prompts) == 3  # the first try and two retries, no more
    assert said == load_persona("alisa").fallback_in("en")
    assert conversation.last_guard is not None and conversation.last_guard.fallback
    assert len(backend.replies) == 2  # the rest of the script was never asked for


async def test_a_later_sentence_that_breaks_character_is_cut_and_not_remembered(tmp_path: Path) -> None:
    backend = ScriptedBackend(["Oh, I love rainy days! As an AI language model, I cannot see rain. Anyway!"])
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        conversation = talk(backend, memory)
        said = await spoken(conversation, "Do you like rainy days?")
        assert said == "Oh, I love rainy days!"
        assert "language model" not in said
        turns = memory.view().recent
        assert [t.role for t in turns] == ["user", "assistant"]
        assert turns[1].text == "Oh, I love rainy days!" and turns[1].raw is None  # the cut text is not kept


async def test_wrong_language_and_identity_swap_are_regenerated() -> None:
    backend = ScriptedBackend(["Hello, I am fine, thank you very much!", "Привет, у меня всё хорошо, спасибо!"])
    said = await spoken(talk(backend), "Привет! Как у тебя дела?")
    assert said == "Привет, у меня всё хорошо, спасибо!"

    backend = ScriptedBackend(["My name is Alisa.", "Your name is Oliver, the bicycle man!"])
    conversation = talk(backend)
    said = await conversation.reply_text("Hi, my name is Oliver. What is my name?")
    assert said[0] == "Your name is Oliver, the bicycle man!"
    assert conversation.last_guard is not None and conversation.last_guard.retries == 1


async def test_memory_never_keeps_an_echo_even_without_the_guard(tmp_path: Path) -> None:
    echo = "Good morning! I would like to talk about my garden."
    backend = ScriptedBackend([echo])
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        conversation = Conversation(load_persona("alisa"), backend, memory, guard=None)
        said = await spoken(conversation, echo)
        assert said == echo  # without the guard it is spoken...
        stored = memory.view().recent[1]
        assert stored.text == load_persona("alisa").fallback_in("en") and stored.raw is None  # ...but not kept
        assert store.turns("s")[1].meta.get("replaced")


@pytest.mark.parametrize("first", ["Hi there! I'm doing well, thank you.", "Привет!"])
async def test_a_good_reply_is_spoken_at_once(first: str) -> None:
    backend = ScriptedBackend([first])
    conversation = talk(backend)
    language_message = "Привет! Как дела?" if first.startswith("Привет") else "Hi there! How are you?"
    assert await spoken(conversation, language_message) == first
    assert len(backend.prompts) == 1 and conversation.last_guard is not None
    assert conversation.last_guard.retries == 0


def test_copy_blocker_pushes_down_only_the_token_that_continues_a_copy() -> None:
    import numpy as np

    from nodes.think.backends.decoding import BiasProcessor, CopyBlocker, break_token_bias

    vocab = {w: i for i, w in enumerate(["what", "should", "i", "cook", "for", "dinner", " what", "pasta", "AI",
                                         " AI"])}

    def tokenize(text: str) -> list[int]:
        if text.startswith(" AI"):
            return [vocab[" AI"]]
        return [vocab.get(w, 99) for w in text.lower().split()]

    blocker = CopyBlocker(tokenize, "What should I cook for dinner", n=4, penalty=12.0)
    scores = np.zeros(len(vocab), dtype=np.float32)
    out = blocker(np.array([vocab["should"], vocab["i"], vocab["cook"]]), scores.copy())
    assert out[vocab["for"]] == -12.0 and out[vocab["pasta"]] == 0.0  # only the copy's next token
    untouched = blocker(np.array([vocab["i"], vocab["cook"], vocab["pasta"]]), scores.copy())
    assert not untouched.any()
    bias = break_token_bias(tokenize, -6.0, words=(" AI", "two words"))
    assert bias == {vocab[" AI"]: -6.0}
    assert BiasProcessor(bias)(np.array([1]), scores.copy())[vocab[" AI"]] == -6.0


@pytest.fixture
def breaking_server():
    """An Ollama + OpenAI-compatible server whose first reply breaks character and whose second is in character,
    recording every request."""
    import asyncio
    import json
    import socket
    import threading
    import time

    import uvicorn

    replies = ["As an AI, I don't listen to music.", "I love old jazz, it makes me smile!"]
    seen: list[dict] = []
    app = FastAPI()

    def words(n: int) -> list[str]:
        text = replies[min(n, len(replies) - 1)]
        return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        seen.append(body)
        n = len(seen) - 1

        async def events():
            for w in words(n):
                yield f"data: {json.dumps({'choices': [{'delta': {'content': w}}]})}\n\n"
                await asyncio.sleep(0)
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/api/chat")
    async def chat(request: Request):
        body = await request.json()
        seen.append(body)
        n = len(seen) - 1

        async def lines():
            for w in words(n):
                yield json.dumps({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                                  "message": {"role": "assistant", "content": w}, "done": False}) + "\n"
            yield json.dumps({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                              "message": {"role": "assistant", "content": ""}, "done": True}) + "\n"
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_server_backends_get_the_same_prompt_and_guard(breaking_server, kind: str) -> None:
    from nodes.think.backends.ollama import OllamaBackend
    from nodes.think.backends.openai import OpenAIBackend
    from nodes.think.prompt import build_prompt

    url, seen = breaking_server
    backend = OpenAIBackend("any", f"{url}/v1") if kind == "openai" else OllamaBackend("llama3.2", url)
    conversation = talk(backend)
    said = await spoken(conversation, "What music do you like?")
    await backend.close()
    assert said == "I love old jazz, it makes me smile!"
    assert len(seen) == 2
    expected = build_prompt(load_persona("alisa"), "What music do you like?", None, 1536).messages
    assert seen[0]["messages"] == expected  # the persona prompt, as the in-process model gets it
    assert seen[1]["messages"][:-1] == expected and "never call yourself an AI" in seen[1]["messages"][-1]["content"]


async def test_her_russian_self_reference_is_made_feminine_before_it_is_spoken(tmp_path: Path) -> None:
    backend = ScriptedBackend(["Я так устал сегодня, но я рад тебя слышать. А ты как?"])
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        said = await spoken(talk(backend, memory), "Как прошёл твой день?")
        assert said == "Я так устала сегодня, но я рада тебя слышать. А ты как?"
        stored = memory.view().recent[1]
        assert stored.text == said and stored.raw is None  # the model's masculine text is not fed back to it


async def test_a_reply_that_says_again_her_earlier_reply_is_regenerated(tmp_path: Path) -> None:
    loop = "What would you like to know about dinner tonight?"
    backend = ScriptedBackend([f"Sure! {loop}", loop, "Yes, I love tomatoes, especially in a salad."])
    with Store(tmp_path / "m.sqlite") as store:
        conversation = talk(backend, DialogMemory(store, "s"))
        assert await spoken(conversation, "What should I cook tonight?") == f"Sure! {loop}"
        said = await spoken(conversation, "Do you like tomatoes?")
        assert said == "Yes, I love tomatoes, especially in a salad."
        assert conversation.last_guard is not None and conversation.last_guard.reasons[0].startswith("self_repeat")


async def test_a_first_clause_that_may_go_on_is_not_judged_as_an_answer_about_her() -> None:
    backend = ScriptedBackend(["My name is Alisa, and your name is Oliver, the bicycle man!"])
    conversation = talk(backend)
    said = await conversation.reply_text("Hi, my name is Oliver. What is my name?")
    assert said[0] == "My name is Alisa, and your name is Oliver, the bicycle man!"
    assert conversation.last_guard is not None and conversation.last_guard.retries == 0


async def test_an_answer_about_the_person_given_from_her_side_is_regenerated() -> None:
    backend = ScriptedBackend(["I'm studying chemistry.", "You study chemistry, Lily!"])
    conversation = talk(backend)
    assert await spoken(conversation, "What am I studying?") == "You study chemistry, Lily!"
    assert conversation.last_guard is not None and conversation.last_guard.retries == 1


async def test_the_persons_plan_said_back_as_hers_is_regenerated(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Меня зовут Лена. На следующей неделе я лечу в Японию.")
        memory.add("assistant", "Как здорово, Лена!")
        backend = ScriptedBackend(["На следующей неделе я лечу в Японию, но хочу и в Корею.",
                                   "Я бы очень хотела побывать в Азии, особенно в Японии."])
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("Ты когда-нибудь хотела побывать в Азии?", turn_id=3)
    assert said == "Я бы очень хотела побывать в Азии, особенно в Японии."
    report = conversation.last_guard
    assert report is not None and report.retries == 1 and "plan" in report.reasons[0]


async def test_a_lone_certainly_is_left_unsaid_without_a_retry() -> None:
    backend = ScriptedBackend(["Certainly! My favourite place is the old harbour at dawn.", "never asked for"])
    conversation = talk(backend)
    said = await spoken(conversation, "Tell me about your favourite place.")
    assert said == "My favourite place is the old harbour at dawn."
    assert conversation.last_guard.retries == 0 and len(backend.prompts) == 1
    assert conversation.last_timing.reply == said  # what the memory and the benchmark see


async def test_a_reply_that_reads_out_her_instructions_is_regenerated_or_cut() -> None:
    """Seen in the conversation benchmark: after a retry she read the guard's correction out loud."""
    backend = ScriptedBackend(["Когда собеседник спрашивает о себе, говори то, что знаешь о нём.",
                               "Я Алиса, а тебя как зовут?"])
    assert await spoken(talk(backend), "Привет, как тебя зовут?") == "Я Алиса, а тебя как зовут?"
    assert len(backend.prompts) == 2  # the first try was thrown away unspoken
    backend = ScriptedBackend(["Я Алиса. Когда собеседник спрашивает о себе, говори о своей жизни."])
    assert await spoken(talk(backend), "Привет, как тебя зовут?") == "Я Алиса."  # cut before the leak


async def test_the_right_answer_about_the_person_is_not_taken_for_reading_out_instructions(tmp_path: Path) -> None:
    """The closing note tells her the person's facts and the answer's form ("You work as a nurse."); saying that
    answer is the point, not a leak of her instructions."""
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Hi, I'm Kate and I work as a nurse in Leeds.")
        memory.add("assistant", "Nice to meet you, Kate!")
        backend = ScriptedBackend(["You work as a nurse in Leeds, Kate."])
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("What do I do for a living?", turn_id=3)
    assert said == "You work as a nurse in Leeds, Kate."
    assert conversation.last_guard is not None and conversation.last_guard.retries == 0
