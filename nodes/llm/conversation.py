"""A conversation with a persona: each user turn builds the prompt from the persona and the dialog memory,
streams the reply sentence by sentence, and stores both turns in the memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from nodes.llm.backends.base import ChatBackend
from nodes.llm.memory import DialogMemory
from nodes.llm.persona import Persona
from nodes.llm.prompt import Prompt, build_prompt
from nodes.llm.reply import ReplyTiming, stream_reply
from nodes.media import TextChunk


@dataclass
class Conversation:
    persona: Persona
    backend: ChatBackend
    memory: DialogMemory | None = None
    context_tokens: int = 1536  # budget of the prompt (persona + facts + history + message)
    temperature: float = 0.7
    max_tokens: int = 120
    seed: int | None = None
    last_prompt: Prompt | None = field(default=None, init=False)
    last_timing: ReplyTiming | None = field(default=None, init=False)
    # one prompt built (and the memory folded) at a time: the session's warm-up and the first turn may overlap
    _building: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def reply(self, user_text: str, turn_id: int = 0,
                    interrupted: Callable[[], bool] | None = None,
                    stop_early: Callable[[], bool] | None = None,
                    on_first_token: Callable[[], None] | None = None) -> AsyncIterator[TextChunk]:
        """The reply to ``user_text`` as TextChunks (see ``stream_reply``); both turns go into the memory, a reply
        cut short is stored as far as it was spoken, marked ``interrupted``."""
        load = getattr(self.backend, "load", None)
        if load is not None:
            await load()  # exact token counts from the model's tokenizer
        timing = ReplyTiming()
        self.last_timing = timing
        async with self._building:
            prompt = await asyncio.to_thread(build_prompt, self.persona, user_text, self.memory,
                                             self.context_tokens, self.backend.count_tokens)
            self.last_prompt = prompt
            if self.memory is not None:  # the facts block goes with the turn: the next prompt keeps it (KV cache)
                meta = {"turn_id": turn_id, "about": prompt.about, "about_persona": self.persona.name,
                        "about_told": [[f.kind, f.text] for f in prompt.told]}
                await asyncio.to_thread(self.memory.add, "user", user_text.strip(), meta, note=prompt.note)
        try:
            async for chunk in stream_reply(self.backend, prompt.messages, turn_id=turn_id,
                                            temperature=self.temperature, max_tokens=self.max_tokens,
                                            seed=self.seed, timing=timing, interrupted=interrupted,
                                            stop_early=stop_early, on_first_token=on_first_token):
                yield chunk
        finally:
            if self.memory is not None and timing.reply:
                meta = {"turn_id": turn_id} if timing.complete else {"turn_id": turn_id, "interrupted": True}
                raw = timing.raw_text.strip() if timing.complete else None  # what the model's cache holds
                await asyncio.to_thread(self.memory.add, "assistant", timing.reply, meta, raw=raw)

    async def prewarm(self) -> int:
        """Evaluate the stable head of the next prompt (persona, examples, facts, the dialog so far) now, so that
        the first reply re-evaluates only the person's message. Backends without a local cache do nothing.
        Returns the number of prompt messages prefilled (0: nothing done)."""
        prefill = getattr(self.backend, "prefill", None)
        if prefill is None:
            return 0
        load = getattr(self.backend, "load", None)
        if load is not None:
            await load()
        # a stand-in message: only the messages before it are kept, and those do not depend on it
        async with self._building:
            prompt = await asyncio.to_thread(build_prompt, self.persona, "Hello.", self.memory,
                                             self.context_tokens, self.backend.count_tokens)
        head = prompt.messages[:-2]  # without the message and its closing instruction
        await prefill(head)
        return len(head)

    async def reply_text(self, user_text: str, turn_id: int = 0) -> tuple[str, list[TextChunk]]:
        chunks = [c async for c in self.reply(user_text, turn_id)]
        return " ".join(c.text for c in chunks if c.text), chunks
