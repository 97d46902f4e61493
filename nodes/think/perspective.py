"""The person's own words ("I repair bicycles", "я чиню велосипеды") turned to the second person, so that she can
say them back to the person ("You repair bicycles", "Ты чинишь велосипеды"), or to the third person, so that the
prompt can tell the model about the person without first-person words it could take as its own ("Oliver repairs
bicycles" is not produced: English keeps "they"; "Олег чинит велосипеды").

English swaps pronouns and the forms of "to be"; Russian also conjugates the verbs, with pymorphy3 (the verb in
the first person singular, present or future, goes to the second or third person: работаю -> работаешь / работает,
учусь -> учишься / учится), and declines "мой" by its own case and gender (моего -> твоего / его).
"""

from __future__ import annotations

import functools
import re
from typing import Any

_EN_SECOND = {"i": "you", "i'm": "you're", "i've": "you've", "i'd": "you'd", "i'll": "you'll", "me": "you",
              "my": "your", "mine": "yours", "myself": "yourself", "am": "are", "was": "were"}
_EN_THIRD = {"i": "they", "i'm": "they're", "i've": "they've", "i'd": "they'd", "i'll": "they'll", "me": "them",
             "my": "their", "mine": "theirs", "myself": "themselves", "am": "are", "was": "were"}
# a few verbs of the English third person ("they" takes the plain form, so only "am"/"was" change)
_EN_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|[^A-Za-z]+")

_RU_SECOND = {"я": "ты", "меня": "тебя", "мне": "тебе", "мной": "тобой", "мною": "тобою"}
_RU_THIRD_MASC = {"я": "он", "меня": "его", "мне": "ему", "мной": "им", "мною": "им"}
_RU_THIRD_FEMN = {"я": "она", "меня": "её", "мне": "ей", "мной": "ей", "мною": "ей"}
_RU_TOKEN = re.compile(r"[А-ЯЁа-яё]+(?:-[а-яё]+)?|[^А-ЯЁа-яё]+")
_GREETING = re.compile(r"^\s*(?:(?:hi|hello|hey|good (?:morning|afternoon|evening)|nice to meet you|привет|"
                       r"здравствуй(?:те)?|добрый (?:день|вечер)|доброе утро|приятно познакомиться|"
                       r"рада? познакомиться|by the way|кстати)\b[\s,!.—–-]*)+", re.IGNORECASE)
_PREPOSITIONS = frozenset("у с со к ко о об обо от до для без около при про над под перед за через".split())
_MY_RU = re.compile(r"^мо(?:й|я|ё|е|и|его|ей|ему|им|ем|ю|их|ими)$")


@functools.lru_cache(maxsize=1)
def morph() -> Any:
    """The one Russian morphology analyser of the persona (perspective, facts, judges)."""
    try:
        import pymorphy3
    except ImportError as e:  # pragma: no cover - pinned in requirements/llm.txt
        raise RuntimeError("pymorphy3 is not installed: pip install -r requirements/llm.txt") from e
    return pymorphy3.MorphAnalyzer(lang="ru")


def without_greeting(text: str) -> str:
    """``text`` without a greeting in front ("Hi, my name is Tom" -> "my name is Tom")."""
    rest = _GREETING.sub("", text, count=1)
    return rest if rest.strip() else text


def _match_case(word: str, like: str) -> str:
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _english(text: str, table: dict[str, str]) -> str:
    out = []
    first_person_before = False
    for token in _EN_TOKEN.findall(text):
        low = token.lower()
        if low in ("am", "was") and not first_person_before:
            out.append(token)  # "the party was fun" keeps its "was"
        elif low in table:
            out.append(table[low] if low.startswith("i") else _match_case(table[low], token))
        else:
            out.append(token)
        if token.strip():
            first_person_before = low == "i"
    result = "".join(out)
    return result[:1].upper() + result[1:] if result else result


def _first_person_verb(word: str, after_ya: bool) -> Any:
    """The parse of ``word`` as a verb in the first person singular (present/future), or None. An ambiguous word
    ("еду": the noun "еда" or "I ride") counts as the verb only right after "я" or when the verb is its best
    reading."""
    parses = morph().parse(word)
    for index, parse in enumerate(parses):
        tag = parse.tag
        if tag.POS == "VERB" and tag.person == "1per" and tag.number == "sing":
            return parse if (index == 0 or after_ya) else None
    return None


def _my_word(word: str, person: str) -> str:
    """A form of "мой" in ``person``: "2" -> the same form of "твой"; "3m"/"3f" -> "его"/"её"."""
    if person == "2":
        return "тво" + word[2:]
    return "его" if person == "3m" else "её"


def _russian(text: str, person: str) -> str:
    table = _RU_SECOND if person == "2" else _RU_THIRD_MASC if person == "3m" else _RU_THIRD_FEMN
    out = []
    after_ya = False
    before = ""
    for token in _RU_TOKEN.findall(text):
        low = token.lower()
        if not token[:1].isalpha():
            out.append(token)
            continue
        new = token
        if low in table:
            new = table[low]
            if before in _PREPOSITIONS and person != "2" and new[:1] in "еёи":
                new = "н" + new  # "у меня" -> "у него", "с ней"
            new = _match_case(new, token)
        elif _MY_RU.match(low.replace("ё", "е")):
            new = _match_case(_my_word(low, person), token)
        else:
            parse = _first_person_verb(low, after_ya)
            if parse is not None:
                changed = parse.inflect({"2per" if person == "2" else "3per"})
                if changed is not None:
                    new = _match_case(changed.word, token)
        out.append(new)
        before = low
        after_ya = low == "я" or (after_ya and low in ("тоже", "уже", "ещё", "еще", "сейчас", "не", "очень"))
    return "".join(out)


def _is_russian(text: str) -> bool:
    return bool(re.search(r"[А-ЯЁа-яё]", text))


def second_person(text: str) -> str:
    """The person's first-person words said back to them: "I live in Leeds" -> "You live in Leeds";
    "я работаю врачом" -> "ты работаешь врачом"; a greeting in front is dropped."""
    text = without_greeting(text.strip())
    if _is_russian(text):
        result = _russian(text, "2")
        return result[:1].upper() + result[1:]
    return _english(text, _EN_SECOND)


def third_person(text: str, feminine: bool | None = None) -> str:
    """The person's first-person words told about them: "I'm a pilot" -> "They're a pilot"; "я чиню велосипеды"
    -> "он чинит велосипеды" (``feminine``: "она", "её"; None: from the words, masculine when they do not say)."""
    text = without_greeting(text.strip())
    if _is_russian(text):
        if feminine is None:
            feminine = speaker_is_feminine(text)
        return _russian(text, "3f" if feminine else "3m")
    return _english(text, _EN_THIRD)


def speaker_is_feminine(text: str) -> bool:
    """Whether Russian first-person words show a woman speaking ("я устала", "я студентка", "я посадила")."""
    words = [w.lower() for w in re.findall(r"[А-ЯЁа-яё]+", text)]
    for i, word in enumerate(words):
        if word != "я":
            continue
        for nxt in words[i + 1:i + 3]:
            for parse in morph().parse(nxt)[:1]:
                tag = parse.tag
                if tag.POS in ("VERB", "ADJS", "PRTS", "NOUN", "ADJF") and tag.gender in ("masc", "femn") and \
                        (tag.POS != "VERB" or tag.tense == "past") and (tag.case in (None, "nomn")):
                    return tag.gender == "femn"
    return False


def name_is_feminine(name: str) -> bool | None:
    """The grammatical gender of a Russian first name (pymorphy3's 'Name' grammeme), None when unknown."""
    if not _is_russian(name):
        return None
    for parse in morph().parse(name):
        if "Name" in parse.tag and parse.tag.case == "nomn":
            return parse.tag.gender == "femn"
    return None
