"""Sample inputs the shipped workflows name (``portrait.png``, ``speech.wav``), so a fresh install can run
them at once. ``python -m nodes.io.samples [DATA_DIR]`` writes what is missing into the input folder.

The portrait is scikit-image's public-domain astronaut photo (Eileen Collins, NASA); the speech is made
here with espeak-ng.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SPEECH_TEXT = "Hello! I am Alisa, your avatar. Upload your own photo and speech to make me say anything."


def write_portrait(path: Path) -> None:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(path)


def write_speech(path: Path, text: str = SPEECH_TEXT) -> None:
    from nodes.common.audio import load_audio, write_wav

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, timeout=60)
        write_wav(path, load_audio(raw, 16000))


def ensure_sample_inputs(input_dir: Path) -> list[Path]:
    """Write the samples that are missing; returns the files written."""
    input_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, writer in (("portrait.png", write_portrait), ("speech.wav", write_speech)):
        target = input_dir / name
        if target.exists():
            continue
        try:
            writer(target)
            written.append(target)
        except Exception as exc:  # a missing sample must not stop an install
            log.warning("could not write the sample %s: %s", target, exc)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from engine.files.folders import folders

    if len(sys.argv) > 1:
        folders.configure(data_dir=sys.argv[1])
    for path in ensure_sample_inputs(folders.get("input")):
        log.info("sample input: %s", path)
