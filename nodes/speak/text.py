"""Text preparation for speech: the language widget resolved against the text. Language detection and sentence
chunking with a bounded chunk length are the shared ones of ``nodes.common.text``."""

from __future__ import annotations

from nodes.common.text import LANGUAGES, UnsupportedLanguage, detect_language, split_sentences

__all__ = ["LANGUAGES", "UnsupportedLanguage", "detect_language", "resolve_language", "split_sentences"]


def resolve_language(language: str, text: str) -> str:
    """The language widget value (``auto``, ``ru``, ``en``) resolved against the text."""
    if language == "auto":
        return detect_language(text, decide=True)  # type: ignore[return-value]
    if language not in LANGUAGES:
        raise UnsupportedLanguage(f"language {language!r} is not supported; choose one of: auto, "
                                  f"{', '.join(LANGUAGES)}")
    return language
