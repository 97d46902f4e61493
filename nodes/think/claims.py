"""Whether a reply takes a fact the person stated about themselves as hers: ``claims_fact`` (a job, city or pet:
"I'm a pilot too", "я тоже учительница") and ``claims_plan`` (a trip or plan: "На следующей неделе я лечу в
Японию"). Words are matched from their start against the fact's stems, and a Russian word is judged by its part of
speech (pymorphy3): a verb that merely starts like the stem ("я летала" for the pilot's "лёт") claims nothing.
Part of the judges (``nodes.think.judges`` re-exports both).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nodes.common.text import split_sentences


def _morph() -> Any:
    from nodes.think.perspective import morph

    return morph()


def normalise(text: str) -> str:
    """Lower case, ё as е, typographic apostrophes as plain ones, single spaces (the judges' form of a text)."""
    return " ".join(text.lower().replace("ё", "е").replace("’", "'").split())


_VERB_FORMS = frozenset({"VERB", "INFN", "GRND", "PRTF", "PRTS"})


def _names_stem(clause: str, stem_text: str) -> int:
    """Where in ``clause`` (normalised) a word names ``stem_text`` as a thing (a job, a city, a pet): a word that
    starts with the stem and, in Russian, is not a verb form ("летала" does not name the stem "лета" of "лётчик";
    "пилот", "лётчица" do); -1 when none does."""
    target = normalise(stem_text)
    if not target:
        return -1
    if " " in target:
        return clause.find(target)
    for m in re.finditer(r"[\w'-]+", clause):
        word = m.group(0)
        if not word.startswith(target):
            continue
        if re.search(r"[а-я]", word) and word != target:
            parses = _morph().parse(word)
            if any(p.tag.POS in _VERB_FORMS for p in parses) and \
                    not any(p.tag.POS == "NOUN" and p.tag.animacy == "anim" for p in parses):
                continue  # a verb: "я летала", "я пекла" say what she did, not what she is
        return m.start()
    return -1


def _first_person_clauses(reply: str) -> list[str]:
    """The reply's clauses (normalised) that speak of her and not of the person."""
    out = []
    clauses = [c for sentence in split_sentences(reply) for c in re.split(r"[,;:—–]\s*|\s+(?:but|а|но)\s+", sentence)]
    for clause in clauses:  # "Kazan is lovely, I've never been there": the fact and "I" in different clauses
        low = normalise(clause)
        if not re.search(r"\b(?:i|i'm|i've|i'd|i'll|my|я|мой|моя|мое|мои|у меня|мне)\b", low):
            continue
        if re.search(r"\b(?:you|your|you're|ты|тебя|твой|твоя|вы|ваш)\b", low):
            continue  # about the person ("you're a pilot, I remember")
        out.append(low)
    return out


_DENIAL = re.compile(r"\b(?:i'm not|i am not|i'm never|i don't|i do not|i've never|i have never|not|never|"
                     r"не|никогда не)\b(?:\s+\w+){0,3}\s*$")


# "я бана, учительница", "I'm Anna, a teacher": what follows "я" / "I'm" and a name in apposition is said of her too
_APPOSITION = re.compile(r"\b(?:я|i'm|i am)\s+(?:[—–-]\s*)?[\w'-]+\s*[,—–-]\s*(?:тоже\s+|too\s+|also\s+|an?\s+)?"
                         r"([\w'-]+)")


def claims_fact(reply: str, stems: Sequence[str]) -> str | None:
    """She states the person's fact (job, city, pet) as her own: a first-person clause naming it
    ("I'm a pilot too", "я тоже учительница", "я Анна, учительница"); a Russian verb that merely starts like the
    stem ("я летала" for the pilot's "лёт") is not a claim."""
    for sentence in split_sentences(reply):
        for m in _APPOSITION.finditer(normalise(sentence)):
            if any(_names_stem(m.group(1), s) == 0 for s in stems):
                return f"claims the person's {m.group(1)!r} as hers"
    for low in _first_person_clauses(reply):
        for s in stems:
            at = _names_stem(low, s)
            if at < 0:
                continue
            if _DENIAL.search(low[:at]):  # "I'm not a firefighter", "я не пилот": she says it is not hers
                continue
            return f"claims the person's {s!r} as hers"
    return None


# a plan told as hers: a first-person trip, move or appointment in the present or future, not a wish
# ("I'm flying to Japan next week", "я лечу в Японию"; not "I'd love to visit Japan", "я бы хотела в Японию")
_PLAN_EN = re.compile(r"\b(?:i'm|i am|i'll|i will|i'm going to|i am going to|i plan to|i'm planning to)\s+"
                      r"(?:\w+\s+)?(?:going|flying|fly|go|travell?ing|travel|moving|move|leaving|leave|heading|visiting|"
                      r"visit|off|starting|start|getting)\b|\bmy (?:trip|flight|plans?|journey|move)\b")
_PLAN_RU_LEMMAS = frozenset("""лететь полететь улетать улететь вылетать вылететь ехать поехать уезжать уехать
выезжать выехать идти пойти собираться планировать отправляться отправиться переезжать переехать ездить летать
плыть поплыть приезжать приехать прилетать прилететь начинать начать""".split())
_WISH = re.compile(r"\b(?:would|i'd|wish|dream|бы|мечтаю|мечтала|хотела|хотелось)\b")


def _plan_verb_ru(clause: str) -> bool:
    for word in re.findall(r"[а-я-]+", clause):
        for parse in _morph().parse(word)[:3]:
            tag = parse.tag
            if tag.POS == "VERB" and parse.normal_form in _PLAN_RU_LEMMAS and tag.tense != "past" and \
                    (tag.person == "1per" or word == "собираюсь"):
                return True
    return False


def claims_plan(reply: str, stems: Sequence[str]) -> str | None:
    """She tells the person's plan as her own: a first-person clause that names the plan's place or thing (a stem
    of ``stems``: "japan", "япони") with a trip or move in the present or future ("Next week I'm flying to Japan",
    "На следующей неделе я лечу в Японию"); a wish ("I'd love to see Japan", "я бы хотела в Японию") or a past
    trip ("я была в Японии") is hers to say."""
    for low in _first_person_clauses(reply):
        if _WISH.search(low):
            continue
        for s in stems:
            at = _names_stem(low, s)
            if at < 0 or _DENIAL.search(low[:at]):
                continue
            if _PLAN_EN.search(low) or _plan_verb_ru(low) or \
                    re.search(r"\b(?:next|tomorrow|на следующей|завтра|в эти выходные|this weekend)\b", low):
                return f"tells the person's plan ({s!r}) as hers"
    return None
