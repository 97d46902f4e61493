"""Which language a text is written in, as far as the persona cares: Russian, English, or unknown."""

from __future__ import annotations

import re

_CYRILLIC = re.compile(r"[а-яёА-ЯЁ]")
_LATIN = re.compile(r"[a-zA-Z]")
LANGUAGE_NAMES = {"ru": "Russian", "en": "English"}


def detect_language(text: str) -> str | None:
    """``"ru"``, ``"en"`` or None (no letters, or neither script dominates)."""
    cyr = len(_CYRILLIC.findall(text))
    lat = len(_LATIN.findall(text))
    if cyr + lat == 0:
        return None
    if cyr >= 0.6 * (cyr + lat):
        return "ru"
    if lat >= 0.6 * (cyr + lat):
        return "en"
    return None
