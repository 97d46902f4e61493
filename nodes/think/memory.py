"""Dialog memory of one conversation, stored as turns in the SQLite store (``engine.queue.sqlite_store.Store``), with a token
budget: when the recent turns no longer fit, the oldest user/assistant exchanges are folded into one summary turn
that keeps the facts the person stated about themselves (``nodes.think.facts``); the rest of those turns is dropped.

A summary turn has role ``system`` and ``meta = {"summary": True, "facts": [[kind, text], ...]}``; the prompt
builder shows its facts in the "about the person" block, never as dialog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodes.think.facts import Fact, extract_facts, merge_facts
from nodes.think.tokens import MESSAGE_OVERHEAD, TokenCounter, estimate_tokens

if TYPE_CHECKING:
    from engine.queue.sqlite_sessions import Turn
    from engine.queue.sqlite_store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DialogTurn:
    role: str  # "user" or "assistant"
    text: str  # what was said (an assistant turn: the sentences spoken)
    note: str | None = None  # user turns: the instruction that followed it in the prompt
    raw: str | None = None  # assistant turns: the model's own text, when it differs from what was spoken

    def messages(self) -> list[dict[str, str]]:
        """The turn as it appeared in the prompt (so llama.cpp finds the same prefix in its cache)."""
        if self.role == "assistant":
            return [{"role": "assistant", "content": self.raw or self.text}]
        out = [{"role": "user", "content": self.text}]
        if self.note:
            out.append({"role": "system", "content": self.note})
        return out


@dataclass(frozen=True)
class PinnedFacts:
    """The "about the person" block of the last prompt (its exact text) and every fact that prompt had told the
    model, in the block or in a closing note. While no turn is folded away the next prompt keeps this block
    unchanged (so llama.cpp's cached prefix, the whole dialog after the block, stays valid) and tells new facts in
    its own closing note instead."""
    text: str
    told: list[Fact]
    persona: str | None = None  # the persona's name the block was written for
    language: str | None = None  # the language the prompt (system prompt and block) was written in


@dataclass(frozen=True)
class MemoryView:
    facts: list[Fact]  # everything the person said about themselves, folded or not
    recent: list[DialogTurn]  # the turns still kept verbatim, oldest first
    recent_tokens: int
    pinned: PinnedFacts | None = None  # from the newest user turn that recorded its prompt's block


class DialogMemory:
    def __init__(self, store: Store, session_id: str, count: TokenCounter = estimate_tokens,
                 max_facts: int = 12):
        self.store = store
        self.session_id = session_id
        self.count = count
        self.max_facts = max_facts

    def add(self, role: str, text: str, meta: dict[str, Any] | None = None, *, note: str | None = None,
            raw: str | None = None) -> int:
        """Store a turn; ``note`` (user turns) and ``raw`` (assistant turns) as ``DialogTurn`` describes."""
        if role not in ("user", "assistant"):
            raise ValueError(f"dialog turns are 'user' or 'assistant', not {role!r}")
        meta = dict(meta or {})
        if note:
            meta["note"] = note
        if raw and raw != text:
            meta["raw"] = raw
        turn = DialogTurn(role, text, meta.get("note"), meta.get("raw"))
        tokens = sum(self.count(m["content"]) + MESSAGE_OVERHEAD for m in turn.messages())
        return self.store.add_turn(self.session_id, role, text, tokens, meta)

    def clear(self) -> int:
        return self.store.clear_turns(self.session_id)

    def _split(self) -> tuple[Turn | None, list[Turn]]:
        turns = self.store.turns(self.session_id)
        summary = next((t for t in turns if t.role == "system" and t.meta.get("summary")), None)
        return summary, [t for t in turns if t is not summary and t.role in ("user", "assistant")]

    @staticmethod
    def _summary_facts(summary: Turn | None) -> list[Fact]:
        if summary is None:
            return []
        return [Fact(str(k), str(v)) for k, v in summary.meta.get("facts", [])]

    def view(self, extra_user_text: str = "") -> MemoryView:
        """The facts (from the summary, the recent user turns and ``extra_user_text``) and the recent turns."""
        summary, recent = self._split()
        facts = self._summary_facts(summary)
        for turn in recent:
            if turn.role == "user":
                facts = merge_facts(facts, extract_facts(turn.text), self.max_facts)
        if extra_user_text:
            facts = merge_facts(facts, extract_facts(extra_user_text), self.max_facts)
        kept = [DialogTurn(t.role, t.text, t.meta.get("note"), t.meta.get("raw")) for t in recent]
        pinned = None
        for turn in reversed(recent):
            if turn.role == "user":
                if isinstance(turn.meta.get("about"), str):
                    pinned = PinnedFacts(turn.meta["about"],
                                         [Fact(str(k), str(v)) for k, v in turn.meta.get("about_told", [])],
                                         turn.meta.get("about_persona"), turn.meta.get("prompt_lang"))
                break
        return MemoryView(facts, kept, sum(t.tokens for t in recent), pinned)

    def fit(self, history_budget: int) -> int:
        """Fold the oldest exchanges into the summary until the recent turns take at most ``history_budget``
        tokens. Returns how many turns were folded."""
        summary, recent = self._split()
        total = sum(t.tokens for t in recent)
        if total <= history_budget:
            return 0
        fold: list[Turn] = []
        while recent and total > history_budget:
            # fold a whole exchange: a user turn and the assistant turns that answered it
            take = 1
            while take < len(recent) and recent[take].role != "user":
                take += 1
            for turn in recent[:take]:
                fold.append(turn)
                total -= turn.tokens
            recent = recent[take:]
        facts = self._summary_facts(summary)
        for turn in fold:
            if turn.role == "user":
                facts = merge_facts(facts, extract_facts(turn.text), self.max_facts)
        text = "\n".join(f.render() for f in facts) or "(earlier small talk, no facts about the person)"
        ids = [t.id for t in fold] + ([summary.id] if summary is not None else [])
        self.store.replace_turns(self.session_id, ids, text, self.count(text),
                                 meta={"summary": True, "facts": [[f.kind, f.text] for f in facts]})
        log.debug("memory %s: folded %d turns into the summary (%d facts)", self.session_id, len(fold), len(facts))
        return len(fold)
