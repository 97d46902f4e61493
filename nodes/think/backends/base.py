"""The chat backend interface and its errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from nodes.think.tokens import estimate_tokens

Message = dict[str, str]


class LLMError(RuntimeError):
    """The backend failed; the message says what to start, install or change."""


class BackendUnavailable(LLMError):
    """The server does not answer, or the runtime is not installed."""


class ModelMissing(LLMError):
    """The backend answers but does not have the requested model."""


class ChatBackend(ABC):
    """Streams a chat completion as text pieces. Cancel a reply by closing its iterator (``await it.aclose()``,
    or leaving an ``async for`` early inside ``contextlib.aclosing``): the backend then stops generating."""

    name: str = ""
    model: str = ""
    # True: ``stream_chat`` also takes ``prefix=`` (the reply's opening, written into the assistant turn and
    # continued by the model; llama.cpp). Server backends (Ollama, OpenAI-compatible) have no portable way to do it:
    # they get the answer's form in the prompt's closing note instead.
    continues_reply: bool = False

    @abstractmethod
    def stream_chat(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 120,
                    stop: list[str] | None = None, seed: int | None = None,
                    avoid_copying: str | None = None) -> AsyncIterator[str]:
        """An async generator of text pieces (tokens or groups of tokens) of the reply. ``avoid_copying``: the
        person's last message, which the reply should not copy (backends that can steer decoding use it; the
        others ignore it and rely on the reply guard)."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model; exact where the backend has the tokenizer, else an over-estimate."""
        return estimate_tokens(text)

    async def close(self) -> None:
        """Release connections / the model reference."""

    def describe(self) -> str:
        return f"{self.name}:{self.model}"
