"""UI workflow (litegraph JSON as the ComfyUI frontend saves it) <-> API prompt."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.graph import types as T
from engine.comfy.adapter import adapt_v1_node
from engine.graph.node import Input, Node, Output
from engine.graph.registry import NodeRegistry
from engine.comfy.ui_format import UIWorkflowError, api_to_ui, is_ui_workflow, ui_to_api, workflows_agree

FIXTURES = Path(__file__).parent / "fixtures" / "ui_workflows"


class _LoadAudio(Node):
    TYPE = "TestLoadAudio"
    DISPLAY_NAME = "Load Audio (test)"
    INPUTS = (Input.file("audio", "audio", choices=["a.wav", "b.wav"]),)
    OUTPUTS = (Output("AUDIO", T.AUDIO),)


class _Gain(Node):
    TYPE = "TestGain"
    INPUTS = (Input.socket("audio", T.AUDIO), Input.number("db", default=0.0, min=-60, max=24, step=0.5))
    OUTPUTS = (Output("audio", T.AUDIO),)


class _Text(Node):
    TYPE = "TestText"
    INPUTS = (Input.string("text", multiline=True),)
    OUTPUTS = (Output("STRING", T.STRING),)


class _Speak(Node):
    TYPE = "TestSpeak"
    INPUTS = (Input.string("text", multiline=True), Input.integer("seed", default=0, min=0, max=2**32 - 1),
              Input.combo("voice", ["alice", "bob"]), Input.number("speed", default=1.0, min=0.5, max=2.0))
    OUTPUTS = (Output("audio", T.AUDIO),)


class _Mix(Node):
    TYPE = "TestMix"
    INPUTS = (Input.socket("a", T.AUDIO), Input.socket("b", T.AUDIO), Input.number("mix", default=0.5))
    OUTPUTS = (Output("audio", T.AUDIO),)


class _Save(Node):
    TYPE = "TestSave"
    OUTPUT_NODE = True
    INPUTS = (Input.socket("audio", T.AUDIO), Input.string("prefix", default="out"))


class _Dub(Node):
    TYPE = "TestDub"
    INPUTS = (Input.socket("text", T.STRING), Input.socket("audio", T.AUDIO))
    OUTPUTS = (Output("audio", T.AUDIO),)


@pytest.fixture
def registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in (_LoadAudio, _Gain, _Text, _Speak, _Mix, _Save, _Dub):
        reg.register(cls)
    return reg


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_v04_workflow_converts_like_the_frontend(registry: NodeRegistry) -> None:
    ui = _load("voice_v04.json")
    assert is_ui_workflow(ui) and not is_ui_workflow(_load("voice_v04.api.json"))
    # bypassed gain linked through, reroute resolved, primitive value applied, converted text widget
    # linked, control_after_generate skipped, muted save dropped, input from a muted node removed
    assert ui_to_api(ui, registry) == _load("voice_v04.api.json")


def test_v1_workflow_with_subgraph(registry: NodeRegistry) -> None:
    assert ui_to_api(_load("voice_v1_subgraph.json"), registry) == _load("voice_v1_subgraph.api.json")


def test_workflows_agree_reports_differences(registry: NodeRegistry) -> None:
    ui, api = _load("voice_v04.json"), _load("voice_v04.api.json")
    assert workflows_agree(ui, api, registry) == []
    api2 = copy.deepcopy(api)
    api2["6"]["inputs"]["voice"] = "alice"
    api2["7"]["inputs"]["b"] = ["3", 0]
    del api2["11"]
    api2["8"]["inputs"]["prefix"] = "avatar/take"
    diffs = workflows_agree(ui, api2, registry)
    assert len(diffs) == 3, diffs
    assert any("node 6" in d and "'voice'" in d and "'bob'" in d for d in diffs)
    assert any("node 7" in d and "'b'" in d for d in diffs)
    assert any("node 11" in d and "not in the API prompt" in d for d in diffs)
    api3 = copy.deepcopy(api)
    del api3["7"]["inputs"]["mix"]  # 0.5 is the declared default: omitting it is not a difference
    assert workflows_agree(ui, api3, registry) == []


def test_api_to_ui_round_trips(registry: NodeRegistry) -> None:
    for name in ("voice_v04.api.json", "voice_v1_subgraph.api.json"):
        api = _load(name)
        ui = api_to_ui(api, registry)
        assert ui["version"] == 0.4 and all(len(link) == 6 for link in ui["links"])
        json.dumps(ui)  # plain JSON
        assert ui_to_api(ui, registry) == api, name
        assert workflows_agree(ui, api, registry) == []
    ui = api_to_ui(_load("voice_v04.api.json"), registry)
    x = {n["id"]: n["pos"][0] for n in ui["nodes"]}
    assert x[3] < x[6] < x[7] < x[8] and x[1] == x[3]  # columns by topological depth
    speak = next(n for n in ui["nodes"] if n["id"] == 6)
    assert speak["widgets_values"] == ["", 1234, "fixed", "bob", 1.25]
    assert speak["inputs"] == [{"name": "text", "type": "STRING", "link": speak["inputs"][0]["link"],
                                "widget": {"name": "text"}}]
    save = next(n for n in ui["nodes"] if n["id"] == 8)
    assert save["title"] == "Save reply" and "title" not in speak


def test_group_nodes_are_refused(registry: NodeRegistry) -> None:
    ui = _load("voice_v04.json")
    ui["nodes"].append({"id": 13, "type": "workflow>Voice pair", "pos": [0, 0], "size": [10, 10], "flags": {},
                        "order": 12, "mode": 0, "properties": {}, "widgets_values": []})
    with pytest.raises(UIWorkflowError, match="group node.*Convert to nodes"):
        ui_to_api(ui, registry)


def _tiny(nodes: list[dict[str, Any]], links: list[list[Any]]) -> dict[str, Any]:
    for i, node in enumerate(nodes):
        node.setdefault("pos", [0, 0])
        node.setdefault("size", [100, 100])
        node.setdefault("flags", {})
        node.setdefault("order", i)
        node.setdefault("mode", 0)
        node.setdefault("properties", {})
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def test_bypass_picks_the_input_of_the_matching_type(registry: NodeRegistry) -> None:
    ui = _tiny([
        {"id": 1, "type": "TestText", "outputs": [{"name": "STRING", "type": "STRING", "links": [1]}],
         "widgets_values": ["hi"]},
        {"id": 2, "type": "TestLoadAudio", "outputs": [{"name": "AUDIO", "type": "AUDIO", "links": [2]}],
         "widgets_values": ["a.wav", "audio"]},
        {"id": 3, "type": "TestDub", "mode": 4,
         "inputs": [{"name": "text", "type": "STRING", "link": 1}, {"name": "audio", "type": "AUDIO", "link": 2}],
         "outputs": [{"name": "audio", "type": "AUDIO", "links": [3]}]},
        {"id": 4, "type": "TestSave", "inputs": [{"name": "audio", "type": "AUDIO", "link": 3}],
         "widgets_values": ["x"]},
    ], [[1, 1, 0, 3, 0, "STRING"], [2, 2, 0, 3, 1, "AUDIO"], [3, 3, 0, 4, 0, "AUDIO"]])
    api = ui_to_api(ui, registry)
    assert set(api) == {"1", "2", "4"} and api["4"]["inputs"]["audio"] == ["2", 0]


def test_widget_values_from_older_frontends_and_lists(registry: NodeRegistry) -> None:
    ui = _tiny([
        {"id": 1, "type": "TestSpeak", "widgets_values": ["text", 5, "bob", 1.5],  # no control value saved
         "outputs": [{"name": "audio", "type": "AUDIO", "links": []}]},
        {"id": 2, "type": "TestText", "widgets_values": [["a", "b"]]},
        {"id": 3, "type": "TestGain", "inputs": [{"name": "audio", "type": "AUDIO", "link": None}]},
    ], [])
    api = ui_to_api(ui, registry)
    assert api["1"]["inputs"] == {"text": "text", "seed": 5, "voice": "bob", "speed": 1.5}
    assert api["2"]["inputs"] == {"text": {"__value__": ["a", "b"]}}  # a list would read as a link
    assert api["3"]["inputs"] == {"db": 0.0}  # no widgets_values saved: the widget's default


def test_v1_pack_classes_control_widgets_and_broken_links(registry: NodeRegistry) -> None:
    class Sampler:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"noise": ("INT", {"default": 0, "control_after_generate": True}),
                                 "sampler": (["euler", "ddim"], {"control_after_generate": True}),
                                 "steps": ("INT", {"default": 20}),
                                 "image": (["x.png"], {"image_upload": True})}}

        RETURN_TYPES = ("LATENT",)
        FUNCTION = "go"

        def go(self, **kw):
            return (kw,)

    registry.register(adapt_v1_node("Sampler", Sampler), "pack")
    node = {"id": 1, "type": "Sampler", "widgets_values": [42, "randomize", "ddim", "increment", "", 30,
                                                           "x.png", "image"]}
    api = ui_to_api(_tiny([node], []), registry)
    assert api["1"]["inputs"] == {"noise": 42, "sampler": "ddim", "steps": 30, "image": "x.png"}
    ui = api_to_ui(api, registry)
    assert ui["nodes"][0]["widgets_values"] == [42, "fixed", "ddim", "fixed", "", 30, "x.png", "image"]

    broken = _tiny([{"id": 1, "type": "TestSave", "inputs": [{"name": "audio", "type": "AUDIO", "link": 99}]}], [])
    with pytest.raises(UIWorkflowError, match="link 99"):
        ui_to_api(broken, registry)
