"""A conversation with a persona: each user turn builds the prompt from the persona and the dialog memory,
streams the reply sentence by sentence through the reply guard (``nodes.think.guard``), and stores both turns in
the memory. The memory never keeps a reply that echoes the person or breaks character: such a reply (possible
only with the guard off) is stored as the persona's fallback line, so one bad reply cannot teach the model to copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from nodes.common.text import detect_language
from nodes.io.media import TextChunk
from nodes.think import judges
from nodes.think.backends.base import ChatBackend
from nodes.think.emotion import label_emotion
from nodes.think.facts import fact_stems, recall_opening
from nodes.think.guard import RETRY_ONCE, GuardReport, ReplyGuard, describe, instruction_texts, log_retry
from nodes.think.memory import DialogMemory
from nodes.think.persona import Persona
from nodes.think.prompt import Prompt, build_prompt, conversation_language
from nodes.think.reply import ReplyTiming, stream_reply

log = logging.getLogger(__name__)

_STAND_IN = {"en": "Hello.", "ru": "Привет."}  # the prewarm's message (not evaluated, only what comes before it)


@dataclass
class Conversation:
    persona: Persona
    backend: ChatBackend
    memory: DialogMemory | None = None
    context_tokens: int = 1536  # budget of the prompt (persona + facts + history + message)
    temperature: float = 0.7
    max_tokens: int = 120
    seed: int | None = None
    guard: ReplyGuard | None = field(default_factory=ReplyGuard)  # None: every first try is spoken as it is
    clean_memory: bool = True  # store an echo / a break as the fallback line (False only to measure without it)
    steer_recall: bool = True  # a question about the person with a known answer: the reply starts with its opening
    last_prompt: Prompt | None = field(default=None, init=False)
    last_timing: ReplyTiming | None = field(default=None, init=False)
    last_guard: GuardReport | None = field(default=None, init=False)
    # one prompt built (and the memory folded) at a time: the session's warm-up and the first turn may overlap
    _building: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def reply(self, user_text: str, turn_id: int = 0,
                    interrupted: Callable[[], bool] | None = None,
                    stop_early: Callable[[], bool] | None = None,
                    on_first_token: Callable[[], None] | None = None) -> AsyncIterator[TextChunk]:
        """The reply to ``user_text`` as TextChunks (see ``stream_reply``), guarded (see ``nodes.think.guard``);
        both turns go into the memory, a reply cut short is stored as far as it was spoken, marked
        ``interrupted``."""
        load = getattr(self.backend, "load", None)
        if load is not None:
            await load()  # exact token counts from the model's tokenizer
        began = time.perf_counter()
        timing = ReplyTiming(started=began)
        self.last_timing = timing
        report = GuardReport()
        self.last_guard = report
        async with self._building:
            prompt = await asyncio.to_thread(build_prompt, self.persona, user_text, self.memory,
                                             self.context_tokens, self.backend.count_tokens)
            self.last_prompt = prompt
            if self.memory is not None:  # the facts block goes with the turn: the next prompt keeps it (KV cache)
                meta = {"turn_id": turn_id, "about": prompt.about, "about_persona": self.persona.name,
                        "about_told": [[f.kind, f.text] for f in prompt.told], "prompt_lang": prompt.language}
                await asyncio.to_thread(self.memory.add, "user", user_text.strip(), meta, note=prompt.note)
        expect = self.expectation(user_text, prompt)
        messages = prompt.messages
        replaced = False  # what was spoken is not the model's text (fallback line, or cut at a bad sentence)
        try:
            while True:
                attempt = report.attempts - 1
                timing = ReplyTiming(started=began)
                self.last_timing = timing
                step = self.guard.temperature_step if self.guard is not None else 0.0
                seed = self.seed if not attempt else (self.seed or 0) + 7919 * attempt  # a retry: another sample
                parts = stream_reply(self.backend, messages, turn_id=turn_id,
                                     temperature=self.temperature + step * attempt, max_tokens=self.max_tokens,
                                     seed=seed, timing=timing, interrupted=interrupted, stop_early=stop_early,
                                     on_first_token=on_first_token if attempt == 0 else None,
                                     avoid_copying=user_text, prefix=self._opening(prompt))
                async with aclosing(parts):
                    first = await anext(parts, None)
                    if first is None:
                        return  # a barge-in before the first sentence
                    first, fixed = self._own_voice(first, timing)
                    replaced = replaced or fixed
                    opening = [first]
                    if self.guard is not None and not first.final and judges.bare_opening(first.text):
                        # "Sure!" alone says nothing yet: judge it with the next sentence ("Sure! Here is ...")
                        following = await anext(parts, None)
                        if following is not None:
                            following, fixed = self._own_voice(following, timing)
                            replaced = replaced or fixed
                            opening.append(following)
                            if judges.lone_filler(first.text, following.text):
                                # "Certainly!" before a whole sentence: left unsaid (its form, not its content)
                                if first.text in timing.sentences:
                                    timing.sentences.remove(first.text)
                                timing.first_sentence = time.perf_counter() - began
                                opening = [following]
                    judged = " ".join(c.text for c in opening if c.text)
                    failures = self.guard.check_first(judged, expect) if self.guard is not None else []
                    if attempt and failures and all(f.judge in RETRY_ONCE for f in failures):
                        failures = []  # a filler opening again: better said than another retry or the fallback
                    if failures:
                        assert self.guard is not None
                        log_retry(turn_id, report.attempts, failures, judged)
                        report.reasons.append(describe(failures))
                        if report.attempts <= self.guard.max_retries:
                            report.attempts += 1
                            known = prompt.recall.text if prompt.recall and prompt.recall.known else None
                            note = self.guard.correction(failures, self.persona, expect.language,
                                                         expect.person_name, known)
                            messages = [*prompt.messages, {"role": "system", "content": note}]
                            continue  # closing ``parts`` stops the rejected try; nothing of it was spoken
                        replaced = True
                        if prompt.recall is not None and prompt.recall.known:
                            report.templated = True  # the person asked about themselves: say what she knows
                            line = prompt.recall.text
                        else:
                            report.fallback = True
                            line = self.persona.fallback_in(expect.language)
                        timing.sentences[:] = [line]
                        timing.complete = True
                        timing.first_sentence = time.perf_counter() - began
                        log.warning("reply guard: turn %s: every try was rejected; said %s", turn_id,
                                    "the known answer" if report.templated else "the fallback line")
                        yield TextChunk(line, label_emotion(line), True, turn_id)
                        return
                    for chunk in opening:
                        yield chunk
                    if opening[-1].final:
                        return
                    so_far = judged
                    async for chunk in parts:
                        chunk, fixed = self._own_voice(chunk, timing)
                        replaced = replaced or fixed
                        if self.guard is not None and chunk.text:
                            so_far = f"{so_far} {chunk.text}"
                            bad = self.guard.check_later(so_far, chunk.text, expect)
                            if bad:
                                report.cut = describe(bad)
                                replaced = True
                                timing.complete = True  # ended by the guard, not by a barge-in
                                timing.sentences.pop()  # never spoken
                                log.info("reply guard: turn %s cut before %r (%s)", turn_id, chunk.text[:80],
                                         report.cut)
                                yield TextChunk("", "neutral", True, turn_id)
                                return
                        yield chunk
                    return
        finally:
            await self._remember(user_text, turn_id, timing, replaced, expect)

    def _opening(self, prompt: Prompt) -> str | None:
        """The opening of the reply when the person asks about themselves and the answer is known ("Your name is",
        "Ты работаешь"): backends that continue a reply (llama.cpp) start from it; the note tells the others."""
        if not self.steer_recall or prompt.recall is None or not prompt.recall.known:
            return None
        return recall_opening(prompt.recall)

    def _own_voice(self, chunk: TextChunk, timing: ReplyTiming) -> tuple[TextChunk, bool]:
        """The sentence with her Russian self-reference in her grammatical gender (``Persona.self_gender``);
        True when it was changed (what she says then differs from the model's text)."""
        gender = self.persona.self_gender
        if gender is None or not chunk.text or detect_language(chunk.text) != "ru":
            return chunk, False
        fixed = judges.with_self_gender(chunk.text, gender)
        if fixed == chunk.text:
            return chunk, False
        if chunk.text in timing.sentences:
            timing.sentences[len(timing.sentences) - 1 - timing.sentences[::-1].index(chunk.text)] = fixed
        return replace(chunk, text=fixed), True

    def expectation(self, user_text: str, prompt: Prompt | None = None) -> judges.Expectation:
        """What the guard judges this turn's reply against."""
        told = prompt.told if prompt is not None else ()
        person = next((f.text for f in told if f.kind == "name"), None)
        own = tuple(dict.fromkeys([self.persona.name, *self.persona.names.values()]))
        earlier: tuple[str, ...] = ()
        if prompt is not None:  # her replies in the dialog (after the facts block; not the example exchanges)
            start = next((i for i, m in enumerate(prompt.messages) if m["role"] == "system"
                          and m["content"] == prompt.about), len(prompt.messages))
            earlier = tuple(m["content"] for m in prompt.messages[start:] if m["role"] == "assistant")
        language = detect_language(user_text) or ""
        # not the closing note: it carries the person's facts and the right answer's words ("You work as a nurse")
        return judges.Expectation(user_text=user_text, language=language, instructions=instruction_texts(language),
                                  own_names=own, person_name=person, earlier_replies=earlier,
                                  person_facts=tuple(s for s in fact_stems(list(told))
                                                     if s not in {judges.stem(n) for n in own}),
                                  person_plans=tuple(s for s in fact_stems(list(told), frozenset({"plans"}))
                                                     if s not in {judges.stem(n) for n in own}),
                                  stranger_names=self.persona.stranger_names())

    async def _remember(self, user_text: str, turn_id: int, timing: ReplyTiming, replaced: bool,
                        expect: judges.Expectation) -> None:
        """Store the reply as spoken; a reply that echoes the person, says again one of her earlier replies, breaks
        character or swaps identities is stored as the fallback line instead (the guard rejects those; this keeps the memory clean with the guard off too)."""
        if self.memory is None or not timing.reply:
            return
        meta: dict = {"turn_id": turn_id} if timing.complete else {"turn_id": turn_id, "interrupted": True}
        text = timing.reply
        bad = self.clean_memory and (judges.echo(text, user_text) or judges.character_break(text)
                                     or judges.repeats_herself_needlessly(text, expect)
                                     or judges.identity_swap(text, expect.own_names, expect.person_name, user_text))
        if bad:
            meta["replaced"] = bad
            text = self.persona.fallback_in(expect.language)
            replaced = True
            log.info("dialog memory: turn %s stored as the fallback line, not %r (%s)", turn_id, timing.reply[:80],
                     bad)
        raw = timing.raw_text.strip() if timing.complete and not replaced else None  # what the model's cache holds
        await asyncio.to_thread(self.memory.add, "assistant", text, meta, raw=raw)

    async def prewarm(self, languages: tuple[str, ...] | None = None) -> int:
        """Evaluate the stable head of the next prompt (persona, examples, facts, the dialog so far) now, so that
        the first reply re-evaluates only the person's message. A new dialog does not know its language yet: the
        head in ``languages`` (default: the persona's ``language``) is evaluated; llama.cpp keeps the last one, so
        a first message in another language evaluates its prompt then. Backends without a local cache do nothing.
        Returns the number of prompt messages prefilled last (0: nothing done)."""
        languages = languages or (self.persona.language,)
        prefill = getattr(self.backend, "prefill", None)
        if prefill is None:
            return 0
        load = getattr(self.backend, "load", None)
        if load is not None:
            await load()
        if self.memory is not None:
            view = await asyncio.to_thread(self.memory.view)
            if view.recent:  # a dialog under way keeps the language of its prompts
                languages = (conversation_language("", view),)
        done = 0
        for language in languages:
            # a stand-in message: only the messages before it are kept, and those do not depend on it
            async with self._building:
                prompt = await asyncio.to_thread(build_prompt, self.persona, _STAND_IN.get(language, "Hello."),
                                                 self.memory, self.context_tokens, self.backend.count_tokens,
                                                 language)
            head = prompt.messages[:-2]  # without the message and its closing instruction
            await prefill(head)
            done = len(head)
        return done

    async def reply_text(self, user_text: str, turn_id: int = 0) -> tuple[str, list[TextChunk]]:
        chunks = [c async for c in self.reply(user_text, turn_id)]
        return " ".join(c.text for c in chunks if c.text), chunks
