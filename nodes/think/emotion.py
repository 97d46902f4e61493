"""A coarse emotion label per sentence (neutral, happy, sad, surprised, angry) for the face animator.

A small lexicon for Russian and English: each label has words or word stems (Russian stems match any ending),
plus punctuation cues ("!" leans happy, "?!" / "!?" surprised) and a negation guard ("not happy" is not happy).
The strongest score wins; ties and no cues give ``neutral``.
"""

from __future__ import annotations

import re

from nodes.io.media import EMOTIONS

_LEXICON: dict[str, tuple[str, ...]] = {
    "happy": (
        # English (whole words or word starts)
        "glad", "happy", "great", "wonderful", "awesome", "amazing", "love", "lovely", "nice", "fun", "enjoy",
        "delight", "fantastic", "excellent", "cool", "yay", "haha", "hooray", "congrat", "pleas", "cheer", "smile",
        "thank", "welcome", "brilliant", "perfect", "exciting", "excited",
        # Russian stems
        "рад", "рада", "радост", "счаст", "отличн", "здорово", "замечательн", "прекрасн", "чудесн", "класс",
        "люблю", "нрав", "весел", "ура", "поздравл", "спасибо", "приятн", "улыб", "восхитит", "супер", "хорош",
        "ха-ха", "хаха", "интересн",
    ),
    "sad": (
        "sad", "sorry", "unfortunately", "miss", "lonely", "cry", "tear", "upset", "grief", "depress", "alas",
        "regret", "hurt", "tired", "lost", "bad news", "poor",
        "груст", "печал", "жаль", "жалко", "сожален", "скуча", "одинок", "плач", "слез", "тоск", "расстро",
        "обидн", "увы", "устал", "больно", "извин", "простите", "прости",
    ),
    "surprised": (
        "wow", "really", "surpris", "unbelievable", "incredible", "no way", "oh my", "whoa", "unexpected", "amazed",
        "ого", "вау", "неужели", "правда", "удивит", "удивл", "невероятн", "вот это да", "не может быть",
        "неожиданн", "ничего себе", "ух ты",
    ),
    "angry": (
        "angry", "annoy", "furious", "hate", "outrage", "mad at", "stupid", "damn", "irritat", "rage", "unfair",
        "disgust", "stop it", "how dare",
        "злю", "злит", "злость", "зл", "бесит", "раздража", "ненавиж", "возмутит", "безобраз", "ярост", "гнев",
        "достал", "хватит", "несправедлив", "отвратит",
    ),
}
_NEGATIONS = ("not", "n't", "never", "no", "не", "ни", "нет")
_WORD = re.compile(r"[\w'-]+", re.UNICODE)


def _matches(token: str, cue: str) -> bool:
    if " " in cue:
        return False  # phrases are matched on the whole text
    if re.fullmatch(r"[a-z'-]+", cue):
        return token == cue or (len(cue) >= 4 and token.startswith(cue))
    if len(cue) <= 2:
        return token == cue
    return token.startswith(cue)


def label_emotion(sentence: str) -> str:
    """One of ``nodes.media.EMOTIONS`` for a sentence."""
    text = sentence.lower()
    tokens = _WORD.findall(text)
    scores = dict.fromkeys(EMOTIONS, 0.0)
    for label, cues in _LEXICON.items():
        for cue in cues:
            if " " in cue and cue in text:
                scores[label] += 1.0
        for index, token in enumerate(tokens):
            if any(_matches(token, cue) for cue in cues):
                negated = any(t in _NEGATIONS or t.endswith("n't") for t in tokens[max(0, index - 2):index])
                if negated and label in ("happy", "surprised"):
                    scores["sad" if label == "happy" else "neutral"] += 0.5
                elif not negated:
                    scores[label] += 1.0
    stripped = sentence.rstrip(" \"'»”’)")
    if stripped.endswith(("?!", "!?")):
        scores["surprised"] += 1.0
    elif stripped.endswith("!") and max(scores.values()) == 0:
        scores["happy"] += 0.5
    best = max(("happy", "sad", "surprised", "angry"), key=lambda k: scores[k])
    return best if scores[best] > 0 else "neutral"
