"""In-process llama.cpp (``llama-cpp-python``) on a GGUF file.

Generation is blocking, so it runs in a worker thread that hands each piece to the event loop; closing the
reply's async iterator sets a stop flag that the thread checks between tokens, and the thread closes llama.cpp's
generator (barge-in stops within one token). One ``Llama`` object serves one reply at a time (a lock per model, shared by every session's backend).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from nodes.think.backends.base import BackendUnavailable, ChatBackend, LLMError, Message, ModelMissing

log = logging.getLogger(__name__)

_END = object()

# One lock per loaded ``Llama``: llama.cpp's context is not thread-safe, and every live session's backend may hold
# the same model (the model manager shares it), so the lock belongs to the model, not to a backend.
_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(llama: Any) -> threading.Lock:
    """The lock that serialises every use of ``llama``'s context (generation, prompt evaluation)."""
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(llama)
        if lock is None:
            lock = _MODEL_LOCKS[llama] = threading.Lock()
        return lock


def load_llama(path: Path, n_ctx: int = 2048, n_threads: int | None = None) -> Any:
    """A ``llama_cpp.Llama`` for the GGUF at ``path`` (blocking; seconds).

    No ``LlamaRAMCache``: llama-cpp-python 0.3's saved state holds the logits of every evaluated token (about
    0.6 GB for a 1000-token prompt of this model's 152k vocabulary), copied after every reply; only the KV cache of
    the last prompt is kept, which a dialog's next prompt extends."""
    # llama.cpp's OpenMP threads spin while they wait; on a CPU shared with other work (TTS, the face animator, other
    # sessions) spinning threads starve each other: measured here, prompt evaluation fell from ~26 to ~7 tok/s.
    # Only effective if no OpenMP runtime has started in this process yet; a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import llama_cpp
    except ImportError as e:
        raise BackendUnavailable("llama-cpp-python is not installed: pip install -r requirements/llm.txt "
                                 "(builds from source in about 5 minutes)") from e
    if not path.is_file():
        raise ModelMissing(f"no GGUF file at {path}")
    threads = n_threads or max(1, os.cpu_count() or 1)
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                               verbose=False)
    except (ValueError, RuntimeError) as e:
        raise LLMError(f"llama.cpp could not load {path}: {e} (is it a complete GGUF file?)") from e


class LlamaCppBackend(ChatBackend):
    name = "llamacpp"
    continues_reply = True  # ``stream_chat(prefix=...)``: the model continues a reply that starts with ``prefix``

    def __init__(self, model_path: Path, n_ctx: int = 2048, n_threads: int | None = None,
                 loader: Callable[[], Any] | None = None, repeat_penalty: float = 1.1, copy_block: bool = True,
                 break_bias: float = -6.0):
        self.repeat_penalty = repeat_penalty  # Ollama's default; small models otherwise echo the person's words
        self.copy_block = copy_block  # push down tokens that continue a copy of the person's message
        self.break_bias = break_bias  # bias on the tokens that open "As an AI ..." (0: none)
        self._bias: dict[int, float] | None = None
        self.model_path = Path(model_path)
        self.model = self.model_path.name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._managed = loader is not None  # a model manager owns the model: ask it every time, keep no reference
        self._loader = loader or (lambda: load_llama(self.model_path, n_ctx, n_threads))
        self._llama: Any = None

    def llama(self) -> Any:
        """The loaded model (loads on first use; blocking)."""
        if self._managed:
            self._llama = True  # loaded at least once: the tokenizer is available
            return self._loader()
        if self._llama is None:
            self._llama = self._loader()
        return self._llama

    async def load(self) -> None:
        await asyncio.to_thread(self.llama)

    def count_tokens(self, text: str) -> int:
        if self._llama is None:
            return super().count_tokens(text)
        return len(self.llama().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    async def stream_chat(self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 120,
                          stop: list[str] | None = None, seed: int | None = None,
                          avoid_copying: str | None = None, prefix: str | None = None) -> AsyncIterator[str]:
        """See ``ChatBackend.stream_chat``; ``prefix``: the reply starts with this text, written into the assistant
        turn of the chat template so the model continues it (yielded first; ignored when the model's GGUF has no
        chat template)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate() -> None:
            try:
                llama = self.llama()
                with model_lock(llama):
                    kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "stream": True,
                                              "repeat_penalty": self.repeat_penalty}
                    if stop:
                        kwargs["stop"] = stop
                    if seed is not None:
                        kwargs["seed"] = seed
                    processors = self._processors(llama, avoid_copying)
                    if processors:
                        kwargs["logits_processor"] = processors
                    prompt = self._continued_prompt(llama, messages, prefix) if prefix else None
                    if prompt is not None:
                        tokens, template_stop = prompt
                        kwargs["stop"] = [*(stop or []), *template_stop]
                        parts = llama.create_completion(prompt=tokens, **kwargs)
                    else:
                        parts = llama.create_chat_completion(messages=messages, **kwargs)
                    opening = prefix if prompt is not None else ""  # sent with the first generated piece
                    try:
                        for part in parts:
                            if cancelled.is_set():
                                break
                            choice = part["choices"][0]
                            piece = choice["text"] if prompt is not None else choice["delta"].get("content")
                            if piece:
                                put(opening + piece)
                                opening = ""
                    finally:
                        parts.close()
                    if opening and not cancelled.is_set():
                        put(opening)
                put(_END)
            except BaseException as e:  # handed to the consumer
                put(e)

        worker = loop.run_in_executor(None, generate)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, LLMError):
                        raise item
                    raise LLMError(f"llama.cpp failed on {self.model_path.name}: {item}") from item
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(worker)  # the thread stops within one token; the model lock is free again

    def _continued_prompt(self, llama: Any, messages: list[Message], prefix: str) -> tuple[list[int], list[str]] | None:
        """The prompt tokens of ``messages`` in the model's chat template with the assistant turn opened and
        ``prefix`` written into it (the same tokens ``create_chat_completion`` evaluates, so llama.cpp's cached
        prefix still matches), and the template's stop strings; None when the GGUF has no chat template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = (getattr(llama, "metadata", None) or {}).get("tokenizer.chat_template")
        if not template:
            return None

        def token_text(token: int) -> str:
            return llama._model.token_get_text(token) if token != -1 else ""

        eos, bos = llama.token_eos(), llama.token_bos()
        formatted = Jinja2ChatFormatter(template=template, eos_token=token_text(eos), bos_token=token_text(bos),
                                        stop_token_ids=[eos])(messages=messages)
        tokens = llama.tokenize((formatted.prompt + prefix).encode("utf-8"), add_bos=not formatted.added_special,
                                special=True)
        stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, stops

    def _processors(self, llama: Any, avoid_copying: str | None) -> Any:
        """The decoding levers of ``nodes.think.backends.decoding`` for this reply (None: none)."""
        from llama_cpp import LogitsProcessorList

        from nodes.think.backends.decoding import BiasProcessor, CopyBlocker, break_token_bias

        def tokenize(text: str) -> list[int]:
            return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

        out = []
        if self.break_bias:
            if self._bias is None:
                self._bias = break_token_bias(tokenize, self.break_bias)
            out.append(BiasProcessor(self._bias))
        if self.copy_block and avoid_copying and avoid_copying.strip():
            out.append(CopyBlocker(tokenize, avoid_copying))
        return LogitsProcessorList(out) if out else None

    async def prefill(self, messages: list[Message]) -> None:
        """Evaluate ``messages`` into llama.cpp's KV cache (blocking work in a thread), so that a later prompt that
        starts with them re-evaluates only what follows (llama-cpp-python matches the cached prefix). The chat
        template's assistant header and one sampled token are evaluated too and dropped by the next prompt."""
        def run() -> None:
            llama = self.llama()
            with model_lock(llama):
                began = time.perf_counter()
                llama.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0,
                                             repeat_penalty=self.repeat_penalty)
                log.info("llama.cpp %s: prefilled %d prompt tokens in %.1f s", self.model_path.name,
                         int(llama.n_tokens), time.perf_counter() - began)

        try:
            await asyncio.to_thread(run)
        except Exception as e:  # a warm-up only: the reply itself reports real failures
            raise LLMError(f"llama.cpp could not prefill the prompt on {self.model_path.name}: {e}") from e

    async def close(self) -> None:
        self._llama = None
