"""The install step writes the sample inputs the shipped workflows name, once."""

import json
from pathlib import Path

from engine.files.folders import folders
from engine.graph.prompt import Prompt
from engine.graph.registry import NodeRegistry
from engine.graph.validation import validate
from nodes.common.audio import load_audio
from nodes.io.samples import ensure_sample_inputs

ROOT = Path(__file__).resolve().parent.parent


def test_samples_written_once_and_render_workflow_validates_with_them(tmp_path):
    old = folders.data_dir
    folders.configure(data_dir=tmp_path)
    try:
        written = ensure_sample_inputs(folders.get("input"))
        assert {p.name for p in written} == {"portrait.png", "speech.wav"}
        assert ensure_sample_inputs(folders.get("input")) == []
        assert 3 < load_audio(tmp_path / "input" / "speech.wav").duration < 15
        reg = NodeRegistry()
        reg.discover("nodes")
        api = json.loads((ROOT / "workflows" / "render_avatar.api.json").read_text())
        report = validate(Prompt.from_api(api), reg)
        assert report.ok, str(report)
    finally:
        folders.configure(data_dir=old)
