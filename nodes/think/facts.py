"""Facts the person states about themselves, pulled out of their turns so the prompt can keep them in a separate
"what you know about the person" block (small models otherwise take the user's name or job as their own).

Rule-based and cheap: the person's name from the usual phrasings (en/ru), and other first-person statements
("I am a pilot", "я живу в Казани", "мне 30 лет") kept as short quotations attributed to the person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodes.common.text import split_sentences

_NAME_PATTERNS = (
    re.compile(r"\b(?i:my name is|my name's|call me)\s+([A-Z][\w'-]+)"),
    re.compile(r"\bI(?:'m| am) ([A-Z][a-z'-]+)\b(?!\s+(?:and\s+)?(?:too|from))"),
    re.compile(r"(?i:меня зовут)\s+([А-ЯЁA-Z][\w-]+)"),
    re.compile(r"(?i:моё|мое)\s+(?i:имя)\s*(?:[—–-]\s*)?([А-ЯЁA-Z][\w-]+)"),
    re.compile(r"(?i:зови(?:те)? меня)\s+([А-ЯЁA-Z][\w-]+)"),
    re.compile(r"(?:^|[.!?,]\s*)(?:Я|я)\s+(?:[—–-]\s+)?([А-ЯЁ][а-яё-]+)(?=[\s,.!?]|$)"),
)
_NOT_NAMES = frozenset({"fine", "good", "okay", "ok", "here", "back", "sorry", "glad", "happy", "english", "russian",
                        "american", "not", "so", "very", "just", "also", "i"})
# First-person statements worth remembering (who the person is, what they do, like, have), not passing events.
_SELF_STATEMENT = re.compile(
    r"\b(?:I(?:'m| am) (?:a|an|from|\d+|married|single|studying|learning|working|retired)\b"
    r"|I (?:work|live|come from|study|have|like|love|enjoy|hate|was born|grew up|teach|play|speak)\b"
    r"|my (?:name|job|wife|husband|son|daughter|kids|children|dog|cat|favou?rite|hobby|work|home|city|age)\b"
    r"|(?:меня зовут|я работаю|я живу|я из\b|я родил|я учусь|я учу|я преподаю|я люблю|я обожаю|я ненавижу"
    r"|я играю|я говорю|я по профессии|мне \d+|у меня (?:есть|двое|трое|сын|дочь|собака|кошка|муж|жена)"
    r"|мо(?:й|я|и|ё|е) (?:работа|профессия|муж|жена|сын|дочь|дети|собака|кот|кошка|хобби|любим|город|имя)))"
    r"|^(?:я|Я)\s+[а-яё-]+[.!]?$"
    r"|(?:^|,\s*)я\s+(?:[а-яё]+(?:ница|ник|тель|тельница|ист|истка|ер|ёр|ор|ач|ар|арь|ый|ой|ка))\b",
    re.IGNORECASE)
_QUESTION = re.compile(r"\?\s*$")
_PLEASANTRY = re.compile(r"^(?:I'm|I am|I feel|Я|У меня)\s+"
                         r"(?:(?:all|very|so|really|just|тоже|всё|все|очень|вполне)\s+)?(?:fine|ok|okay|good|great|well|alright|хорошо|нормально|отлично|в порядке)\b",
                         re.IGNORECASE)
MAX_FACT_CHARS = 120


@dataclass(frozen=True)
class Fact:
    kind: str  # "name" or "said"
    text: str  # the name, or the person's own sentence

    def render(self, language: str | None = "en") -> str:
        if language == "ru":
            if self.kind == "name":
                return f"Собеседника зовут {self.text}."
            return f"Собеседник сказал о себе: «{third_person(self.text)}»"
        if self.kind == "name":
            return f"The person's name is {self.text}."
        return f"The person said about themselves: {third_person(self.text)}"


_EN_THIRD_PERSON = ((r"\bI'm\b", "they're"), (r"\bI am\b", "they are"), (r"\bI was\b", "they were"),
                    (r"\bI've\b", "they've"), (r"\bI'd\b", "they'd"), (r"\bI\b", "they"), (r"\bmy\b", "their"),
                    (r"\bMy\b", "Their"), (r"\bme\b", "them"), (r"\bmine\b", "theirs"), (r"\bmyself\b", "themselves"))
_RU_THIRD_PERSON = ((r"\b[Мм]еня зовут\b", "его (её) зовут"), (r"\b[Мм]не\b", "ему (ей)"), (r"\b[Яя]\b", "он (она)"),
                    (r"\b[Мм]ой\b", "его (её)"), (r"\b[Мм]оя\b", "его (её)"), (r"\b[Мм]о[её]\b", "его (её)"),
                    (r"\b[Мм]ои\b", "его (её)"), (r"\b[Уу] меня\b", "у него (неё)"))


def third_person(text: str) -> str:
    """The person's own words turned to the third person, so the model does not say them as its own
    ("I'm a pilot" -> "they're a pilot"; "я учительница" -> "он (она) учительница")."""
    table = _RU_THIRD_PERSON if re.search(r"[а-яё]", text.lower()) else _EN_THIRD_PERSON
    for pattern, replacement in table:
        text = re.sub(pattern, replacement, text)
    return text


def extract_name(text: str) -> str | None:
    for pattern in _NAME_PATTERNS:
        m = pattern.search(text)
        if m and m.group(1).lower() not in _NOT_NAMES:
            return m.group(1)
    return None


def extract_facts(text: str) -> list[Fact]:
    """Facts in one user turn, in order."""
    facts: list[Fact] = []
    name = extract_name(text)
    if name:
        facts.append(Fact("name", name))
    for sentence in split_sentences(text):
        if _QUESTION.search(sentence) or not _SELF_STATEMENT.search(sentence) or _PLEASANTRY.match(sentence):
            continue
        if len(sentence) > MAX_FACT_CHARS:
            sentence = sentence[:MAX_FACT_CHARS].rsplit(" ", 1)[0] + "…"
        facts.append(Fact("said", sentence))
    return facts


def merge_facts(older: list[Fact], newer: list[Fact], limit: int = 12) -> list[Fact]:
    """Newer facts win: one name (the latest), quotations deduplicated, at most ``limit`` kept (newest)."""
    merged: list[Fact] = []
    for fact in older + newer:
        if fact.kind == "name":
            merged = [f for f in merged if f.kind != "name"]
        elif any(f.kind == fact.kind and f.text.lower() == fact.text.lower() for f in merged):
            continue
        merged.append(fact)
    names = [f for f in merged if f.kind == "name"]
    said = [f for f in merged if f.kind != "name"]
    return names + said[-max(0, limit - len(names)):]
