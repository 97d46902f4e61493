"""The LLMPersona node: bad input, the server-absent error, one-shot and live runs on the real in-process model
(SmolLM2-135M), and a whole prompt through the executor with the reply streamed to a consumer node."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.graph import types as T
from engine.graph.context import NodeContext
from engine.graph.executor import Executor
from engine.files.folders import folders
from engine.graph.node import Input, Node, NodeInputError, NodeResult, Output
from engine.graph.registry import NodeRegistry
from engine.queue.sqlite_store import Store
from nodes.think.backends.base import BackendUnavailable
from nodes.io.media import EMOTIONS, TextChunk
from nodes.think.nodes import LLMPersona

SMALL_MODEL = "smollm2-135m-instruct"


def make_ctx(session: Any = None) -> NodeContext:
    return NodeContext("7", "LLMPersona", "p1", asyncio.get_running_loop(), lambda e: None, threading.Event(),
                       None, session, {})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(folders, "data_dir", tmp_path)
    return tmp_path


@pytest.fixture
def small_model() -> str:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from nodes.think.backends.base import ModelMissing
    from nodes.think.backends.select import find_gguf
    try:
        find_gguf(SMALL_MODEL)
    except ModelMissing as e:
        pytest.skip(str(e))
    return SMALL_MODEL


async def collect(stream: AsyncIterator[TextChunk]) -> list[TextChunk]:
    return [c async for c in stream]


def test_node_declares_persona_choices_and_streams() -> None:
    assert LLMPersona.input_spec("persona").current_choices()[0] == "alisa"
    assert LLMPersona.output_types() == (T.TEXT, T.TEXT_STREAM)
    assert LLMPersona.check_inputs({"persona": "nobody"})[0][0] == "persona"
    assert LLMPersona.check_inputs({"persona": "alisa"}) == []


async def test_empty_text_is_a_clear_input_error() -> None:
    with pytest.raises(NodeInputError) as info:
        await LLMPersona("7").run(make_ctx(), text="   ", backend="ollama")
    assert info.value.input_name == "text" and "empty" in str(info.value)


async def test_no_input_connected_is_a_clear_input_error() -> None:
    with pytest.raises(NodeInputError, match="text_stream"):
        await LLMPersona("7").run(make_ctx())


@pytest.mark.parametrize("backend", ["ollama", "openai"])
async def test_server_absent_fails_fast_naming_what_to_start(backend: str) -> None:
    import httpx  # noqa: F401  (imported before the clock starts: on a loaded CPU the imports alone take seconds)
    import ollama  # noqa: F401

    began = time.perf_counter()
    with pytest.raises(BackendUnavailable) as info:
        await asyncio.wait_for(LLMPersona("7").run(make_ctx(), text="Hello!", backend=backend,
                                                   server_url=f"http://127.0.0.1:{closed_port()}"), timeout=10)
    assert time.perf_counter() - began < 2.5
    assert "does not answer" in str(info.value) or "no OpenAI-compatible server" in str(info.value)


async def test_one_shot_reply_and_memory_by_conversation(small_model: str, data_dir: Path) -> None:
    node = LLMPersona("7")
    ctx = make_ctx()
    kw = dict(backend="llamacpp", model=small_model, conversation="chat-1", temperature=0.0, max_tokens=40)
    reply, stream = await node.run(ctx, text="Hello! My name is Tom.", **kw)
    chunks = await collect(stream)
    assert reply and reply == " ".join(c.text for c in chunks if c.text)
    assert chunks[-1].final and all(c.emotion in EMOTIONS for c in chunks)
    reply2, stream2 = await node.run(ctx, text="What is my name?", **kw)
    await collect(stream2)
    with Store(data_dir / "user" / "dialog_memory.sqlite") as store:
        turns = store.turns("conversation:chat-1")
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0].text == "Hello! My name is Tom." and turns[3].text == reply2


async def test_live_session_answers_each_turn_and_keeps_memory_in_the_session_store(small_model: str,
                                                                                     tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    answered = asyncio.Event()

    def emit_event(kind: str, data: dict) -> None:
        events.append((kind, data))
        if kind == "llm_reply":
            answered.set()

    with Store(tmp_path / "session.sqlite") as store:
        session = SimpleNamespace(session_id="s-1", store=store, emit_event=emit_event)

        async def user_turns() -> AsyncIterator[TextChunk]:  # the person waits for each answer
            yield TextChunk("Hi, I'm Anna.", final=True, turn_id=11)
            await answered.wait()
            yield TextChunk("", final=True, turn_id=12)  # empty turns are skipped
            yield TextChunk("Do you like music?", final=True, turn_id=13)

        reply, stream = await LLMPersona("7").run(make_ctx(session), text_stream=user_turns(), backend="llamacpp",
                                                  model=small_model, temperature=0.0, max_tokens=30, greet=True)
        chunks = await collect(stream)
        assert reply == ""
        assert chunks[0] == TextChunk("Hi, I'm Alisa! How are you today?", "happy", True, 0)
        by_turn = {t: [c for c in chunks if c.turn_id == t] for t in (11, 13)}
        for turn_chunks in by_turn.values():
            assert turn_chunks and turn_chunks[-1].final
        assert {c.turn_id for c in chunks} == {0, 11, 13}
        turns = store.turns("s-1")
        assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
        assert [e[1]["turn_id"] for e in events if e[0] == "llm_reply"] == [11, 13]
        # the first token of each turn is marked when it arrives (the latency trace's llm_first_token)
        marks = [e[1]["turn_id"] for e in events if e[0] == "turn_mark" and e[1]["stage"] == "llm_first_token"]
        assert marks == [11, 13]
        assert [k for k, d in events if d.get("turn_id") == 11].index("turn_mark") < \
            [k for k, d in events if d.get("turn_id") == 11].index("llm_reply")


async def test_live_session_new_turn_cuts_the_reply(small_model: str, tmp_path: Path) -> None:
    with Store(tmp_path / "session.sqlite") as store:
        session = SimpleNamespace(session_id="s-2", store=store)
        queue: asyncio.Queue[TextChunk | None] = asyncio.Queue()

        async def user_turns() -> AsyncIterator[TextChunk]:
            while (item := await queue.get()) is not None:
                yield item

        _, stream = await LLMPersona("7").run(make_ctx(session), text_stream=user_turns(), backend="llamacpp",
                                              model=small_model, temperature=0.0, max_tokens=300)
        await queue.put(TextChunk("Tell me a long story about a dragon.", turn_id=1))
        first = await stream.__anext__()
        assert first.turn_id == 1
        await queue.put(TextChunk("Stop. What is two plus two?", turn_id=2))  # barge-in while she speaks
        await asyncio.sleep(0.1)
        await queue.put(None)
        rest = await collect(stream)
        assert rest[-1].turn_id == 2 and rest[-1].final
        assert not any(c.final for c in [first, *rest] if c.turn_id == 1)  # turn 1 never finished
        assistant = [t for t in store.turns("s-2") if t.role == "assistant"]
        assert assistant[0].meta.get("interrupted") is True and "interrupted" not in assistant[1].meta


class _Text(Node):
    INPUTS = (Input.string("value"),)
    OUTPUTS = (Output("text", T.TEXT),)

    def run(self, ctx, value):
        return (value,)


class _Collect(Node):
    OUTPUT_NODE = True
    DETERMINISTIC = False
    INPUTS = (Input.socket("sentences", T.TEXT_STREAM), Input.socket("reply", T.TEXT))
    OUTPUTS = ()

    async def run(self, ctx, sentences, reply):
        got = [c async for c in sentences]
        return NodeResult((), {"text": [{"reply": reply, "sentences": [c.text for c in got],
                                         "final": [c.final for c in got], "emotions": [c.emotion for c in got]}]})


async def test_prompt_through_the_executor(small_model: str, data_dir: Path) -> None:
    registry = NodeRegistry()
    for cls in (_Text, _Collect, LLMPersona):
        registry.register(cls)
    prompt = {
        "1": {"class_type": "_Text", "inputs": {"value": "Hello! How are you?"}},
        "2": {"class_type": "LLMPersona", "inputs": {"text": ["1", 0], "backend": "llamacpp", "model": small_model,
                                                     "temperature": 0.0, "max_tokens": 40}},
        "3": {"class_type": "_Collect", "inputs": {"sentences": ["2", 1], "reply": ["2", 0]}},
    }
    result = await Executor(registry).execute(prompt)
    assert result.status == "success", result.error
    out = result.outputs["3"]["text"][0]
    assert out["reply"] and out["reply"] == " ".join(s for s in out["sentences"] if s)
    assert out["final"][-1] is True


async def test_executor_reports_server_absent_as_node_error(data_dir: Path) -> None:
    registry = NodeRegistry()
    for cls in (_Text, _Collect, LLMPersona):
        registry.register(cls)
    prompt = {
        "1": {"class_type": "_Text", "inputs": {"value": "Hello!"}},
        "2": {"class_type": "LLMPersona", "inputs": {"text": ["1", 0], "backend": "ollama",
                                                     "server_url": f"http://127.0.0.1:{closed_port()}"}},
        "3": {"class_type": "_Collect", "inputs": {"sentences": ["2", 1], "reply": ["2", 0]}},
    }
    began = time.perf_counter()
    result = await asyncio.wait_for(Executor(registry).execute(prompt), timeout=10)
    assert time.perf_counter() - began < 3
    assert result.status == "error"
    assert "ollama serve" in str(result.error)


async def test_the_in_process_model_is_pinned_by_the_run_that_uses_it(small_model: str) -> None:
    """Through the model manager the GGUF is loaded once and pinned under this run's owner (no other node can
    evict it mid-reply); the executor's release_models drops the pin, and the next run reuses the loaded model."""
    from engine.models.manager import ModelManager

    manager = ModelManager(ram_budget_bytes=8 * 2**30)
    ctx = NodeContext("7", "LLMPersona", "p1", asyncio.get_running_loop(), lambda e: None, threading.Event(),
                      manager, None, {})
    node = LLMPersona("7")
    reply, stream = await node.run(ctx, text="Hello!", backend="llamacpp", model=small_model, max_tokens=8)
    await collect(stream)
    (info,) = [i for i in manager.loaded() if i.id.startswith("llm:")]
    assert info.pinned_by == (ctx.owner,)
    ctx.release_models()
    assert [i.pinned_by for i in manager.loaded() if i.id.startswith("llm:")] == [()]
    ctx2 = NodeContext("7", "LLMPersona", "p2", asyncio.get_running_loop(), lambda e: None, threading.Event(),
                       manager, None, ctx.state)
    await node.run(ctx2, text="Hi again!", backend="llamacpp", model=small_model, max_tokens=8)
    (info,) = [i for i in manager.loaded() if i.id.startswith("llm:")]
    assert info.pinned_by == (ctx2.owner,)  # pinned by the new run only, the model not loaded again


def test_the_talk_pages_language_reaches_the_listener_and_the_persona() -> None:
    """The Talk page's language choice is written into the listen nodes (heard in it) and LLMPersona (its prompt is
    pre-evaluated in it, so an English first turn is not a cold ~15 s prompt evaluation)."""
    import json
    from types import SimpleNamespace

    from engine.graph.registry import NodeRegistry
    from server.talk.options import personalise
    from server.talk.protocol import StartMessage

    registry = NodeRegistry()
    registry.discover("nodes")
    prompt = json.loads((Path(__file__).resolve().parent.parent / "workflows" / "avatar_chat.api.json").read_text())
    out = personalise(prompt, SimpleNamespace(registry=registry), StartMessage(type="start", language="en",
                                                                              photo="x.png"))
    set_to = {node["class_type"]: node["inputs"].get("language") for node in out.values()}
    assert set_to["LLMPersona"] == "en"
    assert any(registry.nodes[k].CATEGORY == "avatar/listen" and v == "en" for k, v in set_to.items())
