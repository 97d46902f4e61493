"""An Ollama server through the official ``ollama`` Python client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from nodes.think.backends.base import BackendUnavailable, ChatBackend, LLMError, Message, ModelMissing

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"


def ollama_host(url: str = "") -> str:
    host = url or os.environ.get("OLLAMA_HOST", "") or DEFAULT_HOST
    return host if "://" in host else f"http://{host}"


class OllamaBackend(ChatBackend):
    name = "ollama"

    def __init__(self, model: str = DEFAULT_MODEL, host: str = "", connect_timeout: float = 2.0,
                 read_timeout: float = 120.0, keep_alive: str = "30m"):
        self.model = model or DEFAULT_MODEL
        self.host = ollama_host(host)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keep_alive = keep_alive
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                import httpx
                import ollama
            except ImportError as e:
                raise BackendUnavailable("the 'ollama' Python client is not installed: "
                                         "pip install -r requirements/llm.txt") from e
            self._client = ollama.AsyncClient(host=self.host, timeout=httpx.Timeout(
                self.read_timeout, connect=self.connect_timeout))
        return self._client

    def _unavailable(self, e: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"the Ollama server at {self.host} does not answer ({type(e).__name__}): start it with `ollama serve` "
            f"(and `ollama pull {self.model}`), set OLLAMA_HOST, or choose backend 'llamacpp'")

    async def stream_chat(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 120,
                          stop: list[str] | None = None, seed: int | None = None,
                          avoid_copying: str | None = None) -> AsyncIterator[str]:
        import httpx
        import ollama

        client = self._get_client()
        options: dict[str, Any] = {"temperature": temperature, "num_predict": max_tokens}
        if stop:
            options["stop"] = stop
        if seed is not None:
            options["seed"] = seed
        try:
            parts = await client.chat(model=self.model, messages=messages, stream=True, options=options,
                                      keep_alive=self.keep_alive)
            async for part in parts:
                piece = part.message.content if part.message else ""
                if piece:
                    yield piece
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise self._unavailable(e) from e
        except httpx.TimeoutException as e:
            raise LLMError(f"the Ollama server at {self.host} stopped answering for {self.read_timeout:.0f} s "
                           f"while generating with {self.model}") from e
        except ollama.ResponseError as e:
            if e.status_code == 404 or "not found" in str(e.error).lower():
                raise ModelMissing(f"Ollama at {self.host} has no model '{self.model}': run `ollama pull "
                                   f"{self.model}` or pick one of `ollama list`") from e
            raise LLMError(f"Ollama at {self.host} failed: {e.error} (HTTP {e.status_code})") from e

    async def list_models(self) -> list[str]:
        import httpx

        try:
            listed = await self._get_client().list()
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise self._unavailable(e) from e
        return [m.model for m in listed.models if m.model]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
