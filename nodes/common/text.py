"""Text helpers shared by the stages, each defined once: which language a text is in (``detect_language``) and
cutting text into sentences (``SentenceSplitter`` for a streamed LLM reply, ``split_sentences`` for a whole text,
with an optional length bound for speech synthesis), plus ``clean_for_speech``.

Sentence rules (Russian and English):

* A sentence ends at ``.``, ``!``, ``?``, ``…`` (runs such as ``?!`` or ``...`` count as one end, closing quotes and
  brackets after them belong to the sentence) followed by white space, or at a newline.
* A ``.`` is *not* an end after a known abbreviation ("т.е.", "т.к.", "Dr.", "e.g."), after an initial
  ("J. K. Rowling", "А. С. Пушкин"), inside a number ("3.5") or when the next word starts with a lower-case
  letter. "etc." / "т.д." / "т.п." end a sentence only when a capitalised word follows.
* The end is confirmed only once the next non-space character has arrived (or the stream ended), so the last
  sentence of a reply is the one ``flush`` returns and can be marked final.
* The first sentence of a reply may be cut early at a comma (or ``;``, ``:``, a dash) once it passes
  ``first_comma_chars`` characters, so that speech starts sooner; any piece longer than ``max_chars`` is cut at
  the last space.
"""

from __future__ import annotations

import re
from collections.abc import Iterator


LANGUAGES = ("ru", "en")
LANGUAGE_NAMES = {"ru": "Russian", "en": "English"}

_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_LATIN = re.compile(r"[A-Za-z]")
_LETTER = re.compile(r"\w", re.UNICODE)


class UnsupportedLanguage(ValueError):
    """The text is in a language none of the speech backends speak."""


def detect_language(text: str, *, decide: bool = False) -> str | None:
    """``"ru"`` or ``"en"`` from the script of the letters.

    ``decide=False`` (the persona: which language was this message in?): the script of at least 60 % of the Latin
    and Cyrillic letters, else None (no letters, or a mix where neither dominates).
    ``decide=True`` (speech: which voice reads this?): always a language, the majority script (a tie: Russian),
    English for text without letters; raises ``UnsupportedLanguage`` when most letters are in another script.
    """
    cyr = len(_CYRILLIC.findall(text))
    lat = len(_LATIN.findall(text))
    if not decide:
        if cyr + lat == 0:
            return None
        if cyr >= 0.6 * (cyr + lat):
            return "ru"
        if lat >= 0.6 * (cyr + lat):
            return "en"
        return None
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


# ------------------------------------------------------------------ sentences

SENTENCE_END = ".!?…"
CLOSERS = "\"'»”’)]}"
SOFT_BREAKS = ",;:—–"

# Abbreviations (lower case, without the final dot) after which a dot never ends a sentence.
NEVER_END = frozenset({
    # English
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "e.g", "i.e", "cf", "approx", "fig",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "a.m", "p.m", "u.s", "u.k",
    # Russian
    "т.е", "т.к", "т.н", "т.ч", "т.о", "и.о", "ул", "д", "кв", "им", "см", "стр", "рис", "коп",
    "тыс", "млн", "млрд", "проф", "акад", "доц", "напр", "прим", "сокр", "англ", "рус", "лат", "обл", "р-н", "пос",
    "ст", "гл", "т", "с", "н.э", "до н.э",
})
# Abbreviations that often close a sentence: they end one only when a capitalised word follows.
MAY_END = frozenset({"etc", "т.д", "т.п", "al", "др", "пр", "inc", "ltd", "co", "мин", "сек", "г", "гг", "руб"})

_WORD_BEFORE_DOT = re.compile(r"([\w.\-]+)$")
_SPACE = re.compile(r"\s")
_MARKUP = re.compile(r"(\*\*|__|`+|^#+\s*|^\s*[-*•]\s+)", re.MULTILINE)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0000FE0F\U0000200D]+")


def clean_for_speech(text: str) -> str:
    """Drop what a TTS would read aloud but should not: markdown marks, bullets, emoji; squeeze white space."""
    text = _MARKUP.sub("", text)
    text = _EMOJI.sub("", text)
    return re.sub(r"[ \t]+", " ", text).strip()


class SentenceSplitter:
    """Incremental splitter: ``feed`` text pieces as they stream in, ``flush`` at the end of the reply."""

    def __init__(self, first_comma_chars: int = 60, max_chars: int = 300):
        self.first_comma_chars = first_comma_chars
        self.max_chars = max_chars
        self._buffer = ""
        self._emitted = 0  # sentences returned so far in this reply

    def reset(self) -> None:
        self._buffer = ""
        self._emitted = 0

    def feed(self, piece: str) -> list[str]:
        self._buffer += piece
        out: list[str] = []
        while True:
            cut = self._find_cut(final=False)
            if cut is None:
                break
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if sentence:
                out.append(sentence)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The rest of the reply (ends are now certain: nothing follows)."""
        out: list[str] = []
        while self._buffer.strip():
            cut = self._find_cut(final=True)
            if cut is None or cut >= len(self._buffer):
                out.append(self._buffer.strip())
                self._buffer = ""
                break
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if sentence:
                out.append(sentence)
        self._buffer = ""
        self._emitted += len(out)
        return out

    # ------------------------------------------------------------------ internals

    def _find_cut(self, final: bool) -> int | None:
        """Index just past the first confirmed sentence end in the buffer, or None."""
        buf = self._buffer
        n = len(buf)
        i = 0
        while i < n:
            ch = buf[i]
            if ch == "\n":
                rest = buf[i + 1:]
                if not buf[:i].strip():
                    i += 1
                    continue
                if rest.strip() or final:
                    return i + 1
                return None  # wait for the next sentence to start
            if ch in SENTENCE_END:
                j = i
                while j < n and buf[j] in SENTENCE_END:
                    j += 1
                while j < n and buf[j] in CLOSERS:
                    j += 1
                if j == n:
                    return n if final else None  # need to see what follows
                if not _SPACE.match(buf[j]):
                    i = j  # "3.5", "e.g.x", "?!" inside a token: not an end
                    continue
                k = j
                while k < n and buf[k].isspace():
                    k += 1
                if k == n:
                    if final:
                        return j
                    return None  # the next word has not arrived yet
                if self._is_end(buf, i, j, buf[k]):
                    return j
                i = j
                continue
            i += 1
        soft = self._soft_cut(buf)
        if soft is not None:
            return soft
        return None

    def _is_end(self, buf: str, start: int, stop: int, next_char: str) -> bool:
        marks = buf[start:stop].rstrip(CLOSERS)
        if any(m in "!?…" for m in marks) or len(marks) > 1:
            # "...", "?!": an end unless the text simply continues in lower case after an ellipsis
            return not (set(marks) <= {".", "…"} and next_char.islower())
        # a single dot
        m = _WORD_BEFORE_DOT.search(buf[:start])
        word = m.group(1) if m else ""
        bare = word.lower().strip(".-")
        if word[-1:].isdigit() and next_char.isdigit():
            return False
        if len(word) == 1 and word.isalpha() and word.isupper():
            return False  # an initial
        if bare in NEVER_END or _tail_abbreviation(bare, NEVER_END):
            return False
        if bare in MAY_END or _tail_abbreviation(bare, MAY_END):
            return next_char.isupper()
        if next_char.islower():
            return False
        return True

    def _soft_cut(self, buf: str) -> int | None:
        """Early cut of the first sentence at a comma, and a hard cut of over-long pieces."""
        if self._emitted == 0 and len(buf) > self.first_comma_chars:
            for m in re.finditer(rf"[{SOFT_BREAKS}](?=\s+\S)", buf):
                if m.start() >= self.first_comma_chars - 1:
                    return m.end()
        if len(buf) > self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return None


def _tail_abbreviation(word: str, table: frozenset[str]) -> bool:
    """'и т.д' -> 'т.д'; '(e.g' -> 'e.g'."""
    for abbr in table:
        if "." in abbr and word.endswith(abbr) and (len(word) == len(abbr) or not word[-len(abbr) - 1].isalpha()):
            return True
    return False


def split_sentences(text: str, max_chars: int | None = None, first_comma_chars: int = 10**9) -> list[str]:
    """Split a whole text into sentences by the rules above (no early comma cut unless asked).

    ``max_chars`` (speech synthesis): no piece is longer; a longer sentence is cut at clause breaks (, ; : dash),
    then at spaces, then hard. Pieces without any letter or digit are dropped then (nothing to say)."""
    splitter = SentenceSplitter(first_comma_chars=first_comma_chars,
                                max_chars=max(max_chars, 300) if max_chars else 300)
    sentences = splitter.feed(text) + splitter.flush()
    if max_chars is None:
        return sentences
    out: list[str] = []
    for raw in sentences:
        sentence = " ".join(raw.split())
        if sentence and any(ch.isalnum() for ch in sentence):
            out.extend(_bounded(sentence, max_chars))
    return out


_CLAUSE_BREAK = re.compile(r"(?<=[,:;—–-])\s+")


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
