"""Any OpenAI-compatible chat server (llama.cpp ``llama-server``, vLLM, LM Studio, ...) over streaming HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from nodes.think.backends.base import BackendUnavailable, ChatBackend, LLMError, Message, ModelMissing

DEFAULT_URL = "http://127.0.0.1:8080/v1"


class OpenAIBackend(ChatBackend):
    name = "openai"

    def __init__(self, model: str = "", base_url: str = "", api_key: str | None = None,
                 connect_timeout: float = 2.0, read_timeout: float = 120.0):
        self.model = model or "default"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL", "") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                             timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout))
        return self._client

    async def stream_chat(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 120,
                          stop: list[str] | None = None, seed: int | None = None,
                          avoid_copying: str | None = None) -> AsyncIterator[str]:
        import httpx

        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                "temperature": temperature, "max_tokens": max_tokens}
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        try:
            async with self._get_client().stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    detail = (await response.aread()).decode("utf-8", "replace")[:300]
                    if response.status_code == 404 and "model" in detail.lower():
                        raise ModelMissing(f"the server at {self.base_url} has no model '{self.model}': {detail}")
                    if response.status_code in (401, 403):
                        raise LLMError(f"the server at {self.base_url} refused the request (HTTP "
                                       f"{response.status_code}); set OPENAI_API_KEY")
                    raise LLMError(f"the server at {self.base_url} answered HTTP {response.status_code}: {detail}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise LLMError(f"the server at {self.base_url} failed: {event['error']}")
                    for choice in event.get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise BackendUnavailable(
                f"no OpenAI-compatible server answers at {self.base_url} ({type(e).__name__}): start one (for "
                f"example `llama-server -m models/llm/<model>.gguf --port 8080`), set the server URL, or choose "
                f"backend 'llamacpp'") from e
        except httpx.TimeoutException as e:
            raise LLMError(f"the server at {self.base_url} stopped answering for {self.read_timeout:.0f} s") from e

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
