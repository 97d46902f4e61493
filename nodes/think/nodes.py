"""Thinking in character: the LLM persona with dialog memory, streamed sentence by sentence.

The parts live beside this module in ``nodes.think`` (persona files, prompt, memory, backends, emotion labels); the
sentence splitter and language detection are shared, in ``nodes.common.text``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from engine.graph import types as T
from engine.graph.context import Interrupted, NodeContext
from engine.files.folders import folders
from engine.graph.node import Input, Node, NodeInputError, Output
from nodes.think.backends.base import ChatBackend
from nodes.think.backends.select import BACKENDS, BackendConfig, open_backend
from nodes.think.conversation import Conversation
from nodes.think.guard import ReplyGuard
from nodes.think.memory import DialogMemory
from nodes.think.persona import DEFAULT_PERSONA, PersonaError, load_persona, persona_ids
from nodes.think.reply import ReplyInterrupted
from nodes.io.media import TextChunk

log = logging.getLogger(__name__)

MEMORY_FILE = "dialog_memory.sqlite"  # one-shot conversations, in the user data folder


class LLMPersona(Node):
    CATEGORY = "avatar/think"
    DISPLAY_NAME = "LLM Persona"
    DESCRIPTION = ("Answer in character from a local LLM with dialog memory, streamed sentence by sentence with an "
                   "emotion label per sentence. Backends: Ollama, any OpenAI-compatible server, or llama.cpp "
                   "in-process on a GGUF in models/llm/ ('auto': Ollama when it answers, else in-process).")
    DETERMINISTIC = False
    INPUTS = (
        Input.socket("text", T.TEXT, required=False, tooltip="one message (one-shot prompt)"),
        Input.socket("text_stream", T.TEXT_STREAM, required=False,
                     tooltip="live session: one user turn per chunk; a new turn cuts a reply still being spoken"),
        Input.combo("persona", persona_ids, default=DEFAULT_PERSONA,
                    tooltip="who answers: a persona file in workflows/personas/ (name, character, style, language)"),
        Input.combo("backend", list(BACKENDS), default="auto",
                    tooltip="auto: Ollama when it answers, else llama.cpp in-process; or force one of them"),
        Input.string("model", default="", tooltip="Ollama/server model name or a GGUF in models/llm/; empty: "
                                                  "AVATARGRAPH_LLM_MODEL, else llama3.2 on Ollama or the default "
                                                  "GGUF"),
        Input.string("server_url", default="", tooltip="Ollama or OpenAI-compatible server; empty: the usual local "
                                                       "port"),
        Input.string("conversation", default="", tooltip="one-shot prompts: a name to remember the dialog under "
                                                         "(empty: no memory). Live sessions use the session."),
        Input.number("temperature", default=0.7, min=0.0, max=2.0, step=0.05,
                     tooltip="sampling temperature: lower is steadier, higher more varied"),
        Input.integer("max_tokens", default=120, min=1, max=2048,
                      tooltip="the longest reply in tokens (a reply is one to three short sentences)"),
        Input.integer("context_tokens", default=1536, min=256, max=32768,
                      tooltip="token budget of the prompt; older turns are folded into a summary of facts"),
        Input.boolean("greet", default=False, tooltip="live sessions: say the persona's greeting first"),
        Input.integer("guard_retries", default=2, min=0, max=5,
                      tooltip="reply guard: how often a reply whose first sentence breaks character, echoes the "
                              "person, is in the wrong language or swaps identities is generated again before it "
                              "is spoken (0: speak the first try)"),
        Input.combo("language", ["auto", "ru", "en"], default="auto",
                    tooltip="live sessions: the language the person speaks, when known (the Talk page's choice): "
                            "the persona prompt is evaluated in it before the first message, so the first reply "
                            "starts in about a second; auto: the persona's own language (another language makes "
                            "the first reply evaluate its prompt then: ~10-20 s on a 2-core CPU)"),
    )
    OUTPUTS = (Output("reply", T.TEXT, tooltip="the whole answer (one-shot; empty in live sessions)"),
               Output("sentences", T.TEXT_STREAM))

    @classmethod
    def check_inputs(cls, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        persona = inputs.get("persona")
        if isinstance(persona, str):
            try:
                load_persona(persona)
            except PersonaError as e:
                problems.append(("persona", str(e)))
        return problems

    async def run(self, ctx: NodeContext, text: str | None = None, text_stream: Any = None,
                  persona: str = DEFAULT_PERSONA, backend: str = "auto", model: str = "", server_url: str = "",
                  conversation: str = "", temperature: float = 0.7, max_tokens: int = 120,
                  context_tokens: int = 1536, greet: bool = False, guard_retries: int = 2,
                  language: str = "auto") -> tuple[str, AsyncIterator[TextChunk]]:
        if text is None and text_stream is None:
            raise NodeInputError("text", "connect a message to 'text' (one-shot) or 'text_stream' (live session)")
        try:
            character = load_persona(persona)
        except PersonaError as e:
            raise NodeInputError("persona", str(e)) from e
        chat = await self._backend(ctx, BackendConfig(backend, model.strip(), server_url.strip(),
                                                      n_ctx=context_tokens + max_tokens + 64))
        talk = Conversation(character, chat, await self._memory(ctx, conversation), context_tokens,
                            temperature, max_tokens, guard=ReplyGuard(max_retries=guard_retries))
        if text_stream is None:
            assert text is not None
            if not str(text).strip():
                raise NodeInputError("text", "the message is empty: there is nothing to answer")
            reply, chunks = await talk.reply_text(str(text))
            return reply, _replay(chunks)
        return "", self._live(ctx, talk, text_stream, greet, language)

    # ------------------------------------------------------------------ live session

    async def _live(self, ctx: NodeContext, talk: Conversation, text_stream: Any,
                    greet: bool, language: str = "auto") -> AsyncIterator[TextChunk]:
        inbox = _TurnInbox()
        reader = asyncio.create_task(inbox.fill(text_stream), name=f"llm-input-{ctx.node_id}")
        # evaluate the persona prompt while the person is still speaking: the first reply then starts in about a
        # second instead of the ~10-20 s a cold 600-token prompt takes on a 2-core CPU
        languages = (language,) if language in ("ru", "en") else None  # None: the persona's own language
        warming = asyncio.create_task(_prewarm(ctx, talk, languages), name=f"llm-prewarm-{ctx.node_id}")
        counter = 0
        try:
            if greet and talk.persona.greeting:
                yield TextChunk(talk.persona.greeting_in("en"), "happy", True, 0)
            while (item := await inbox.get()) is not _TurnInbox.END:
                user_text = _text_of(item)
                if not user_text.strip():
                    continue
                counter += 1
                turn_id = item.turn_id if isinstance(item, TextChunk) and item.turn_id else counter
                replying = talk.reply(user_text, turn_id, interrupted=ctx.interrupted.is_set,
                                      stop_early=inbox.speech_waiting,
                                      on_first_token=_first_token_mark(ctx, turn_id))
                try:
                    async for chunk in replying:
                        yield chunk
                        if inbox.speech_waiting():  # barge-in: the person said something new
                            log.info("LLMPersona %s: turn %s cut by a new turn", ctx.node_id, turn_id)
                            break
                except ReplyInterrupted as e:
                    raise Interrupted(f"node {ctx.node_id} (LLMPersona) was interrupted") from e
                finally:
                    await replying.aclose()
                    _report_turn(ctx, turn_id, talk)
        finally:
            reader.cancel()
            warming.cancel()  # the prefill thread itself finishes on its own (it holds the model lock meanwhile)
            await asyncio.gather(reader, warming, return_exceptions=True)

    # ------------------------------------------------------------------ resources

    async def _backend(self, ctx: NodeContext, config: BackendConfig) -> ChatBackend:
        """The backend for ``config``, reused across runs of this node (the in-process model stays loaded)."""
        cached = ctx.state.get("backend")
        if cached is not None and cached[0] == config:
            chat = cached[1]
        else:
            if cached is not None:
                await cached[1].close()
            try:
                chat = await ctx.run_blocking(open_backend, config)
            except ValueError as e:
                raise NodeInputError("backend", str(e)) from e
            ctx.state["backend"] = (config, chat)
        if chat.name == "llamacpp" and ctx.models is not None:
            return _managed_llama(ctx, chat)  # a view for this run: the model is pinned by this run's context
        return chat

    async def _memory(self, ctx: NodeContext, conversation: str) -> DialogMemory | None:
        session = ctx.session
        store = getattr(session, "store", None) if session is not None else None
        if store is not None:
            return DialogMemory(store, str(session.session_id))  # type: ignore[union-attr]
        if session is not None:
            conversation = f"session:{session.session_id}"
        if not conversation.strip():
            return None
        opened = ctx.state.get("store")
        if opened is None:
            from engine.queue.sqlite_store import Store
            opened = await asyncio.to_thread(Store, folders.get("user") / MEMORY_FILE)
            ctx.state["store"] = opened
        return DialogMemory(opened, f"conversation:{conversation.strip()}")


def _managed_llama(ctx: NodeContext, chat: Any) -> ChatBackend:
    """The GGUF loaded through the model manager (shared, evictable between runs) and pinned for this run:
    ``ctx.model`` pins it under this run's owner, so no other node evicts it while the reply (or the live
    session) is running; the executor drops the pin when the node has finished."""
    from engine.models.spec import ModelSpec
    from nodes.think.backends.llamacpp import LlamaCppBackend, load_llama

    path, n_ctx = chat.model_path, chat.n_ctx
    size = path.stat().st_size + n_ctx * 30_000  # weights + a KV cache estimate
    spec = ModelSpec(id=f"llm:{path.name}:{n_ctx}", kind="llm", size_bytes=size, device="cpu",
                     load=lambda _device: load_llama(path, n_ctx))
    return LlamaCppBackend(path, n_ctx, loader=lambda: ctx.model(spec), repeat_penalty=chat.repeat_penalty,
                           copy_block=chat.copy_block, break_bias=chat.break_bias)


def _text_of(item: Any) -> str:
    return item.text if isinstance(item, TextChunk) else str(item)


class _TurnInbox:
    """User turns read ahead from the input stream, so a new turn can cut the reply being spoken."""

    END = object()

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._arrived = asyncio.Event()

    async def fill(self, text_stream: Any) -> None:
        try:
            async for chunk in text_stream:
                self._items.append(chunk)
                self._arrived.set()
        finally:
            self._items.append(self.END)
            self._arrived.set()

    async def get(self) -> Any:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        return self._items.popleft()

    def speech_waiting(self) -> bool:
        return any(item is not self.END and _text_of(item).strip() for item in self._items)


async def _prewarm(ctx: NodeContext, talk: Conversation, languages: tuple[str, ...] | None = None) -> None:
    try:
        await talk.prewarm(languages)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # a warm-up only: the first reply evaluates the whole prompt itself
        log.warning("LLMPersona %s: could not pre-evaluate the persona prompt (%s); the first reply will be slower",
                    ctx.node_id, e)


def _first_token_mark(ctx: NodeContext, turn_id: int) -> Callable[[], None]:
    """A latency mark for the live session's client when the model's first token of ``turn_id`` arrives."""
    def mark() -> None:
        emit = getattr(ctx.session, "emit_event", None)
        if emit is not None:
            emit("turn_mark", {"node": ctx.node_id, "turn_id": turn_id, "stage": "llm_first_token"})
    return mark


def _report_turn(ctx: NodeContext, turn_id: int, talk: Conversation) -> None:
    """The reply's text and timings as a session event (transcript and latency marks for the client)."""
    emit = getattr(ctx.session, "emit_event", None)
    timing = talk.last_timing
    if emit is None or timing is None:
        return
    emit("llm_reply", {"node": ctx.node_id, "turn_id": turn_id, "text": timing.reply,
                       "interrupted": not timing.complete, "first_token_s": timing.first_token,
                       "first_sentence_s": timing.first_sentence, "tokens": timing.pieces,
                       "backend": talk.backend.describe(),
                       "guard_retries": talk.last_guard.retries if talk.last_guard else 0,
                       "guard_reasons": talk.last_guard.reasons if talk.last_guard else []})


async def _replay(chunks: list[TextChunk]) -> AsyncIterator[TextChunk]:
    for chunk in chunks:
        yield chunk
