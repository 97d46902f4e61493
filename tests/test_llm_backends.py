"""Backends: clear errors when the server is absent or the model missing, and the wire protocols of Ollama and
OpenAI-compatible servers against small local HTTP servers that speak them (127.0.0.1, stopped after the test)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from nodes.think.backends.base import BackendUnavailable, LLMError, ModelMissing
from nodes.think.backends.ollama import OllamaBackend
from nodes.think.backends.openai import OpenAIBackend
from nodes.think.backends.select import BackendConfig, find_gguf, open_backend

MESSAGES = [{"role": "user", "content": "Hi"}]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


async def drain(backend) -> str:
    return "".join([p async for p in backend.stream_chat(MESSAGES, max_tokens=8)])


@pytest.mark.parametrize("make", [
    lambda port: OllamaBackend("llama3.2", f"http://127.0.0.1:{port}"),
    lambda port: OpenAIBackend("any", f"http://127.0.0.1:{port}/v1"),
])
async def test_absent_server_gives_a_clear_error_quickly(make) -> None:
    import httpx  # noqa: F401  (imported before the clock starts: on a loaded CPU the imports alone take seconds)
    import ollama  # noqa: F401

    backend = make(closed_port())
    began = time.perf_counter()
    with pytest.raises(BackendUnavailable) as info:
        await asyncio.wait_for(drain(backend), timeout=5)
    assert time.perf_counter() - began < 2.0
    message = str(info.value)
    assert "127.0.0.1" in message and ("ollama serve" in message or "llama-server" in message)
    await backend.close()


@pytest.mark.parametrize("make", [
    lambda port: OllamaBackend("llama3.2", f"http://127.0.0.1:{port}", read_timeout=1.0),
    lambda port: OpenAIBackend("any", f"http://127.0.0.1:{port}/v1", read_timeout=1.0),
])
async def test_a_server_that_never_answers_times_out_with_a_clear_error(make) -> None:
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        backend = make(listener.getsockname()[1])
        began = time.perf_counter()
        with pytest.raises(LLMError, match="stopped answering"):
            await asyncio.wait_for(drain(backend), timeout=10)
        assert time.perf_counter() - began < 3.0
        await backend.close()


def test_explicit_ollama_and_openai_backends_open_without_a_server() -> None:
    assert open_backend(BackendConfig("ollama", "llama3.2")).name == "ollama"
    assert open_backend(BackendConfig("openai", "x", "http://127.0.0.1:1/v1")).name == "openai"
    with pytest.raises(ValueError, match="unknown LLM backend"):
        open_backend(BackendConfig("gpt", ""))


def test_missing_gguf_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="models install"):
        find_gguf("", tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my-model.Q4.gguf").write_bytes(b"GGUF")
    assert find_gguf("", tmp_path).name == "my-model.Q4.gguf"
    assert find_gguf("mine", tmp_path).name == "my-model.Q4.gguf"
    with pytest.raises(ModelMissing, match="my-model.Q4.gguf"):
        find_gguf("other", tmp_path)


def test_auto_without_ollama_falls_back_to_the_in_process_model(monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("AVATARGRAPH_LLM_BACKEND", raising=False)
    monkeypatch.delenv("AVATARGRAPH_LLM_MODEL", raising=False)
    began = time.perf_counter()
    try:
        backend = open_backend(BackendConfig("auto"))
    except ModelMissing:
        pytest.skip("no GGUF installed in models/llm")
    assert backend.name == "llamacpp"
    assert time.perf_counter() - began < 1.5


# ---------------------------------------------------------------- protocol servers


def _serve(app) -> Iterator[str]:
    import uvicorn

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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.fixture
def protocol_server() -> Iterator[tuple[str, dict]]:
    """An HTTP server answering Ollama's /api/tags and /api/chat and OpenAI's /v1/chat/completions, streaming
    the words of a fixed reply and recording what it was asked."""
    seen: dict = {"cancelled": False}
    words = ["Hello", " Tom", "!", " I", " am", " Alisa", "."]
    app = FastAPI()

    @app.get("/api/tags")
    async def tags():
        return {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}

    @app.post("/api/chat")
    async def chat(request: Request):
        body = await request.json()
        seen["ollama"] = body
        if body["model"] != "llama3.2:latest":
            return JSONResponse({"error": f"model '{body['model']}' not found"}, status_code=404)

        async def lines():
            for w in words:
                yield json.dumps({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                                  "message": {"role": "assistant", "content": w}, "done": False}) + "\n"
            yield json.dumps({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                              "message": {"role": "assistant", "content": ""}, "done": True}) + "\n"
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        seen["openai"] = body
        if body["model"] == "missing":
            return JSONResponse({"error": {"message": "model 'missing' not found"}}, status_code=404)

        async def events():
            try:
                for w in words * (50 if body["model"] == "endless" else 1):
                    yield f"data: {json.dumps({'choices': [{'delta': {'content': w}}]})}\n\n"
                    await asyncio.sleep(0.02 if body["model"] == "endless" else 0)
                yield "data: [DONE]\n\n"
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise
        return StreamingResponse(events(), media_type="text/event-stream")

    yield from ((url, seen) for url in _serve(app))


async def test_ollama_protocol_streams_and_passes_options(protocol_server) -> None:
    url, seen = protocol_server
    backend = OllamaBackend("llama3.2:latest", url)
    text = "".join([p async for p in backend.stream_chat(MESSAGES, temperature=0.3, max_tokens=9)])
    assert text == "Hello Tom! I am Alisa."
    assert seen["ollama"]["options"]["num_predict"] == 9 and seen["ollama"]["options"]["temperature"] == 0.3
    assert seen["ollama"]["messages"] == MESSAGES
    await backend.close()


async def test_ollama_missing_model_says_ollama_pull(protocol_server) -> None:
    url, _ = protocol_server
    backend = OllamaBackend("qwen9", url)
    with pytest.raises(ModelMissing, match="ollama pull qwen9"):
        await drain(backend)
    await backend.close()


def test_auto_picks_ollama_when_it_answers_with_the_model(protocol_server, monkeypatch) -> None:
    url, _ = protocol_server
    monkeypatch.delenv("AVATARGRAPH_LLM_BACKEND", raising=False)
    monkeypatch.delenv("AVATARGRAPH_LLM_MODEL", raising=False)
    backend = open_backend(BackendConfig("auto", "", url))
    assert backend.name == "ollama" and backend.model == "llama3.2:latest"


async def test_openai_protocol_streams(protocol_server) -> None:
    url, seen = protocol_server
    backend = OpenAIBackend("m", f"{url}/v1")
    assert await drain(backend) == "Hello Tom! I am Alisa."
    assert seen["openai"]["stream"] is True and seen["openai"]["max_tokens"] == 8
    await backend.close()


async def test_openai_missing_model(protocol_server) -> None:
    url, _ = protocol_server
    backend = OpenAIBackend("missing", f"{url}/v1")
    with pytest.raises(ModelMissing, match="missing"):
        await drain(backend)
    await backend.close()


async def test_closing_the_stream_stops_the_server_reply(protocol_server) -> None:
    url, seen = protocol_server
    backend = OpenAIBackend("endless", f"{url}/v1")
    parts = backend.stream_chat(MESSAGES)
    got = [await parts.__anext__() for _ in range(3)]
    await parts.aclose()
    assert got == ["Hello", " Tom", "!"]
    for _ in range(100):
        if seen["cancelled"]:
            break
        await asyncio.sleep(0.02)
    assert seen["cancelled"], "the server kept streaming after the client closed the reply"
    await backend.close()


def test_llm_errors_are_runtime_errors() -> None:
    assert issubclass(BackendUnavailable, LLMError) and issubclass(ModelMissing, LLMError)


async def test_sessions_sharing_one_llama_never_use_it_at_once(tmp_path) -> None:
    """Every live session has its own backend but the model manager hands them the same Llama: generation and
    prompt evaluation from several sessions must take turns (llama.cpp's context is not thread-safe)."""
    import asyncio
    import threading
    import time

    from nodes.think.backends.llamacpp import LlamaCppBackend

    class SharedLlama:
        def __init__(self) -> None:
            self.active = 0
            self.most = 0
            self.guard = threading.Lock()
            self.n_tokens = 0

        def create_chat_completion(self, messages, stream=False, **kwargs):
            def parts():
                with self.guard:
                    self.active += 1
                    self.most = max(self.most, self.active)
                try:
                    for word in ("Hi", " there"):
                        time.sleep(0.02)
                        yield {"choices": [{"delta": {"content": word}}]}
                finally:
                    with self.guard:
                        self.active -= 1
            if stream:
                return parts()
            for _ in parts():
                pass
            return {}

    shared = SharedLlama()
    backends = [LlamaCppBackend(tmp_path / "m.gguf", loader=lambda: shared, break_bias=0, copy_block=False)
                for _ in range(4)]

    async def reply(backend: LlamaCppBackend) -> str:
        return "".join([piece async for piece in backend.stream_chat([{"role": "user", "content": "hi"}])])

    results = await asyncio.gather(*(reply(b) for b in backends), backends[0].prefill([{"role": "user", "content": "x"}]))
    assert results[:4] == ["Hi there"] * 4
    assert shared.most == 1
