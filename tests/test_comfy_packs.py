"""Three published ComfyUI node packs, vendored unchanged (tests/fixtures/comfy_packs/UPSTREAM.md), load and run:

- ``execution-inversion`` (akatz-ai/ComfyUI-Execution-Inversion, MIT): lazy switches and for loops built from node
  expansion, raw links, ``DYNPROMPT`` and ``ExecutionBlocker``;
- ``nodes_string.py`` (ComfyUI's string nodes, GPL-3.0): a pack written against the V3 ``comfy_api.latest`` schema
  (``io.ComfyNode``, ``comfy_entrypoint``);
- ``ComfyUI-Show-Text`` (fairy-root/ComfyUI-Show-Text, MIT): a ``ShowText`` output node (list input, UI text, web
  extension), beside our core ``PreviewAny``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.app.packs import load_packs
from engine.comfy import shims as comfy_shims
from engine.comfy.shims.comfy_server import PromptServer
from engine.graph.executor import Executor
from engine.graph.registry import NodeRegistry
from tests.test_render_helpers import sandbox_folders

PACKS = Path(__file__).resolve().parent / "fixtures" / "comfy_packs"
NAMES = {"execution-inversion", "nodes_string", "ComfyUI-Show-Text"}


@pytest.fixture(scope="module")
def registry() -> Any:
    reg = NodeRegistry()
    reg.discover("nodes")
    report = load_packs(reg, PACKS, NAMES, entry_point_group=None)
    yield reg, report
    PromptServer.instance.set_event_sink(None)
    comfy_shims.uninstall()


@pytest.fixture
def executor(registry: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Executor:
    sandbox_folders(monkeypatch, tmp_path)
    return Executor(registry[0])


def test_the_three_packs_load_unchanged(registry: Any) -> None:
    reg, report = registry
    for name in NAMES:
        info = report.get(name)
        assert info is not None and info.status == "loaded", report.summary()
        assert not [w for w in info.warnings if "skipped" in w], info.warnings
    assert report.get("nodes_string").style == "comfy_v3"
    assert {"LazySwitch", "ForLoopOpen", "ForLoopClose", "StringConcatenate", "CaseConverter", "ShowText"} <= set(
        reg.nodes)
    assert report.get("ComfyUI-Show-Text").web_directory.endswith("web")


async def test_control_flow_pack_lazy_switch_and_for_loop(executor: Executor) -> None:
    prompt = {
        # The switch is on: only on_true is computed; on_false would fail (an invalid regular expression).
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "taken"}},
        "2": {"class_type": "RegexMatch", "inputs": {"string": "x", "regex_pattern": "(", "case_insensitive": True,
                                                     "multiline": False, "dotall": False}},
        "3": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}},
        "4": {"class_type": "LazySwitch", "inputs": {"switch": ["3", 0], "on_true": ["1", 0], "on_false": ["2", 0]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
        # A for loop of 4 rounds accumulating its counter, then as a list.
        "10": {"class_type": "ForLoopOpen", "inputs": {"remaining": 4}},
        "11": {"class_type": "AccumulateNode", "inputs": {"to_add": ["10", 1]}},
        "12": {"class_type": "AccumulateNode", "inputs": {"to_add": ["10", 1], "accumulation": ["10", 2]}},
        "13": {"class_type": "ForLoopClose", "inputs": {"flow_control": ["10", 0], "initial_value1": ["12", 0]}},
        "14": {"class_type": "AccumulationGetLengthNode", "inputs": {"accumulation": ["13", 0]}},
        "15": {"class_type": "PreviewAny", "inputs": {"source": ["14", 0]}},
    }
    result = await executor.execute(prompt)
    assert result.ok, result.error
    assert result.outputs["5"] == {"text": ["taken"]}
    assert "2" not in result.executed  # the branch not taken never ran
    assert "13" in result.executed and any(nid.startswith("13.") for nid in result.executed)  # the loop expanded
    rounds = int(result.outputs["15"]["text"][0])
    assert rounds == 4


async def test_v3_pack_string_nodes(executor: Executor) -> None:
    prompt = {
        "1": {"class_type": "StringConcatenate", "inputs": {"string_a": "hello", "string_b": "world",
                                                            "delimiter": " "}},
        "2": {"class_type": "CaseConverter", "inputs": {"string": ["1", 0], "mode": "UPPERCASE"}},
        "3": {"class_type": "StringLength", "inputs": {"string": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }
    result = await executor.execute(prompt)
    assert result.ok, result.error
    assert result.outputs["4"] == {"text": ["HELLO WORLD"]} and result.outputs["5"] == {"text": ["11"]}
    again = await executor.execute(prompt)
    assert set(again.cached) >= {"1", "2", "3"}  # V3 nodes are cached like any other


async def test_utility_pack_show_text(executor: Executor) -> None:
    prompt = {
        "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a transcript"}},
        "2": {"class_type": "ShowText", "inputs": {"text": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    result = await executor.execute(prompt, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    assert result.ok, result.error
    assert result.outputs["2"] == {"text": ["a transcript"]}
    assert result.outputs["3"] == {"text": ["a transcript"]}
