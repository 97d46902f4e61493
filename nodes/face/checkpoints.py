"""Where the face backends find the user's checkpoints: one layout, ``models/<kind>/<id>/``.

The folder of a model id comes from the model catalogue (``models/manifest.json``), the same place
``python main.py models list`` checks and ``models/README.md`` documents, so a file is reported *installed*
exactly when the node will find it. Files left in the layout older releases used (``models/<kind>/`` directly)
are not loaded from there; the error names them and says where to move them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WAV2LIP_GAN = "wav2lip-gan"
WAV2LIP = "wav2lip"
SADTALKER = "sadtalker-v0.0.2"
XTTS = "xtts-v2"

WAV2LIP_FILES = {WAV2LIP_GAN: "wav2lip_gan.pth", WAV2LIP: "wav2lip.pth"}  # model id -> its official file name


class CheckpointMissing(FileNotFoundError):
    """A user-supplied checkpoint is not where the catalogue says it must be; the message says what to do."""


def model_folder(model_id: str) -> Path:
    """``models/<kind>/<id>/`` of a catalogue entry, under the configured models folder."""
    from engine.models.catalogue import default_store

    return default_store().folder(model_id)


def legacy_folder(model_id: str) -> Path:
    """``models/<kind>/``: where earlier releases looked (never loaded from; only named in errors)."""
    return model_folder(model_id).parent


def missing_message(model_id: str, names: list[str]) -> str:
    """What to put where, naming misplaced copies found in the old layout."""
    folder = model_folder(model_id)
    msg = (f"{model_id}: put {', '.join(names)} in {folder}/ (the official release files, unchanged; this project "
           f"never downloads weights; `python main.py models list` shows every model's folder)")
    misplaced = [legacy_folder(model_id) / n for n in names if (legacy_folder(model_id) / n).is_file()]
    if misplaced:
        msg += f". Found {', '.join(str(p) for p in misplaced)} in the old place: move it into {folder}/"
    return msg


def require(model_id: str, name: str) -> Path:
    """The path of one file of a user-supplied model, or ``CheckpointMissing`` saying where it must go."""
    path = model_folder(model_id) / name
    if path.is_file():
        return path
    raise CheckpointMissing(missing_message(model_id, [name]))


def wav2lip_checkpoint() -> Path:
    """``models/wav2lip/wav2lip-gan/wav2lip_gan.pth`` when present, else ``models/wav2lip/wav2lip/wav2lip.pth``."""
    for model_id, name in WAV2LIP_FILES.items():
        path = model_folder(model_id) / name
        if path.is_file():
            return path
    gan, plain = (model_folder(i) / n for i, n in WAV2LIP_FILES.items())
    msg = (f"no Wav2Lip checkpoint: put the official wav2lip_gan.pth in {gan.parent}/ or wav2lip.pth in "
           f"{plain.parent}/ (this project never downloads weights; `python main.py models list` shows the folders)")
    for model_id, name in WAV2LIP_FILES.items():
        old = legacy_folder(model_id) / name
        if old.is_file():
            msg += f". Found {old} in the old place: move it into {model_folder(model_id)}/"
    raise CheckpointMissing(msg)


def use_model(ctx: Any, spec: Any) -> Any:
    """Load (or reuse) a model for this node's run, pinned in the model manager until the node finishes.

    ``ctx.model`` registers, pins (owner: prompt/node) and loads; the executor unpins when the node ends. A bare
    test context with only ``models`` gets register + pin under the node id; none at all loads on the CPU.
    """
    if ctx is None:
        return spec.load("cpu")
    if callable(getattr(ctx, "model", None)):
        return ctx.model(spec)
    models = getattr(ctx, "models", None)
    if models is None:
        return spec.load("cpu")
    if spec.id not in models:
        models.register(spec)
    models.pin(spec.id, f"face/{getattr(ctx, 'node_id', '?')}")
    return models.get(spec.id)
