"""Validation reports every problem at once, naming node, input and reason; invalid prompts run nothing."""

import pytest

from engine.graph.executor import Executor
from engine.graph.prompt import Prompt, PromptFormatError
from engine.graph.validation import PromptInvalid, validate
from server.comfy_errors import prompt_error_body
from tests import engine_nodes as N


@pytest.fixture
def reg():
    return N.make_registry()


def issues(reg, api, **kw):
    return validate(Prompt.from_api(api), reg, **kw).issues


def kinds(reg, api):
    return sorted((i.node_id, i.input_name, i.type) for i in issues(reg, api))


def test_valid_prompt_has_no_issues(reg):
    api = {"1": {"class_type": "Const", "inputs": {"value": 3}},
           "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    report = validate(Prompt.from_api(api), reg)
    assert report.ok and report.outputs == ["2"]


def test_unknown_class(reg):
    api = {"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": 1}}}
    [issue] = [i for i in issues(reg, api) if i.type == "unknown_class"]
    assert issue.node_id == "1" and "NoSuchNode" in issue.message


def test_missing_required_input(reg):
    api = {"1": {"class_type": "Add", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert ("1", "a", "required_input_missing") in kinds(reg, api)


def test_wrong_socket_type(reg):
    api = {"1": {"class_type": "Count", "inputs": {"n": 2}},
           "2": {"class_type": "Add", "inputs": {"a": ["1", 0]}},
           "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    [issue] = issues(reg, api)
    assert (issue.node_id, issue.input_name, issue.type) == ("2", "a", "return_type_mismatch")
    assert "TEXT_STREAM" in issue.message and "INT" in issue.message


def test_value_for_a_socket(reg):
    api = {"1": {"class_type": "Upper", "inputs": {"chunks": "hello"}},
           "2": {"class_type": "SlowCollect", "inputs": {"chunks": ["1", 0]}}}
    assert ("1", "chunks", "wrong_type") in kinds(reg, api)


def test_out_of_range_and_not_among_choices_and_bad_type(reg):
    api = {"1": {"class_type": "Pick", "inputs": {"mode": "medium", "gain": 5.0, "label": "a"}},
           "2": {"class_type": "Const", "inputs": {"value": "many"}},
           "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
           "4": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    found = kinds(reg, api)
    assert ("1", "mode", "value_invalid") in found
    assert ("1", "gain", "value_invalid") in found
    assert ("2", "value", "value_invalid") in found
    msg = {i.input_name: i.message for i in issues(reg, api) if i.node_id == "1"}
    assert "fast" in msg["mode"] and "2" in msg["gain"]


def test_dangling_links(reg):
    api = {"1": {"class_type": "Add", "inputs": {"a": ["99", 0]}},
           "2": {"class_type": "Const", "inputs": {}},
           "3": {"class_type": "Add", "inputs": {"a": ["2", 5]}},
           "4": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
           "5": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    found = kinds(reg, api)
    assert ("1", "a", "dangling_link") in found and ("3", "a", "dangling_link") in found


def test_cycle(reg):
    api = {"1": {"class_type": "Add", "inputs": {"a": ["2", 0]}},
           "2": {"class_type": "Add", "inputs": {"a": ["1", 0]}},
           "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    [issue] = [i for i in issues(reg, api) if i.type == "dependency_cycle"]
    assert "->" in issue.message


def test_no_output_node(reg):
    api = {"1": {"class_type": "Const", "inputs": {"value": 1}}}
    [issue] = issues(reg, api)
    assert issue.type == "prompt_no_outputs" and issue.node_id is None


def test_every_problem_reported_at_once(reg):
    api = {"1": {"class_type": "Nope", "inputs": {}},
           "2": {"class_type": "Add", "inputs": {}},
           "3": {"class_type": "Pick", "inputs": {"mode": "x"}}}
    types = {i.type for i in issues(reg, api)}
    assert {"unknown_class", "required_input_missing", "value_invalid", "prompt_no_outputs"} <= types


def test_comfy_response_shape(reg):
    api = {"1": {"class_type": "Add", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    body = prompt_error_body(validate(Prompt.from_api(api), reg))
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    err = body["node_errors"]["1"]
    assert err["class_type"] == "Add" and err["errors"][0]["type"] == "required_input_missing"
    assert err["errors"][0]["extra_info"]["input_name"] == "a"


def test_not_a_prompt():
    with pytest.raises(PromptFormatError):
        Prompt.from_api([1, 2])
    with pytest.raises(PromptFormatError):
        Prompt.from_api({"1": {"inputs": {}}})


async def test_invalid_prompt_executes_nothing(reg):
    N.CALLS.clear()
    api = {"1": {"class_type": "Const", "inputs": {"value": 1}},
           "4": {"class_type": "Pick", "inputs": {"mode": "bad"}},
           "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}}
    with pytest.raises(PromptInvalid) as err:
        await Executor(reg).execute(api)
    assert err.value.report.issues and not N.CALLS


async def test_invalid_branch_is_left_out_and_the_rest_runs(reg):
    """As in ComfyUI: outputs whose inputs are broken are reported and skipped; the valid ones run."""
    N.CALLS.clear()
    api = {"1": {"class_type": "Const", "inputs": {"value": 1}},
           "2": {"class_type": "Add", "inputs": {"a": ["1", 0]}},
           "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
           "4": {"class_type": "Pick", "inputs": {"mode": "bad"}},
           "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}}
    report = validate(Prompt.from_api(api), reg)
    assert report.runnable and not report.ok
    assert report.outputs == ["3"] and report.failed_outputs == ["5"]
    result = await Executor(reg).execute(api)
    assert result.ok and "3" in result.executed and "4" not in result.executed and "5" not in result.executed


def test_targets_restrict_outputs(reg):
    api = {"1": {"class_type": "Const", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
           "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert validate(Prompt.from_api(api), reg, targets=["3"]).outputs == ["3"]
