"""``main.py voice prepare DIR``: the dataset is built aside and renamed into place, so a crash never leaves a half
dataset and never destroys the previous one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.listen.backends import Transcript

SENTENCES = ["Моя бабушка живёт в маленькой деревне у реки.", "Вечером мы пили чай и долго говорили о книгах.",
             "Завтра утром я поеду в город на автобусе."]


class FakeASR:
    """Hears every clip as Russian; raises on the ``fail_at``-th clip (a crash in the middle of the run)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def transcribe(self, samples: np.ndarray, languages: Any, **_: Any) -> Transcript:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("simulated crash while transcribing")
        return Transcript(f"фраза номер {self.calls}", "ru", 1.0, 0.0, -0.2, len(samples) / 16000, 0.0)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    from nodes.speak.backends import BACKENDS

    if BACKENDS["festival"].missing("ru") is not None:
        pytest.skip("festival's Russian voice is not installed")
    synth = BACKENDS["festival"].load("ru")
    folder = tmp_path_factory.mktemp("recordings")
    try:
        parts, rate = [], 16000
        for sentence in SENTENCES:
            for piece in synth.speak(sentence, "ru"):
                rate = piece.sample_rate
                parts += [piece.samples, np.zeros(int(0.8 * rate), np.float32)]
    finally:
        synth.close()
    sf.write(folder / "take1.wav", np.concatenate(parts), rate)
    return folder


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from engine.files.folders import folders

    monkeypatch.setattr(folders, "data_dir", tmp_path)
    return tmp_path


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_writes_the_dataset_in_one_rename(recordings: Path, data_dir: Path) -> None:
    import json

    from nodes.speak.voice_cli import dataset_dir, prepare

    report = prepare(recordings, "anna", language="ru", asr=FakeASR())
    final = dataset_dir("anna")
    assert report.dataset == final and report.clips == 3
    assert (final / "metadata.csv").read_text(encoding="utf-8").count("\n") == 3
    assert len(list((final / "wavs").glob("*.wav"))) == 3
    assert json.loads((final / "dataset.json").read_text(encoding="utf-8"))["dataset"] == str(final)
    assert [p.name for p in final.parent.iterdir()] == ["anna"]  # nothing left beside it


def test_a_crash_leaves_no_half_dataset_and_keeps_the_old_one(recordings: Path, data_dir: Path) -> None:
    from nodes.speak.voice_cli import dataset_dir, prepare

    with pytest.raises(RuntimeError, match="simulated crash"):  # a first run that dies after one clip
        prepare(recordings, "anna", language="ru", asr=FakeASR(fail_at=2))
    voices = dataset_dir("anna").parent
    assert list(voices.iterdir()) == []  # no folder at all, not a half one

    prepare(recordings, "anna", language="ru", asr=FakeASR())
    before = _listing(dataset_dir("anna"))
    with pytest.raises(RuntimeError, match="simulated crash"):  # a re-run that dies: the old dataset is whole
        prepare(recordings, "anna", language="ru", asr=FakeASR(fail_at=3))
    assert _listing(dataset_dir("anna")) == before
    assert [p.name for p in voices.iterdir()] == ["anna"]

    (voices / ".anna.partial-killed").mkdir()  # what a SIGKILL'd run leaves: cleaned by the next run
    report = prepare(recordings, "anna", language="ru", asr=FakeASR())
    assert report.clips == 3 and [p.name for p in voices.iterdir()] == ["anna"]
