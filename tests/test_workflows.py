"""Every shipped workflow exists in both forms (editor .json, API .api.json); they agree and validate."""

import json
from pathlib import Path

import pytest

from engine.graph.prompt import Prompt
from engine.graph.registry import NodeRegistry
from engine.comfy.ui_format import ui_to_api, workflows_agree
from engine.graph.validation import validate

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
API_FILES = sorted(WORKFLOWS.glob("*.api.json"))


@pytest.fixture(scope="module")
def builtin():
    reg = NodeRegistry()
    reg.discover("nodes")
    return reg


def test_workflows_are_shipped():
    names = {p.name.removesuffix(".api.json") for p in API_FILES}
    assert names, "workflows/ ships no workflow"
    for path in WORKFLOWS.glob("*.json"):
        if not path.name.endswith(".api.json"):
            assert (WORKFLOWS / f"{path.stem}.api.json").exists(), f"{path.name} has no API form"


@pytest.mark.parametrize("api_path", API_FILES, ids=lambda p: p.name)
def test_editor_and_api_forms_agree(api_path, builtin):
    ui_path = api_path.with_name(api_path.name.removesuffix(".api.json") + ".json")
    assert ui_path.exists(), f"{api_path.name} has no editor form {ui_path.name}"
    api = json.loads(api_path.read_text())
    ui = json.loads(ui_path.read_text())
    assert workflows_agree(ui, api, builtin) == []
    assert ui_to_api(ui, builtin).keys() == api.keys()
    report = validate(Prompt.from_api(api), builtin)
    assert [i for i in report.issues if i.type != "value_invalid" or "file" not in i.message] == [], str(report)
