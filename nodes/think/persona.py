"""Persona files: who the avatar is, how she speaks, which language she answers in.

A persona is a YAML file in ``workflows/personas/<id>.yaml`` validated by ``Persona``. Text fields are written
in English (the prompt language that small models follow best); ``greeting`` and ``examples`` may be given per
language (``en``, ``ru``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic

from engine.files.folders import PROJECT_ROOT

PERSONAS_DIR = PROJECT_ROOT / "workflows" / "personas"
DEFAULT_PERSONA = "alisa"


class ExampleExchange(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)

    user: str = pydantic.Field(min_length=1)
    assistant: str = pydantic.Field(min_length=1)


class PersonaText(pydantic.BaseModel):
    """The persona's text in one language: the system prompt of a conversation held in that language is written
    with it (a small model keeps a Russian persona, and her feminine grammar, better from Russian text)."""
    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)

    character: str = pydantic.Field(min_length=1)
    speaking_style: str = pydantic.Field(min_length=1)
    language_policy: str = pydantic.Field(min_length=1)
    reply_length: str = pydantic.Field(min_length=1)
    boundaries: list[str] = pydantic.Field(default_factory=list)
    example_dialog: list[ExampleExchange] = pydantic.Field(default_factory=list)


class Persona(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = pydantic.Field(min_length=1, max_length=60)
    language: str = pydantic.Field(default="en", description="the language she expects to be spoken to first: a live "
                                   "session evaluates the prompt in this language before the first turn")
    names: dict[str, str] = pydantic.Field(default_factory=dict,
                                           description="the name as written in other languages, e.g. ru: Алиса")
    character: str = pydantic.Field(min_length=1, description="who she is: age, character, her own facts")
    speaking_style: str = pydantic.Field(min_length=1)
    language_policy: str = "Reply in the language of the person's last message."
    reply_length: str = "one to three short sentences"
    greeting: dict[str, str] = pydantic.Field(default_factory=dict)
    self_gender: Literal["femn", "masc"] | None = pydantic.Field(
        default=None, description="the grammatical gender she speaks of herself in (Russian): self-references in the "
                                  "other gender ('я рад' for femn) are corrected before they are spoken")
    fallback: dict[str, str] = pydantic.Field(
        default_factory=dict, description="per language: what she says when every try of a reply was rejected by "
                                          "the reply guard (nodes/think/guard.py)")
    examples: dict[str, list[str]] = pydantic.Field(default_factory=dict,
                                                    description="example lines per language")
    boundaries: list[str] = pydantic.Field(default_factory=list)
    voice: dict[str, object] = pydantic.Field(default_factory=dict, description="nodes/speak/persona_voice.py")
    example_dialog: list[ExampleExchange] = pydantic.Field(
        default_factory=list, description="a short made-up exchange with someone else, shown to the model as a "
                                          "demonstration (it keeps small models from taking the person's name)")

    locales: dict[str, PersonaText] = pydantic.Field(
        default_factory=dict, description="the persona's text in other languages (ru: ...), used for conversations "
                                          "held in that language; the fields above are the English text")

    def text_in(self, language: str | None) -> PersonaText:
        """The persona's text for a conversation in ``language`` (the English fields when there is none)."""
        if language and language in self.locales:
            return self.locales[language]
        return PersonaText(character=self.character, speaking_style=self.speaking_style,
                           language_policy=self.language_policy, reply_length=self.reply_length,
                           boundaries=self.boundaries, example_dialog=self.example_dialog)

    def stranger_names(self) -> tuple[str, ...]:
        """The names of the made-up people in the example exchanges (of every language)."""
        from nodes.think.facts import extract_name

        texts = [self.text_in(None), *self.locales.values()]
        found = (extract_name(ex.user) for text in texts for ex in text.example_dialog)
        return tuple(dict.fromkeys(n for n in found if n))

    def name_in(self, language: str | None) -> str:
        return self.names.get(language or "", self.name)

    def greeting_in(self, language: str | None) -> str:
        return self.greeting.get(language or "", self.greeting.get("en", ""))

    def fallback_in(self, language: str | None) -> str:
        return self.fallback.get(language or "", self.fallback.get("en", "")) or (
            "Хм, дай подумать. Расскажи ещё?" if language == "ru" else "Hmm, let me think. Tell me more?")


class PersonaError(ValueError):
    pass


def persona_ids(folder: Path = PERSONAS_DIR) -> list[str]:
    """The persona files available (file stems), the default first."""
    if not folder.is_dir():
        return [DEFAULT_PERSONA]
    ids = sorted(p.stem for p in folder.glob("*.yaml"))
    if DEFAULT_PERSONA in ids:
        ids.remove(DEFAULT_PERSONA)
        ids.insert(0, DEFAULT_PERSONA)
    return ids or [DEFAULT_PERSONA]


def load_persona(persona_id: str, folder: Path = PERSONAS_DIR) -> Persona:
    import yaml

    if not persona_id or "/" in persona_id or "\\" in persona_id or persona_id.startswith("."):
        raise PersonaError(f"persona {persona_id!r} is not a plain name of a file in {folder}")
    path = folder / f"{persona_id}.yaml"
    if not path.is_file():
        raise PersonaError(f"no persona file {path}; available: {', '.join(persona_ids(folder))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Persona.model_validate(data)
    except yaml.YAMLError as e:
        raise PersonaError(f"persona file {path} is not valid YAML: {e}") from e
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(file)'}: {err['msg']}" for err in e.errors())
        raise PersonaError(f"persona file {path} is invalid: {problems}") from e
