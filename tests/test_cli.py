"""main.py run / validate / nodes on real subprocesses, with a native pack enabled from a custom folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.graph.registry import NodeRegistry
from engine.comfy.ui_format import api_to_ui

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = {"1": {"class_type": "TextSource", "inputs": {"text": "hi", "repeat": 2}},
            "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "cli"}}}


@pytest.fixture
def env(tmp_path):
    packs = tmp_path / "custom_nodes"
    shutil.copytree(ROOT / "tests" / "fixtures" / "cli_pack", packs / "cli_pack")
    (tmp_path / "wf.api.json").write_text(json.dumps(WORKFLOW))
    return tmp_path


def main_py(env, *args, timeout=180):
    cmd = [sys.executable, str(ROOT / "main.py"), "--data-dir", str(env / "data"), "--custom-nodes-dir",
           str(env / "custom_nodes"), "--enable-pack", "cli_pack", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=env)


def test_run_with_sets_and_output(env):
    out = env / "result.txt"
    proc = main_py(env, "run", str(env / "wf.api.json"), "--set", "text=bonjour", "--set", "1.repeat=3",
                   "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "bonjour bonjour bonjour"
    assert proc.stdout.strip().endswith(str(out))
    assert "nodes" in proc.stderr  # the progress bar


def test_run_editor_form_converted(env):
    from tests.fixtures.cli_pack import SaveText, TextSource
    reg = NodeRegistry()
    reg.register(TextSource)
    reg.register(SaveText)
    (env / "wf.json").write_text(json.dumps(api_to_ui(WORKFLOW, reg)))
    proc = main_py(env, "run", str(env / "wf.json"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip().splitlines()[-1]).read_text() == "hi hi"


def test_run_errors_are_clear(env):
    proc = main_py(env, "run", str(env / "wf.api.json"), "--set", "nope=1")
    assert proc.returncode == 2 and "no node has an input called 'nope'" in proc.stderr
    proc = main_py(env, "run", str(env / "missing.json"))
    assert proc.returncode == 2 and "no such workflow file" in proc.stderr
    proc = main_py(env, "run", str(env / "wf.api.json"), "--set", "repeat=99")
    assert proc.returncode == 2 and "repeat" in proc.stderr and "less than or equal to 10" in proc.stderr


def test_validate_and_nodes(env):
    bad = dict(WORKFLOW, **{"3": {"class_type": "Nope", "inputs": {}}})
    (env / "bad.json").write_text(json.dumps(bad))
    proc = main_py(env, "validate", str(env / "bad.json"))
    assert proc.returncode == 1 and "node 3 (Nope)" in proc.stdout and "unknown node type" in proc.stdout
    proc = main_py(env, "validate", str(env / "wf.api.json"))
    assert proc.returncode == 0 and "valid" in proc.stdout
    proc = main_py(env, "nodes")
    assert proc.returncode == 0 and "TextSource" in proc.stdout and "VideoOut" in proc.stdout


def test_disabled_pack_is_not_loaded(env):
    cmd = [sys.executable, str(ROOT / "main.py"), "--data-dir", str(env / "data"), "--custom-nodes-dir",
           str(env / "custom_nodes"), "nodes"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "TextSource" not in proc.stdout
