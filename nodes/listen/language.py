"""Which language a turn was spoken in, when Whisper's own language detection is not to be trusted alone.

Whisper base detects the language from the first seconds of audio; on short, synthetic or accented speech it
often picks the wrong one ("Добрый вечер!" from espeak-ng came back as English), and a transcript decoded in the
wrong language is gibberish in that language. ``choose_transcript`` decides among the allowed languages with:

* the session's choice: a fixed language is the only one decoded;
* in ``auto``: the detector's probabilities restricted to the allowed languages, combined with a prior - the
  language the conversation has been in so far (``ConversationLanguage``), which a later turn keeps unless the
  detector is nearly certain of another language;
* a plausibility check of the decoded text: a transcript that is improbable in its language (low average
  log-probability per token, letters of the wrong script, repeated n-grams) is decoded again in the other
  language(s), and the more plausible transcript wins. Without a clear margin and without a prior, every allowed
  language is decoded and compared.

Decoding is injected (``decode(language) -> Decoded``), so the same logic serves faster-whisper and openai-whisper
and is unit-tested without a model.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

CLEAR_MARGIN = 0.6  # p(best) - p(second) (within the allowed languages) that lets the first words decide alone
PRIOR_WEIGHT = 0.9  # the conversation's language so far, as a prior probability against the other languages
FAVOURITE_BONUS = 0.25  # score bonus of the detector's (or the prior's) favourite when transcripts are compared
LOW_LOGPROB = -0.85  # average log-probability per token below this: improbable in that language
MAX_COMPRESSION = 2.0  # gzip ratio of the text above this: repetitive
WRONG_SCRIPT_SHARE = 0.3  # more than this share of the letters in another script: improbable
SCRIPTS = {"ru": re.compile(r"[\u0400-\u04FF]"), "uk": re.compile(r"[\u0400-\u04FF]"),
           "en": re.compile(r"[A-Za-z]"), "de": re.compile(r"[A-Za-zÄÖÜäöüß]"), "fr": re.compile(r"[A-Za-zÀ-ÿ]"),
           "es": re.compile(r"[A-Za-zÁÉÍÑÓÚÜáéíñóúü]"), "it": re.compile(r"[A-Za-zÀ-ÿ]"),
           "pt": re.compile(r"[A-Za-zÀ-ÿ]"), "pl": re.compile(r"[A-Za-ząćęłńóśźżĄĆĘŁŃÓŚŹŻ]"),
           "nl": re.compile(r"[A-Za-zÀ-ÿ]"), "tr": re.compile(r"[A-Za-zÇĞİÖŞÜçğıöşü]")}
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class Decoded:
    """One decode of a turn in one language."""

    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float
    n_tokens: int = 0


@dataclass(frozen=True)
class Plausibility:
    score: float  # higher is more plausible; avg log-probability minus penalties
    problems: tuple[str, ...]  # why it is improbable (empty: plausible)

    @property
    def plausible(self) -> bool:
        return not self.problems


def script_share(text: str, language: str) -> float:
    """The share of the letters of ``text`` written in ``language``'s script (1.0 when it has no letters or the
    language's script is unknown here)."""
    pattern = SCRIPTS.get(language)
    letters = _LETTER.findall(text)
    if pattern is None or not letters:
        return 1.0
    return sum(1 for ch in letters if pattern.match(ch)) / len(letters)


def repeated_ngrams(text: str, n: int = 2) -> float:
    """Share of the word n-grams of ``text`` that occur more than once ("the winner is the winner")."""
    words = ["".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()]
    words = [w for w in words if w]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 3:
        return 0.0
    counts: dict[tuple[str, ...], int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    return sum(c for c in counts.values() if c > 1) / len(grams)


def compression(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if len(raw) > 24 else 0.0


def plausibility(decoded: Decoded) -> Plausibility:
    problems: list[str] = []
    score = decoded.avg_logprob
    if not decoded.text.strip():
        return Plausibility(score - 1.0, ("empty",))
    if decoded.avg_logprob < LOW_LOGPROB:
        problems.append(f"low log-probability ({decoded.avg_logprob:.2f})")
    share = script_share(decoded.text, decoded.language)
    if share < 1.0 - WRONG_SCRIPT_SHARE:
        problems.append(f"wrong script ({share:.0%} of the letters fit {decoded.language})")
        score -= 2.0 * (1.0 - share)
    repeats = repeated_ngrams(decoded.text)
    if repeats >= 0.25 or compression(decoded.text) > MAX_COMPRESSION:
        problems.append(f"repeated n-grams ({repeats:.0%})")
        score -= repeats
    return Plausibility(score, tuple(problems))


@dataclass
class ConversationLanguage:
    """The language a conversation has been in: the prior for its next turn (kept per session)."""

    language: str | None = None
    turns: int = 0
    history: list[str] = field(default_factory=list)

    def heard(self, language: str) -> None:
        self.history = (self.history + [language])[-8:]
        self.turns += 1
        self.language = language


@dataclass(frozen=True)
class LanguageChoice:
    decoded: Decoded
    language_prob: float  # the detector's probability of the chosen language within the allowed ones
    decodes: int  # how many languages were decoded
    reason: str  # "fixed", "clear", "prior", "compared", "fallback"
    plausible: bool


def _normalise(probs: Mapping[str, float], allowed: Sequence[str]) -> dict[str, float]:
    raw = {lang: max(float(probs.get(lang, 0.0)), 0.0) for lang in allowed}
    total = sum(raw.values())
    if total <= 0:
        return {lang: 1.0 / len(allowed) for lang in allowed}
    return {lang: p / total for lang, p in raw.items()}


def choose_transcript(allowed: Sequence[str], probs: Mapping[str, float] | None,
                      decode: Callable[[str], Decoded], prior: str | None = None) -> LanguageChoice:
    """Decode the turn in the language it most plausibly is in (see the module doc). ``probs``: the detector's
    language probabilities (None when ``allowed`` holds one language)."""
    if len(allowed) == 1:
        return LanguageChoice(decode(allowed[0]), 1.0, 1, "fixed", True)
    p = _normalise(probs or {}, allowed)
    ranked = sorted(allowed, key=lambda lang: p[lang], reverse=True)
    if prior in p:
        posterior = {lang: p[lang] * (PRIOR_WEIGHT if lang == prior else (1 - PRIOR_WEIGHT) / (len(allowed) - 1))
                     for lang in allowed}
        ranked = sorted(allowed, key=lambda lang: posterior[lang], reverse=True)
        reason = "prior"
        compare_all = ranked[0] != prior  # leaving the conversation's language: only if it reads better
    else:
        margin = p[ranked[0]] - p[ranked[1]]
        reason = "clear" if margin >= CLEAR_MARGIN else "compared"
        compare_all = margin < CLEAR_MARGIN
    first = decode(ranked[0])
    first_check = plausibility(first)
    if first_check.plausible and not compare_all:
        return LanguageChoice(first, p[ranked[0]], 1, reason, True)
    candidates = [(first, first_check)]
    for lang in ranked[1:]:
        other = decode(lang)
        candidates.append((other, plausibility(other)))
    # a plausible transcript beats an improbable one; among plausible ones the higher score wins (the favourite
    # with a bonus); when none is plausible the speech says little about its language: the favourite stays
    def key(c: tuple[Decoded, Plausibility]) -> tuple[bool, float]:
        favourite = c[0].language == ranked[0] or (prior is not None and c[0].language == prior)
        if not c[1].plausible:  # the conversation's language first, then the detector's favourite
            return False, 2.0 if c[0].language == prior else (1.0 if c[0].language == ranked[0] else 0.0)
        return True, c[1].score + (FAVOURITE_BONUS if favourite else 0.0)
    best, check = max(candidates, key=key)
    if reason != "compared" and best is not first:
        reason = "fallback"
    return LanguageChoice(best, p[best.language], len(candidates), reason, check.plausible)
