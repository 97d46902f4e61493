"""A persona's declared voice: the ``voice:`` section of ``workflows/personas/<id>.yaml``.

    voice:
      gender: female          # who she sounds like
      age: 24                 # informative
      pitch_hz: [180, 260]    # her median pitch stays in this range
      median_hz: 215          # target median pitch
      backends: {ru: festival, en: festival}   # preferred default voices per language
      reference: ""           # optional: a clip in the input folder, or "voice:NAME" from `main.py voice prepare`

Read here (not through the persona's text model) so that speech needs only this section.
"""

from __future__ import annotations

from pathlib import Path

from nodes.speak.shape import VoiceShape

NO_PERSONA = "none"


def personas_dir() -> Path:
    from nodes.think.persona import PERSONAS_DIR

    return PERSONAS_DIR


def persona_choices() -> list[str]:
    """``none`` (the backend's own voice) and the persona files, the default persona first."""
    from nodes.think.persona import persona_ids

    return [*persona_ids(personas_dir()), NO_PERSONA]


class PersonaVoiceError(ValueError):
    """The persona's ``voice:`` section is missing a file or is invalid; the message says which."""


def load_voice_shape(persona_id: str, folder: Path | None = None) -> VoiceShape | None:
    """The persona's voice, or None when it declares none (or ``persona_id`` is ``none``)."""
    import yaml

    if not persona_id or persona_id == NO_PERSONA:
        return None
    folder = folder or personas_dir()
    if "/" in persona_id or "\\" in persona_id or persona_id.startswith("."):
        raise PersonaVoiceError(f"persona {persona_id!r} is not a plain name of a file in {folder}")
    path = folder / f"{persona_id}.yaml"
    if not path.is_file():
        raise PersonaVoiceError(f"no persona file {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PersonaVoiceError(f"persona file {path} is not valid YAML: {exc}") from exc
    section = data.get("voice") if isinstance(data, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise PersonaVoiceError(f"the voice: section of {path} must be a mapping (gender, pitch_hz, ...)")
    try:
        return VoiceShape.from_mapping(section)
    except (TypeError, ValueError) as exc:
        raise PersonaVoiceError(f"the voice: section of {path} is invalid: {exc}") from exc
