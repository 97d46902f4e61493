"""Every built-in node explains itself the same way in the editor: a display name in Title Case with spaces
("Video Out", "Video Out (Live)", "LLM Persona"), a description, and a tooltip on every input (the editor
shows it on hover)."""

from __future__ import annotations

import re

import pytest

from engine.graph.registry import NodeRegistry

SMALL_WORDS = frozenset({"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "per", "the",
                         "to", "with", "vs"})
PROPER_NAMES = frozenset({"SadTalker", "Wav2Lip", "RealESRGAN", "GFPGAN", "CodeFormer", "MediaPipe", "LivePortrait",
                          "PyAV", "FFmpeg", "OpenAI", "LoRA", "llama.cpp", "espeak-ng", "eSpeak", "eSpeak-NG",
                          "WebM", "XTTS-v2", "FaceMesh", "iOS", "JPEGs", "PNGs", "URLs", "IDs"})
WORD = re.compile(r"^[(\[]?([A-Z0-9][A-Za-z0-9.+\-/']*|[a-z]+)[)\]]?[:,]?$")


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    reg = NodeRegistry()
    reg.discover("nodes")
    return reg


def name_problem(name: str) -> str | None:
    """Why ``name`` does not follow the convention, or None."""
    if not name or name != name.strip() or "  " in name:
        return "empty, or stray spaces"
    if "_" in name:
        return "underscores instead of spaces"
    for i, word in enumerate(name.split(" ")):
        bare = word.strip("()[]:,")
        if bare in PROPER_NAMES:
            continue
        match = WORD.match(word)
        if match is None:
            return f"word {word!r} is not a Title Case word"
        core = match.group(1)
        if core in PROPER_NAMES:
            continue
        if core[0].islower() and (i == 0 or core not in SMALL_WORDS):
            return f"word {word!r} should start with a capital"
        if re.search(r"[a-z][A-Z]", core):
            return f"word {word!r} joins two words (CamelCase): separate them with a space"
    return None


def test_name_rule() -> None:
    for good in ("Video Out", "Video Out (Live)", "LLM Persona", "Text to Speech", "Load Image", "TTS",
                 "Preview Any", "ESRGAN Upscale", "Whisper", "Mic Input", "Face Animate (SadTalker)"):
        assert name_problem(good) is None, (good, name_problem(good))
    for bad in ("VideoOut", "video out", "Video_Out", "Video out", "", " Video Out", "FaceAnimate"):
        assert name_problem(bad) is not None, bad


def test_every_node_has_a_display_name_in_title_case(registry: NodeRegistry) -> None:
    problems = []
    for cls in registry:
        name = cls.DISPLAY_NAME or cls.TYPE
        why = name_problem(name)
        if why:
            problems.append(f"{cls.__module__}.{cls.__name__}: DISPLAY_NAME {name!r}: {why}")
    assert not problems, "\n".join(problems)


def test_every_node_has_a_description(registry: NodeRegistry) -> None:
    missing = [f"{cls.__module__}.{cls.__name__}" for cls in registry if not str(cls.DESCRIPTION or "").strip()]
    assert not missing, "no DESCRIPTION:\n" + "\n".join(missing)


def test_every_input_has_a_tooltip(registry: NodeRegistry) -> None:
    missing = []
    total = 0
    for cls in registry:
        for spec in cls.INPUTS:
            if getattr(spec, "hidden", False):
                continue
            total += 1
            if not str(getattr(spec, "tooltip", "") or "").strip():
                missing.append(f"{cls.__module__}.{cls.__name__}.{spec.name}")
    assert total > 50, total
    assert not missing, f"{len(missing)} of {total} inputs have no tooltip:\n" + "\n".join(missing)
