"""What the Talk page can choose (persona, photo, voice, workflow) and the chat workflow personalised with it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from engine.files import atomic
from engine.files.folders import IMAGE_EXTENSIONS, PROJECT_ROOT, folders
from engine.app.runtime import Runtime
from server.talk.protocol import ProtocolError, StartMessage

log = logging.getLogger(__name__)

WORKFLOWS_DIR = PROJECT_ROOT / "workflows"
DEFAULT_PHOTO = "default portrait"
DEFAULT_PHOTO_FILE = "avatargraph_default_portrait.png"
DEFAULT_WORKFLOW = "avatar_chat"
USER_WORKFLOWS = ("user", "default", "workflows")  # where the editor saves workflows, below the data dir


def default_portrait() -> Path | None:
    """The portrait offered when the user has uploaded none: scikit-image's public-domain astronaut photo."""
    try:
        import skimage
    except ImportError:
        return None
    path = Path(skimage.__file__).parent / "data" / "astronaut.png"
    return path if path.is_file() else None


def chat_workflows() -> dict[str, Path]:
    """Workflow name -> file, for the shipped and user-saved workflows whose name contains "chat"."""
    found: dict[str, Path] = {}
    folders_to_scan = [WORKFLOWS_DIR, folders.data_dir.joinpath(*USER_WORKFLOWS)]
    for folder in folders_to_scan:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            name = path.name.removesuffix(".json").removesuffix(".api")
            if "chat" not in name.lower():
                continue
            if path.name.endswith(".api.json") or name not in found:  # the API form wins over the editor form
                found[name] = path
    return found


def load_workflow(name: str, runtime: Runtime) -> dict[str, Any]:
    """The API-form prompt of chat workflow ``name`` (editor-form files are converted)."""
    from engine.comfy.ui_format import is_ui_workflow, ui_to_api

    path = chat_workflows().get(name)
    if path is None:
        raise ProtocolError(f"unknown workflow {name!r}: choose one of {', '.join(chat_workflows()) or 'none'}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"workflow {name!r} ({path.name}) cannot be read: {exc}") from None
    if is_ui_workflow(data):
        data = ui_to_api(data, runtime.registry)
    return data


def voice_input(cls: Any) -> str | None:
    """Which widget of a node class the page's "voice" choice sets: a ``voice`` combo, or else the backend of a
    speech node (the default voices differ by backend: Piper, Festival, espeak-ng, XTTS)."""
    spec = cls.input_spec("voice")
    if spec is not None and spec.is_widget:
        return "voice"
    spec = cls.input_spec("backend")
    if spec is not None and spec.is_widget and str(cls.CATEGORY).endswith("/speak"):
        return "backend"
    return None


def _input_choices(runtime: Runtime, prompt: dict[str, Any] | None, input_name: str) -> list[str]:
    """The choices of the combo ``input_name`` ("voice": see ``voice_input``) of the nodes in ``prompt`` (or in
    the whole registry)."""
    classes = []
    if prompt:
        for node in prompt.values():
            cls = runtime.registry.nodes.get(node.get("class_type", ""))
            if cls is not None:
                classes.append(cls)
    else:
        classes = list(runtime.registry)
    out: list[str] = []
    for cls in classes:
        name = voice_input(cls) if input_name == "voice" else input_name
        spec = cls.input_spec(name) if name else None
        if spec is None or not spec.is_widget:
            continue
        try:
            choices = spec.current_choices() or []
        except Exception as exc:  # a broken choices callback must not break the page
            log.warning("choices of %s.%s failed: %s", cls.TYPE, input_name, exc)
            continue
        out += [str(c) for c in choices if str(c) not in out]
    return out


def talk_options(runtime: Runtime) -> dict[str, Any]:
    workflows = list(chat_workflows())
    default_workflow = DEFAULT_WORKFLOW if DEFAULT_WORKFLOW in workflows else (workflows[0] if workflows else "")
    prompt: dict[str, Any] | None = None
    if default_workflow:
        try:
            prompt = load_workflow(default_workflow, runtime)
        except Exception as exc:
            log.warning("talk options: workflow %s: %s", default_workflow, exc)
    personas = _input_choices(runtime, prompt, "persona")
    if not personas:
        personas = sorted(p.stem for p in (WORKFLOWS_DIR / "personas").glob("*.yaml"))
    voices = _input_choices(runtime, prompt, "voice")
    photos = ([DEFAULT_PHOTO] if default_portrait() else []) + folders.files("input", IMAGE_EXTENSIONS)
    photos = [p for p in photos if p != DEFAULT_PHOTO_FILE]

    def first(values: list[str], preferred: str | None = None) -> str:
        return preferred if preferred in values else (values[0] if values else "")

    defaults_from = _prompt_values(prompt, runtime)
    return {"personas": personas, "photos": photos, "voices": voices, "workflows": workflows,
            "languages": ["auto", "ru", "en"],
            "defaults": {"language": "auto",
                         "persona": first(personas, defaults_from.get("persona")), "photo": first(photos),
                         "voice": first(voices, defaults_from.get("voice")), "workflow": default_workflow}}


def _prompt_values(prompt: dict[str, Any] | None, runtime: Runtime) -> dict[str, str]:
    """The persona and voice the workflow itself sets (the page's defaults)."""
    out: dict[str, str] = {}
    for node in (prompt or {}).values():
        cls = runtime.registry.nodes.get(node.get("class_type", ""))
        inputs = node.get("inputs", {})
        if isinstance(inputs.get("persona"), str):
            out.setdefault("persona", inputs["persona"])
        voice = voice_input(cls) if cls is not None else None
        if voice and isinstance(inputs.get(voice), str):
            out.setdefault("voice", inputs[voice])
    return out


def personalise(prompt: dict[str, Any], runtime: Runtime, start: StartMessage) -> dict[str, Any]:
    """The workflow with the user's persona, photo and voice written into the nodes that take them."""
    prompt = json.loads(json.dumps(prompt))  # a private copy
    photo = start.photo
    if photo == DEFAULT_PHOTO:
        source = default_portrait()
        if source is None:
            raise ProtocolError("the default portrait needs scikit-image; upload a photo instead")
        target = folders.get("input") / DEFAULT_PHOTO_FILE
        if not target.is_file():  # atomic: other servers may copy it into the shared input folder at once
            atomic.copy_file(source, target, overwrite=False)
        photo = DEFAULT_PHOTO_FILE
    for node in prompt.values():
        cls = runtime.registry.nodes.get(node.get("class_type", ""))
        if cls is None:
            continue
        inputs = node.setdefault("inputs", {})
        voice = voice_input(cls)
        for spec in cls.INPUTS:
            if isinstance(inputs.get(spec.name), list):
                continue  # a link, not a value
            if spec.name == "persona" and start.persona:
                inputs["persona"] = start.persona
            elif spec.name == voice and start.voice:
                inputs[voice] = start.voice
            elif spec.name == "language" and start.language and cls.CATEGORY in ("avatar/listen", "avatar/think"):
                inputs["language"] = start.language  # the session's spoken language (auto / ru / en): heard in it,
                # and the persona prompt is evaluated in it before the first message
            elif spec.upload == "image" and photo:
                inputs[spec.name] = photo
    return prompt

