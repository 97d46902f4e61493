"""The chat messages for one turn: the persona's system prompt (identity, style, language policy, boundaries,
examples), a separate block of facts about the person, the recent dialog, the person's new message, and a short
closing instruction that names the language to answer in.

Measured on the small default model (``/work/shared/notes/llm.md``): "answer in Russian or English" made it answer
English in Russian, while "reply in the language of the person's last message" works; and it takes the person's
name or job as its own unless its own identity is stated and the person's facts are kept apart. The system
prompt depends only on the persona and the facts (which change rarely), and past turns are rebuilt exactly as
they were sent (each user message with its closing instruction, each reply as the model wrote it), so the prompt
of turn n+1 extends the prompt of turn n and llama.cpp re-evaluates only the new message.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes.llm.facts import Fact
from nodes.llm.language import LANGUAGE_NAMES, detect_language
from nodes.llm.memory import DialogMemory
from nodes.llm.persona import Persona
from nodes.llm.tokens import TokenCounter, estimate_tokens, messages_tokens

Message = dict[str, str]


class PromptTooLong(ValueError):
    pass


def system_prompt(persona: Persona) -> str:
    """Who the persona is and how she answers: the same text on every turn."""
    names = "".join(f" (in {LANGUAGE_NAMES.get(lang, lang)}: {n})" for lang, n in persona.names.items())
    lines = [
        f"You are {persona.name}{names}, talking with a person by voice. {persona.character}",
        "",
        f"How you speak: {persona.speaking_style}",
        f"Language: {persona.language_policy}",
        f"Length: answer in {persona.reply_length}.",
    ]
    if persona.boundaries:
        lines += ["Rules:"] + [f"- {b}" for b in persona.boundaries]
    examples = [line for lang_lines in persona.examples.values() for line in lang_lines]
    if examples:
        lines += ["", "Examples of how you talk:"] + [f"- {e}" for e in examples]
    if persona.example_dialog:
        lines += ["", "First, example exchanges with other people (not the person you will talk to)."]
    return "\n".join(lines)


def example_messages(persona: Persona) -> list[Message]:
    return [m for ex in persona.example_dialog
            for m in ({"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant})]


def about_person(persona: Persona, facts: list[Fact]) -> str:
    """The block of facts the person gave about themselves, kept apart from the persona's own identity."""
    lines = []
    if persona.example_dialog:
        lines.append("The examples are over. Now the real conversation with a new person begins.")
    lines.append(f"What you know about this person (facts about THEM, not about you; you are {persona.name}):")
    if facts:
        lines += [f"- {f.render()}" for f in facts]
        name = next((f.text for f in facts if f.kind == "name"), None)
        if name:
            lines.append(f"- {name} is the person's name. Your own name is {persona.name}, never {name}.")
    else:
        lines.append("- Nothing yet.")
    return "\n".join(lines)


def new_facts_note(persona: Persona, facts: list[Fact]) -> str:
    """Facts the person just stated, told after their message while the facts block stays as it was."""
    if not facts:
        return ""
    lines = " ".join(f.render() for f in facts)
    name = next((f.text for f in facts if f.kind == "name"), None)
    if name:
        lines += f" Your own name is {persona.name}, never {name}."
    return f"New about the person (facts about THEM, not about you): {lines}"


def closing_instruction(persona: Persona, user_text: str) -> str:
    """The short instruction after the person's message: who answers, in which language, how long."""
    language = detect_language(user_text)
    name = persona.name_in(language)
    where = f"in {LANGUAGE_NAMES[language]}" if language in LANGUAGE_NAMES else \
        "in the language of the person's last message"
    return f"Reply as {name}, {where}, in {persona.reply_length}."


@dataclass(frozen=True)
class Prompt:
    messages: list[Message]
    note: str  # the closing instruction after the message (stored with the user turn)
    tokens: int  # counted with the builder's counter, chat-template overhead included
    folded: int  # turns folded into the memory summary to make room
    about: str = ""  # the "about the person" block's text (kept by the next prompt while nothing is folded)
    told: tuple[Fact, ...] = ()  # the facts this prompt tells, in the block or in the closing note


def build_prompt(persona: Persona, user_text: str, memory: DialogMemory | None, budget: int,
                 count: TokenCounter = estimate_tokens) -> Prompt:
    """Messages for the reply to ``user_text`` within ``budget`` tokens, folding old turns of ``memory`` if needed.

    Raises ``PromptTooLong`` when the persona, the facts and the new message alone exceed the budget.
    """
    user_text = user_text.strip()
    if not user_text:
        raise ValueError("the person's message is empty")
    view = memory.view(user_text) if memory is not None else None
    facts = list(view.facts) if view else []
    closing = closing_instruction(persona, user_text)
    head = [{"role": "system", "content": system_prompt(persona)}, *example_messages(persona)]

    def assemble(about: str, note: str, history: list[Message]) -> list[Message]:
        return [*head, {"role": "system", "content": about}, *history,
                {"role": "user", "content": user_text}, {"role": "system", "content": note}]

    # Keep the last prompt's facts block while the dialog fits without folding: everything after the block (the
    # whole dialog) then stays in llama.cpp's KV cache, and facts stated since are told in this turn's note.
    if view is not None and view.pinned is not None and view.pinned.persona in (None, persona.name):
        told = set(view.pinned.told)
        fresh = [f for f in facts if f not in told]
        note = " ".join(p for p in (closing, new_facts_note(persona, fresh)) if p)
        history = [m for turn in view.recent for m in turn.messages()]
        messages = assemble(view.pinned.text, note, history)
        tokens = messages_tokens(messages, count)
        if tokens <= budget:
            return Prompt(messages, note, tokens, 0, view.pinned.text, (*view.pinned.told, *fresh))

    def fixed_messages(fs: list[Fact]) -> list[Message]:
        return assemble(about_person(persona, fs), closing, [])

    fixed = messages_tokens(fixed_messages(facts), count)
    while fixed > budget and len(facts) > 1:  # keep the name, drop the oldest quotations
        drop = next((i for i, f in enumerate(facts) if f.kind != "name"), 0)
        facts.pop(drop)
        fixed = messages_tokens(fixed_messages(facts), count)
    if fixed > budget:
        raise PromptTooLong(f"the persona prompt and the message take {fixed} tokens, over the budget of {budget}; "
                            f"raise context_tokens or shorten the message")
    folded = 0
    history: list[Message] = []
    if memory is not None:
        folded = memory.fit(budget - fixed)
        view = memory.view(user_text) if folded else view
        assert view is not None
        history = [m for turn in view.recent for m in turn.messages()]
    about = about_person(persona, facts)
    messages = assemble(about, closing, history)
    return Prompt(messages, closing, messages_tokens(messages, count), folded, about, tuple(facts))
