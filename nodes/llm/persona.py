"""Persona files: who the avatar is, how she speaks, which language she answers in.

A persona is a YAML file in ``workflows/personas/<id>.yaml`` validated by ``Persona``. Text fields are written
in English (the prompt language that small models follow best); ``greeting`` and ``examples`` may be given per
language (``en``, ``ru``, ...).
"""

from __future__ import annotations

from pathlib import Path

import pydantic

from engine.folders import PROJECT_ROOT

PERSONAS_DIR = PROJECT_ROOT / "workflows" / "personas"
DEFAULT_PERSONA = "alisa"


class ExampleExchange(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)

    user: str = pydantic.Field(min_length=1)
    assistant: str = pydantic.Field(min_length=1)


class Persona(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = pydantic.Field(min_length=1, max_length=60)
    names: dict[str, str] = pydantic.Field(default_factory=dict,
                                           description="the name as written in other languages, e.g. ru: Алиса")
    character: str = pydantic.Field(min_length=1, description="who she is: age, character, her own facts")
    speaking_style: str = pydantic.Field(min_length=1)
    language_policy: str = "Reply in the language of the person's last message."
    reply_length: str = "one to three short sentences"
    greeting: dict[str, str] = pydantic.Field(default_factory=dict)
    examples: dict[str, list[str]] = pydantic.Field(default_factory=dict,
                                                    description="example lines per language")
    boundaries: list[str] = pydantic.Field(default_factory=list)
    example_dialog: list[ExampleExchange] = pydantic.Field(
        default_factory=list, description="a short made-up exchange with someone else, shown to the model as a "
                                          "demonstration (it keeps small models from taking the person's name)")

    def name_in(self, language: str | None) -> str:
        return self.names.get(language or "", self.name)

    def greeting_in(self, language: str | None) -> str:
        return self.greeting.get(language or "", self.greeting.get("en", ""))


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
