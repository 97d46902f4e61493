"""Text preparation for speech: language detection and sentence chunking with a bounded chunk length."""

from __future__ import annotations

import re
from collections.abc import Iterator

LANGUAGES = ("ru", "en")

_SENTENCE_END = re.compile(r"(?<=[.!?…;])[\"'»)\]]*\s+|\n{2,}")
_CLAUSE_BREAK = re.compile(r"(?<=[,:;—–-])\s+")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_LATIN = re.compile(r"[A-Za-z]")
_LETTER = re.compile(r"\w", re.UNICODE)


class UnsupportedLanguage(ValueError):
    """The text is in a language none of the speech backends speak."""


def detect_language(text: str) -> str:
    """``ru`` or ``en`` from the script of the letters; raises ``UnsupportedLanguage`` for other scripts."""
    cyr = len(_CYRILLIC.findall(text))
    lat = len(_LATIN.findall(text))
    letters = sum(1 for ch in _LETTER.findall(text) if not ch.isdigit() and ch != "_")
    if cyr + lat == 0:
        if letters == 0:
            return "en"  # digits and punctuation only: read in English
        raise UnsupportedLanguage(f"the text is written in a script other than Latin or Cyrillic "
                                  f"({text[:40]!r}); supported languages: {', '.join(LANGUAGES)}")
    if (cyr + lat) < 0.5 * letters:
        raise UnsupportedLanguage(f"most of the text is in a script other than Latin or Cyrillic "
                                  f"({text[:40]!r}); supported languages: {', '.join(LANGUAGES)}")
    return "ru" if cyr >= lat else "en"


def resolve_language(language: str, text: str) -> str:
    """The language widget value (``auto``, ``ru``, ``en``) resolved against the text."""
    if language == "auto":
        return detect_language(text)
    if language not in LANGUAGES:
        raise UnsupportedLanguage(f"language {language!r} is not supported; choose one of: auto, "
                                  f"{', '.join(LANGUAGES)}")
    return language


def split_sentences(text: str, max_chars: int = 240) -> Iterator[str]:
    """Yield sentences of ``text``, each at most ``max_chars`` long (long ones are cut at clause breaks,
    then at spaces, then hard). Lazy, so a long text never becomes one huge synthesis job."""
    for raw in _SENTENCE_END.split(text):
        sentence = " ".join(raw.split())
        if not sentence or not any(ch.isalnum() for ch in sentence):
            continue
        yield from _bounded(sentence, max_chars)


def _bounded(sentence: str, max_chars: int, level: int = 0) -> Iterator[str]:
    """Cut at clause breaks (level 0), then at spaces (level 1), then hard (level 2)."""
    if len(sentence) <= max_chars:
        yield sentence
        return
    if level >= 2:
        for i in range(0, len(sentence), max_chars):
            yield sentence[i:i + max_chars]
        return
    pieces = _CLAUSE_BREAK.split(sentence) if level == 0 else sentence.split(" ")
    current = ""
    for piece in pieces:
        if len(piece) > max_chars:
            if current:
                yield current
                current = ""
            yield from _bounded(piece, max_chars, level + 1)
            continue
        candidate = f"{current} {piece}".strip()
        if len(candidate) <= max_chars:
            current = candidate
        else:
            if current:
                yield current
            current = piece
    if current:
        yield current
