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

import re
from dataclasses import dataclass

from nodes.think.facts import Answer, Fact, answer_from_facts, asked_topics
from nodes.common.text import LANGUAGE_NAMES, detect_language
from nodes.think.memory import DialogMemory, MemoryView
from nodes.think.persona import Persona
from nodes.think.perspective import name_is_feminine
from nodes.think.tokens import TokenCounter, estimate_tokens, messages_tokens

Message = dict[str, str]


class PromptTooLong(ValueError):
    pass


# The prompt's own words per language (the persona's words come from its file: ``Persona.text_in``).
_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "you_are": "You are {name}{names}, talking with a person by voice.",
        "names": " (in {lang}: {name})", "how": "How you speak: {style}", "language": "Language: {policy}",
        "length": "Length: answer in {length}.", "rules": "Rules:",
        "own_life": "You have your own life, feelings, tastes and favourites. When the person asks about your day, "
                    "your feelings or what you like, answer from your own life as {name}, like a real young woman.",
        "examples": "First, example exchanges with other people (not the person you will talk to).",
        "over": "The examples are over. Now the real conversation with a new person begins.",
        "about": "What you know about the person you talk to (facts about THEM, not about you; you are {name}):",
        "nothing": "- Nothing yet.",
        "is_called": "- The person you talk to (not you) is called {person}. You are {name}, never {person}.",
        "new": "New about the person (facts about THEM, not about you): {facts}",
        "new_name": " The person you talk to (not you) is called {person}; you are {name}, never {person}.",
        "reply": "Reply as {name}, {where}, in {length}.",
        "where": "in {lang}", "where_unknown": "in the language of the person's last message",
        "self": " The person asks about THEMSELVES: answer with what you know about the person, not about you.",
        "self_known": " The person asks about THEMSELVES, and you remember it: {answer} Tell them so, speaking to "
                      "them as \"you\", for example: \"{answer}\"",
        "self_maybe": " The person asks about THEMSELVES. What they told you about themselves: {answer} If the "
                      "answer is there, tell them, speaking to them as \"you\"; if not, say you don't know yet and "
                      "ask them.",
        "self_unknown": " The person asks about THEMSELVES, but they have not told you that yet: say kindly that you "
                        "don't know yet and ask them.",
        "her": " The person asks about YOU: answer as {name}, from your own life.",
    },
    "ru": {
        "you_are": "Ты — {name}{names}, ты разговариваешь с человеком голосом.",
        "names": " (по-английски: {name})", "how": "Как ты говоришь: {style}", "language": "Язык: {policy}",
        "length": "Длина: отвечай {length}.", "rules": "Правила:",
        "own_life": "У тебя своя жизнь, чувства, вкусы и любимые вещи. Когда собеседник спрашивает о твоём дне, "
                    "чувствах или о том, что ты любишь, отвечай о своей жизни, как {name}, как живая молодая "
                    "девушка, и говори о себе в женском роде.",
        "examples": "Сначала примеры разговоров с другими людьми (не с твоим собеседником).",
        "over": "Примеры закончились. Теперь начинается настоящий разговор с новым человеком.",
        "about": "Что ты знаешь о своём собеседнике (это факты о НЁМ, а не о тебе; ты — {name}):",
        "nothing": "- Пока ничего.",
        "is_called": "- Твоего собеседника (не тебя) зовут {person}. Ты — {name}, а не {person}.",
        "new": "Новое о собеседнике (факты о НЁМ, а не о тебе): {facts}",
        "new_name": " Твоего собеседника (не тебя) зовут {person}; ты — {name}, а не {person}.",
        "reply": "Ответь как {name}, {where}, {length}.",
        "where": "{lang}", "where_unknown": "на языке последнего сообщения собеседника",
        "self": " Собеседник спрашивает о СЕБЕ: ответь тем, что ты знаешь о нём, а не о себе.",
        "self_known": " Собеседник спрашивает о СЕБЕ, и ты это помнишь: {answer} Скажи ему это, обращаясь к нему на "
                      "«ты», например: «{answer}»",
        "self_maybe": " Собеседник спрашивает о СЕБЕ. Что он рассказал тебе о себе: {answer} Если ответ здесь есть, "
                      "скажи ему, обращаясь на «ты»; если нет, скажи, что пока не знаешь, и спроси его.",
        "self_unknown": " Собеседник спрашивает о СЕБЕ, но он тебе этого ещё не говорил: скажи по-доброму, что пока "
                        "не знаешь, и спроси его.",
        "her": " Собеседник спрашивает о ТЕБЕ: ответь как {name}, о своей жизни.",
    },
}
_LANGUAGE_WORDS = {"en": {"en": "English", "ru": "Russian"}, "ru": {"en": "по-английски", "ru": "по-русски"}}

_ASKS_ABOUT_SELF = re.compile(
    r"\b(?:what(?:'s| is| are) my|where (?:do|am) i|what do i do(?: for (?:a )?(?:living|work))?(?=\s*(?:\?|$|,|and\b))"
    r"|who am i|what am i|do you (?:remember|know) "
    r"(?:my|me|what i|where i|who i)|remember (?:my|me|what i|where i))\b"
    r"|\b(?:как|кем|где|куда|откуда|на кого|чем) (?:меня зовут|я\b)|\bкак зовут мо(?:ю|их|его|й|ю собаку)\b"
    r"|\bкто я\b"
    r"|\bменя как зовут\b|\bкак зовут меня\b|\bмо[её] имя\b|\bwhat am i called\b"
    r"|\bпомнишь\b.*\b(?:я|меня|мой|моя|мою|моих|моего|мне)\b|\bнапомни\b.*\b(?:меня|мой|моя|мою)\b"
    # elliptical: "And my name?", "My job?", "А моя работа?", "а мой город?"
    r"|^\W*(?:(?:and|so|but|what about|how about|а|и|ну|ну а)\W+)?(?:my|мо[йяеёи]|мою)\W+\w+(?:'s)?(?:\W+\w+)?\W*\?\W*$",
    re.IGNORECASE)
_ASKS_ABOUT_YOU = re.compile(r"\b(?:you|your|yours|yourself|ты|тебя|тебе|твой|твоя|твоё|твое|твои|твоих|тобой)\b",
                             re.IGNORECASE)


def instruction_texts(language: str | None) -> tuple[str, ...]:
    """The prompt's instructions to her in ``language`` (the literal parts of its labels, without the names and
    facts put into them): she must never read them out (``judges.instruction_leak``)."""
    return tuple(piece.strip() for label in _labels(language).values()
                 for piece in re.split(r"\{[a-z_]+\}", label) if len(piece.split()) >= 3)


def _labels(language: str | None) -> dict[str, str]:
    return _LABELS.get(language or "en", _LABELS["en"])


def asked_about(user_text: str) -> str | None:
    """Who a question is about: "self" (the person asks about themselves: "What is my name?", "Кем я работаю?"),
    "her" (about the persona: "Do you like music?") or None (not a question about either)."""
    text = user_text.strip()
    if "?" not in text and not re.match(r"(?i)(?:what|where|who|how|do|did|are|can|как|кем|где|что|кто|ты)\b", text):
        return None
    if _ASKS_ABOUT_SELF.search(text):
        return "self"
    if _ASKS_ABOUT_YOU.search(text):
        return "her"
    return None


def system_prompt(persona: Persona, language: str | None = "en") -> str:
    """Who the persona is and how she answers, in the conversation's language: the same text on every turn."""
    lang = language if language in _LABELS else "en"
    words, text = _labels(lang), persona.text_in(lang)
    name = persona.name_in(lang)
    others = {"en": persona.name, **persona.names}
    names = "".join(words["names"].format(lang=_LANGUAGE_WORDS["en"].get(code, code), name=n)
                    for code, n in others.items() if code != lang and n != name)
    lines = [
        f"{words['you_are'].format(name=name, names=names)} {text.character}",
        "",
        words["how"].format(style=text.speaking_style),
        words["language"].format(policy=text.language_policy),
        words["length"].format(length=text.reply_length),
        words["rules"],
        f"- {words['own_life'].format(name=name)}",
        *[f"- {b}" for b in text.boundaries],
    ]
    examples = persona.examples.get(lang, [])
    if examples:
        lines += ["", "Examples of how you talk:" if lang == "en" else "Примеры того, как ты говоришь:"]
        lines += [f"- {e}" for e in examples]
    if text.example_dialog:
        lines += ["", words["examples"]]
    return "\n".join(lines)


def example_messages(persona: Persona, language: str | None = "en") -> list[Message]:
    return [m for ex in persona.text_in(language).example_dialog
            for m in ({"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant})]


def about_person(persona: Persona, facts: list[Fact], language: str | None = "en") -> str:
    """The block of facts the person gave about themselves, kept apart from the persona's own identity."""
    words = _labels(language)
    own = persona.name_in(language)
    lines = []
    if persona.text_in(language).example_dialog:
        lines.append(words["over"])
    lines.append(words["about"].format(name=own))
    if facts:
        name = next((f.text for f in facts if f.kind == "name"), None)
        if name:
            lines.append(words["is_called"].format(person=name, name=own))
        feminine = name_is_feminine(name) if name else None  # "она учится", not "он учится", for Маша
        lines += [f"- {f.render(language, feminine)}" for f in facts if f.kind != "name"]
    else:
        lines.append(words["nothing"])
    return "\n".join(lines)


def new_facts_note(persona: Persona, facts: list[Fact], language: str | None = "en") -> str:
    """Facts the person just stated, told after their message while the facts block stays as it was."""
    if not facts:
        return ""
    words = _labels(language)
    name = next((f.text for f in facts if f.kind == "name"), None)
    feminine = name_is_feminine(name) if name else None
    lines = " ".join(f.render(language, feminine) for f in facts if f.kind != "name")
    if name:
        lines += words["new_name"].format(person=name, name=persona.name_in(language))
    return words["new"].format(facts=lines.strip())


def recall_answer(user_text: str, facts: list[Fact]) -> Answer | None:
    """When the person asks about themselves ("What is my name?", "напомни, где я живу?"): what she knows that
    answers it, in the second person and the message's language; None for other messages."""
    if asked_about(user_text) != "self":
        return None
    return answer_from_facts(facts, asked_topics(user_text), detect_language(user_text) or "en")


def closing_instruction(persona: Persona, user_text: str, facts: list[Fact] | None = None) -> str:
    """The short instruction after the person's message, in its language: who answers, in which language, how
    long, and (for a question) whether it asks about the person or about her. A question about the person
    carries what she knows that answers it (``facts``), in the second person, with the form of the answer: a
    small model told only "the person asks about themselves" keeps answering in the first person ("My name is
    Oliver")."""
    language = detect_language(user_text)
    words = _labels(language)
    name = persona.name_in(language)
    where = words["where"].format(lang=_LANGUAGE_WORDS[language if language in _LABELS else "en"][language]) \
        if language in LANGUAGE_NAMES else words["where_unknown"]
    note = words["reply"].format(name=name, where=where, length=persona.text_in(language).reply_length)
    about = asked_about(user_text)
    if about == "self" and facts is not None:
        answer = recall_answer(user_text, facts)
        assert answer is not None
        key = "self_known" if answer.known else "self_maybe" if answer.lines else "self_unknown"
        note += words[key].format(answer=answer.text)
    elif about is not None:
        note += words[about].format(name=name)
    return note


@dataclass(frozen=True)
class Prompt:
    messages: list[Message]
    note: str  # the closing instruction after the message (stored with the user turn)
    tokens: int  # counted with the builder's counter, chat-template overhead included
    folded: int  # turns folded into the memory summary to make room
    about: str = ""  # the "about the person" block's text (kept by the next prompt while nothing is folded)
    told: tuple[Fact, ...] = ()  # the facts this prompt tells, in the block or in the closing note
    language: str = "en"  # the language of the system prompt (the conversation's, kept for the whole dialog)
    recall: Answer | None = None  # the person asks about themselves: what she knows that answers it


def conversation_language(user_text: str, view: MemoryView | None, language: str | None = None) -> str:
    """The language of the system prompt: ``language`` when given, else the one the dialog's prompts were written
    in so far (kept for the whole dialog: a new system prompt would make llama.cpp evaluate the dialog again),
    else the language of this first message (English when unknown)."""
    if language in _LABELS:
        return str(language)
    if view is not None and view.pinned is not None and view.pinned.language in _LABELS:
        return str(view.pinned.language)
    if view is not None:
        first = next((t.text for t in view.recent if t.role == "user"), None)
        if first is not None:
            return detect_language(first) or "en"
    return detect_language(user_text) or "en"


def build_prompt(persona: Persona, user_text: str, memory: DialogMemory | None, budget: int,
                 count: TokenCounter = estimate_tokens, language: str | None = None) -> Prompt:
    """Messages for the reply to ``user_text`` within ``budget`` tokens, folding old turns of ``memory`` if needed.
    ``language``: the system prompt's language (default: ``conversation_language``).

    Raises ``PromptTooLong`` when the persona, the facts and the new message alone exceed the budget.
    """
    user_text = user_text.strip()
    if not user_text:
        raise ValueError("the person's message is empty")
    view = memory.view(user_text) if memory is not None else None
    facts = list(view.facts) if view else []
    lang = conversation_language(user_text, view, language)
    closing = closing_instruction(persona, user_text, facts)
    recall = recall_answer(user_text, facts)
    head = [{"role": "system", "content": system_prompt(persona, lang)}, *example_messages(persona, lang)]

    def assemble(about: str, note: str, history: list[Message]) -> list[Message]:
        return [*head, {"role": "system", "content": about}, *history,
                {"role": "user", "content": user_text}, {"role": "system", "content": note}]

    # Keep the last prompt's facts block while the dialog fits without folding: everything after the block (the
    # whole dialog) then stays in llama.cpp's KV cache, and facts stated since are told in this turn's note.
    if view is not None and view.pinned is not None and view.pinned.persona in (None, persona.name) and \
            view.pinned.language in (None, lang):
        told = set(view.pinned.told)
        fresh = [f for f in facts if f not in told]
        note = " ".join(p for p in (closing, new_facts_note(persona, fresh, detect_language(user_text) or lang))
                        if p)
        history = [m for turn in view.recent for m in turn.messages()]
        messages = assemble(view.pinned.text, note, history)
        tokens = messages_tokens(messages, count)
        if tokens <= budget:
            return Prompt(messages, note, tokens, 0, view.pinned.text, (*view.pinned.told, *fresh), lang, recall)

    def fixed_messages(fs: list[Fact]) -> list[Message]:
        return assemble(about_person(persona, fs, lang), closing, [])

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
    about = about_person(persona, facts, lang)
    messages = assemble(about, closing, history)
    return Prompt(messages, closing, messages_tokens(messages, count), folded, about, tuple(facts), lang, recall)
