"""The reply guard: the first sentence of every reply is judged before it is spoken; on a character break, an echo
of the person's message, the wrong language, a swapped identity (her name given to the person, theirs or a fact
they stated taken as hers) or an empty filler opening, the reply is thrown away unspoken and generated
again (with a short correction note, a new seed and a little more temperature), at most ``max_retries`` times.
When every try fails, the persona's fallback line is said instead; but when the person asked about themselves
and the answer is known ("What is my name?" after "I'm Oliver"), the known answer in the second person is said
("Your name is Oliver."), a template from the dialog memory, counted apart (``GuardReport.templated``). Later
sentences are judged as they come: the reply is cut (the rest never spoken) at a sentence that breaks character,
swaps identities or turns into an echo.

Nothing a guard rejected reaches the speech stream or the dialog memory; every retry is logged with its reason.
The guard works on text only, so every backend (llama.cpp, Ollama, OpenAI-compatible servers) gets it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from nodes.think import judges
from nodes.think.persona import Persona
from nodes.think.prompt import instruction_texts as prompt_instructions

log = logging.getLogger(__name__)

# judges that make the guard regenerate the first sentence (length, markup and filler are cheaper to live with
# than a second of silence; the masculine check stays in the benchmark: a retry rarely fixes grammar)
GUARDED = ("character_break", "echo", "self_repeat", "wrong_language", "identity_swap", "filler")
# judges worth one retry only: a second filler opening is spoken (better than silence or the fallback line)
RETRY_ONCE = ("filler",)
# judges that cut a reply at a later sentence
CUT_LATER = ("character_break", "echo", "self_repeat", "identity_swap")

_CORRECTIONS = {
    "en": {
        "character_break": "Stay {name}: a young woman with her own life, feelings and favourites. Answer as her, "
                           "from your own life; never call yourself an AI, a program or a model.",
        "echo": "Do not repeat the person's words. Answer them in your own words, as {name}.",
        "self_repeat": "Do not repeat what you said before; answer this message with something new.",
        "wrong_language": "Answer in English.",
        "identity_swap": "You are {name}. {person}When the person asks about themselves, tell them what you know "
                         "about THEM, not about you.",
        "filler": "Start with the answer itself, in your own words: no \"Sure, here is\", no \"Certainly!\".",
        "recall": "Answer them in the second person, starting like this: \"{answer}\"",
    },
    "ru": {
        "character_break": "Оставайся собой, {name}: ты молодая девушка со своей жизнью, чувствами и любимыми "
                           "вещами. Отвечай от своего лица; никогда не называй себя ИИ, программой или моделью.",
        "echo": "Не повторяй слова собеседника. Ответь ему своими словами, как {name}.",
        "self_repeat": "Не повторяй то, что ты уже говорила; ответь на это сообщение по-новому.",
        "wrong_language": "Отвечай по-русски.",
        "identity_swap": "Ты — {name}. {person}Когда собеседник спрашивает о себе, говори то, что знаешь о НЁМ, "
                         "а не о себе.",
        "filler": "Начни сразу с самого ответа, своими словами: без «Вот ответ», «Вот совет», «Конечно, вот».",
        "recall": "Ответь ему на «ты», начни так: «{answer}»",
    },
}
_PERSON = {"en": "The person you talk to is {person}, not you. ", "ru": "Твоего собеседника зовут {person}, не тебя. "}


@dataclass
class GuardReport:
    """What the guard did on one reply."""
    attempts: int = 1
    reasons: list[str] = field(default_factory=list)  # one per rejected try: "echo: copies 6 of ..."
    fallback: bool = False  # every try failed: the persona's fallback line was said
    templated: bool = False  # every try failed on a question about the person: the known answer was said
    cut: str | None = None  # a later sentence was rejected: why the reply stopped there

    @property
    def retries(self) -> int:
        return self.attempts - 1


@dataclass(frozen=True)
class ReplyGuard:
    max_retries: int = 2
    judges: tuple[str, ...] = GUARDED
    cut_judges: tuple[str, ...] = CUT_LATER
    temperature_step: float = 0.15  # added per retry (a different sample, not the same mistake again)

    def check_first(self, sentence: str, expect: judges.Expectation) -> list[judges.Failure]:
        """The failures that reject a reply's first sentence."""
        if not sentence.strip():
            return []  # an empty reply is not spoken anyway
        return [f for f in _judge(sentence, expect) if f.judge in self.judges]

    def check_later(self, so_far: str, sentence: str, expect: judges.Expectation) -> list[judges.Failure]:
        """The failures that cut a reply at ``sentence`` (``so_far``: the reply up to and including it)."""
        found = [f for f in _judge(sentence, expect) if f.judge in self.cut_judges and f.judge != "echo"]
        if "echo" in self.cut_judges:
            reason = judges.echo(so_far, expect.user_text)
            if reason:
                found.append(judges.Failure("echo", reason))
        return found

    def correction(self, failures: list[judges.Failure], persona: Persona, language: str,
                   person_name: str | None, answer: str | None = None) -> str:
        """A short system note for the next try, in the reply's language; ``answer``: the person asked about
        themselves and this is what she knows (the note then shows how to start the reply)."""
        lang = language if language in _CORRECTIONS else "en"
        name = persona.name_in(lang)
        person = _PERSON[lang].format(person=person_name) if person_name else ""
        notes = []
        for failure in failures:
            note = _CORRECTIONS[lang][failure.judge].format(name=name, person=person)
            if note not in notes:
                notes.append(note)
        if answer:
            notes.append(_CORRECTIONS[lang]["recall"].format(answer=answer))
        return " ".join(notes)


@functools.lru_cache(maxsize=4)
def instruction_texts(language: str | None) -> tuple[str, ...]:
    """What she is told and must never read out: the prompt's own instructions (``prompt.instruction_texts``) and
    the guard's corrections, in ``language``."""
    lang = language if language in _CORRECTIONS else "en"
    return (*prompt_instructions(lang), *_CORRECTIONS[lang].values())


def _judge(text: str, expect: judges.Expectation) -> list[judges.Failure]:
    out = []
    reason = judges.character_break(text) or judges.instruction_leak(text, expect.instructions)
    if reason:
        out.append(judges.Failure("character_break", reason))
    reason = judges.echo(text, expect.user_text)
    if reason:
        out.append(judges.Failure("echo", reason))
    # asked again about themselves, the right answer is the one she gave before ("Your name is Tom.")
    reason = judges.repeats_herself_needlessly(text, expect)
    if reason:
        out.append(judges.Failure("self_repeat", reason))
    if len(judges.words(text)) >= 3 and judges.wrong_language(text, expect.language):
        out.append(judges.Failure("wrong_language", f"not in {expect.language}"))
    # "what is my name?" answered with her own name is judged on whole sentences only: "My name is Alisa," may go
    # on "and yours is Tom."
    whole = text.rstrip().rstrip("\"'»”)").endswith((".", "!", "?", "…"))
    reason = judges.identity_swap(text, expect.own_names, expect.person_name,
                                  expect.user_text if whole else "") or \
        judges.gives_their_name_for_hers(text, expect.own_names, expect.person_name, expect.user_text) or \
        judges.names_stranger(text, expect.stranger_names, expect.person_name) or \
        judges.claims_fact(text, expect.person_facts) or \
        judges.claims_plan(text, expect.person_plans) or \
        (judges.answers_from_her_side(text, expect.user_text) if whole else None)
    if reason:
        out.append(judges.Failure("identity_swap", reason))
    reason = judges.filler_opening(text)
    if reason:
        out.append(judges.Failure("filler", reason))
    return out


def describe(failures: list[judges.Failure]) -> str:
    return "; ".join(f"{f.judge}: {f.reason}" for f in failures)


def log_retry(turn_id: int, attempt: int, failures: list[judges.Failure], first: str) -> None:
    log.info("reply guard: turn %s try %d rejected before it was spoken (%s): %r", turn_id, attempt,
             describe(failures), first[:120])
