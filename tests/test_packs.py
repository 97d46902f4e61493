"""Node packs: loading (allowlist, broken packs), the ComfyUI V1 adapter and the ComfyUI module shims.

The example pack in tests/fixtures/comfy_pack_example is written in ComfyUI's conventions and is loaded
unchanged from a temporary custom_nodes folder, then run through the real executor.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.comfy import shims as comfy_shims
from engine.graph import types as T
from engine.comfy.adapter import ComfyList, HiddenValues, adapt_v1_node, map_over_list
from engine.comfy.mappings import comfy_mappings_view, v1_facade
from engine.comfy.shims.comfy_server import PromptServer
from engine.graph.context import Interrupted, NodeContext, RunFacts
from engine.graph.events import Event
from engine.graph.executor import Executor
from engine.files.folders import folders
from engine.graph.node import Node
from engine.app.packs import load_packs
from engine.graph.registry import NodeRegistry
from engine.graph.validation import PromptInvalid

FIXTURE = Path(__file__).parent / "fixtures" / "comfy_pack_example"


@pytest.fixture
def data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(folders, "data_dir", tmp_path / "data")
    monkeypatch.setattr(folders, "models_dir", tmp_path / "models")
    return tmp_path


@pytest.fixture
def custom_nodes(data_dirs: Path) -> Path:
    root = data_dirs / "custom_nodes"
    root.mkdir()
    shutil.copytree(FIXTURE, root / "comfy_pack_example")
    (root / "broken_syntax").mkdir()
    (root / "broken_syntax" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {\n  'X': \n")
    (root / "broken_import.py").write_text("import definitely_not_a_module_xyz\nNODE_CLASS_MAPPINGS = {}\n")
    marker = data_dirs / "not_enabled_ran"
    (root / "not_enabled.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    (root / "native_pack.py").write_text(
        "from engine.graph.node import Node, Input, Output\n"
        "class NativeShout(Node):\n"
        "    CATEGORY = 'test'\n"
        "    INPUTS = (Input.string('text', default='hi'),)\n"
        "    OUTPUTS = (Output('text', 'STRING'),)\n"
        "    def run(self, ctx, text):\n"
        "        return (text.upper() + '!',)\n")
    (root / "old_pack.disabled").mkdir()
    (root / "old_pack.disabled" / "__init__.py").write_text("raise RuntimeError('must not run')\n")
    return root


@pytest.fixture
def loaded(custom_nodes: Path) -> Any:
    registry = NodeRegistry()
    report = load_packs(registry, custom_nodes,
                        {"comfy_pack_example", "broken_syntax", "broken_import", "native_pack"},
                        entry_point_group=None)
    yield registry, report
    PromptServer.instance.set_event_sink(None)
    comfy_shims.uninstall()


def test_report_lists_loaded_failed_and_disabled_packs(loaded: Any, data_dirs: Path) -> None:
    registry, report = loaded
    status = {p.name: p.status for p in report.packs}
    assert status == {"comfy_pack_example": "loaded", "native_pack": "loaded", "broken_syntax": "failed",
                      "broken_import": "failed", "not_enabled": "disabled", "old_pack": "disabled"}
    syntax = report.get("broken_syntax")
    assert "SyntaxError" in syntax.reason and "__init__.py" in syntax.traceback
    missing = report.get("broken_import")
    assert "definitely_not_a_module_xyz" in missing.reason and "broken_import.py" in missing.traceback
    assert set(registry.failed_packs) == {"broken_syntax", "broken_import"}
    disabled = report.get("not_enabled")
    assert "--enable-pack not_enabled" in disabled.reason and "packs.enabled" in disabled.reason
    assert not (data_dirs / "not_enabled_ran").exists(), "a disabled pack must not be imported"
    assert report.get("comfy_pack_example").style == "comfy_v1"
    assert report.get("native_pack").style == "native" and "NativeShout" in registry
    assert registry.origins["ExampleRepeatText"] == "comfy_pack_example"
    web = registry.web_directories["comfy_pack_example"]
    assert web.endswith("js") and (Path(web) / "example.js").is_file()


def test_v1_declarations_are_adapted(loaded: Any) -> None:
    registry, _ = loaded
    repeat = registry.get("ExampleRepeatText")
    assert repeat.DISPLAY_NAME == "Repeat Text (example)" and repeat.CATEGORY == "example/text"
    assert repeat.DESCRIPTION == "Repeat a text a number of times."
    spec = {i.name: i for i in repeat.INPUTS}
    assert spec["text"].type == T.STRING and spec["text"].multiline and spec["text"].default == "hello"
    assert spec["text"].tooltip == "what to repeat" and spec["text"].required
    assert (spec["times"].min, spec["times"].max, spec["times"].default) == (1, 16, 2)
    assert spec["separator"].type == T.COMBO and spec["separator"].current_choices() == [" ", ", ", "\n"]
    assert spec["suffix"].force_input and not spec["suffix"].required and not spec["suffix"].is_widget
    assert spec["unique_id"].hidden and spec["unique_id"].type == "UNIQUE_ID"
    assert [(o.name, o.type, o.tooltip) for o in repeat.OUTPUTS] == [
        ("text", "STRING", "the repeated text"), ("length", "INT", "its length in characters")]
    assert registry.get("ExampleSplitWords").OUTPUTS[0].is_list
    assert registry.get("ExampleJoin").INPUT_IS_LIST
    passthrough = registry.get("ExamplePassthrough")
    assert passthrough.ACCEPTS_UNDECLARED_INPUTS and passthrough.INPUTS[0].type == T.ANY
    assert passthrough.OUTPUTS[0].type == T.ANY
    assert registry.get("ExampleShowText").OUTPUT_NODE and not repeat.OUTPUT_NODE
    assert registry.get("ExampleLoadTextFile").INPUTS[0].upload == "image"
    assert ("image_upload", True) in registry.get("ExampleLoadTextFile").INPUTS[0].extra  # kept for the editor
    routes = [(d.method, d.path) for d in PromptServer.instance.routes.routes()]
    assert ("GET", "/example_pack/info") in routes


def test_fingerprint_follows_is_changed(loaded: Any, data_dirs: Path) -> None:
    registry, _ = loaded
    noise = registry.get("ExampleNoise")
    assert noise.fingerprint({"scale": 1.0}) != noise.fingerprint({"scale": 1.0}), "NaN means always changed"
    load = registry.get("ExampleLoadTextFile")
    text = folders.get("input") / "a.txt"
    text.write_text("one")
    first = load.fingerprint({"file": "a.txt"})
    assert first == load.fingerprint({"file": "a.txt"})
    text.write_text("two")
    assert load.fingerprint({"file": "a.txt"}) != first
    missing = load.fingerprint({"file": "gone.txt"})  # IS_CHANGED raises: always changed
    assert missing != load.fingerprint({"file": "gone.txt"})
    assert registry.get("ExampleRepeatText").fingerprint({"text": "x"}) is None


def _prompt() -> dict[str, Any]:
    return {
        "1": {"class_type": "ExampleLoadTextFile", "inputs": {"file": "a.txt"}},
        "2": {"class_type": "ExampleRepeatText", "inputs": {"text": ["1", 0], "times": 3, "separator": ", "}},
        "3": {"class_type": "ExampleShowText", "inputs": {"text": ["2", 0]}, "_meta": {"title": "Shown"}},
        "4": {"class_type": "ExampleSplitWords", "inputs": {"text": ["2", 0]}},
        "5": {"class_type": "ExampleUpper", "inputs": {"text": ["4", 0]}},
        "6": {"class_type": "ExampleJoin", "inputs": {"texts": ["5", 0], "separator": "+"}},
        "7": {"class_type": "ExamplePassthrough", "inputs": {"value": ["6", 0], "anything": ["2", 1]}},
        "8": {"class_type": "ExampleShowText", "inputs": {"text": ["7", 0]}},
    }


async def test_executor_runs_the_v1_pack(loaded: Any) -> None:
    registry, _ = loaded
    (folders.get("input") / "a.txt").write_text("hi there")
    events: list[Event] = []
    sent: list[tuple[str, Any, Any]] = []
    PromptServer.instance.set_event_sink(lambda event, data, sid: sent.append((event, data, sid)))
    executor = Executor(registry)

    result = await executor.execute(_prompt(), on_event=events.append)
    assert result.ok, result.error
    assert result.outputs["3"] == {"text": ["hi there, hi there, hi there"]}
    assert result.outputs["8"] == {"text": ["HI+THERE,+HI+THERE,+HI+THERE"]}
    assert result.values["2"] == ("hi there, hi there, hi there", 28)
    assert isinstance(result.values["4"][0], ComfyList) and result.values["4"][1] == 6
    assert result.values["5"][0] == ["HI", "THERE,", "HI", "THERE,", "HI", "THERE"]
    progress = [e.data for e in events if e.type == "progress" and e.data["node"] == "2"]
    assert [p["value"] for p in progress] == [1, 2, 3] and progress[-1]["max"] == 3
    assert sent and sent[0][0] == "example.repeated" and sent[0][1] == {"node": "2", "calls": 1}

    again = await executor.execute(_prompt())
    assert again.ok and again.executed == [] and set(again.cached) == {str(i) for i in range(1, 9)}

    (folders.get("input") / "a.txt").write_text("bye")  # IS_CHANGED sees the new content
    third = await executor.execute(_prompt())
    assert third.ok and "1" in third.executed and third.outputs["3"] == {"text": ["bye, bye, bye"]}
    assert sent[-1][1]["calls"] == 2, "the V1 object is created once per node and reused"


async def test_validation_uses_validate_inputs_and_declared_ranges(loaded: Any) -> None:
    registry, _ = loaded
    prompt = _prompt()
    prompt["1"]["inputs"]["file"] = "missing.txt"
    prompt["2"]["inputs"]["times"] = 99
    with pytest.raises(PromptInvalid) as caught:
        await Executor(registry).execute(prompt)
    issues = {(i.node_id, i.input_name): i.message for i in caught.value.report.issues}
    assert "Invalid text file: missing.txt" in issues[("1", "file")]
    assert ("2", "times") in issues


def _ctx(node_id: str = "9", **kw: Any) -> tuple[NodeContext, list[Event]]:
    events: list[Event] = []
    ctx = NodeContext(node_id, "T", "p1", asyncio.get_running_loop(), events.append, threading.Event(), **kw)
    return ctx, events


async def test_hidden_inputs_and_interrupt_at_node_level(loaded: Any) -> None:
    registry, _ = loaded
    sent: list[tuple[str, Any, Any]] = []
    PromptServer.instance.set_event_sink(lambda event, data, sid: sent.append((event, data, sid)))
    node = registry.get("ExampleRepeatText")("42")
    ctx, _ = _ctx("42")
    ctx.run = RunFacts(lambda: {"42": {}}, {"extra_pnginfo": {"workflow": {}}})
    assert HiddenValues.of(ctx).prompt == {"42": {}} and HiddenValues.of(ctx).unique_id == "42"
    result = await node.execute(ctx, {"text": "a", "times": 2, "separator": " ", "suffix": "!"})
    assert result.outputs == ("a a!", 4)
    assert sent[-1][1]["node"] == "42"

    ctx.interrupted.set()
    with pytest.raises(Interrupted):
        await node.execute(ctx, {"text": "a", "times": 2, "separator": " "})


async def test_list_semantics_without_executor() -> None:
    seen: list[Any] = []

    class Pair:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("INT", {}), "b": ("STRING", {})}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "go"

        def go(self, a, b):
            seen.append((a, b))
            return {"ui": {"pairs": [f"{a}{b}"]}, "result": (f"{a}{b}",)}

    node = adapt_v1_node("Pair", Pair)("1")
    ctx, _ = _ctx()
    result = await node.execute(ctx, {"a": ComfyList([1, 2, 3]), "b": "x"})
    assert seen == [(1, "x"), (2, "x"), (3, "x")]  # the shorter list repeats its last item
    assert result.outputs == (["1x", "2x", "3x"],) and isinstance(result.outputs[0], ComfyList)
    assert result.ui == {"pairs": ["1x", "2x", "3x"]}
    assert map_over_list(lambda **kw: kw, {"a": []}, False) == []


def test_nodes_view_is_live_and_round_trips(loaded: Any) -> None:
    registry, _ = loaded
    view = comfy_mappings_view(registry)
    mappings = view.class_mappings
    v1 = mappings["ExampleRepeatText"]
    assert v1.__name__ == "ExampleRepeatText" and v1.FUNCTION == "repeat"
    assert view.display_name_mappings["ExampleShowText"] == "Show Text (example)"
    assert view.web_dirs is registry.web_directories

    class Late:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        RETURN_TYPES = ()
        FUNCTION = "go"
        OUTPUT_NODE = True

        def go(self):
            return ()

    mappings["LateNode"] = Late
    assert "LateNode" in registry and registry.get("LateNode").COMFY_CLASS is Late
    view.display_name_mappings["LateNode"] = "Late!"
    assert registry.get("LateNode").DISPLAY_NAME == "Late!"
    del mappings["LateNode"]
    assert "LateNode" not in registry

    facade = mappings["NativeShout"]
    assert facade is v1_facade(registry.get("NativeShout"))
    assert facade.INPUT_TYPES() == {"required": {"text": ("STRING", {"default": "hi"})}}
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(facade().run_native(text="hey")))
    worker.start()
    worker.join(10)
    assert outcome == [("HEY!",)]

    import nodes  # the module packs import: our package, or the shim, answers with the same view

    assert "ExampleRepeatText" in nodes.NODE_CLASS_MAPPINGS and nodes.MAX_RESOLUTION == 16384


def test_shims_only_while_installed(loaded: Any) -> None:
    import comfy.model_management as mm
    import folder_paths

    assert sys.modules["folder_paths"] is folder_paths
    assert issubclass(mm.InterruptProcessingException, Interrupted)
    assert str(mm.get_torch_device()) in ("cpu", "cuda:0", "mps")
    assert mm.get_free_memory(mm.intermediate_device()) > 0 and mm.total_ram > 0
    comfy_shims.uninstall()
    assert "folder_paths" not in sys.modules and "comfy.model_management" not in sys.modules


def test_folder_paths(data_dirs: Path) -> None:
    from engine.comfy.shims import folder_paths as fp

    assert fp.get_input_directory() == str(data_dirs / "data" / "input")
    assert fp.get_annotated_filepath("x.png [output]") == str(data_dirs / "data" / "output" / "x.png")
    assert fp.get_annotated_filepath("x.png") == str(data_dirs / "data" / "input" / "x.png")
    loras = data_dirs / "models" / "loras"
    (loras / "sub").mkdir(parents=True)
    (loras / "a.safetensors").write_bytes(b"")
    (loras / "sub" / "b.pt").write_bytes(b"")
    (loras / "notes.txt").write_text("")
    assert fp.get_filename_list("loras") == ["a.safetensors", "sub/b.pt"]
    assert fp.get_full_path("loras", "sub/b.pt") == str(loras / "sub" / "b.pt")
    assert fp.get_full_path("loras", "nope.pt") is None
    assert fp.models_dir == str(data_dirs / "models")
    extra = data_dirs / "more_loras"
    extra.mkdir()
    (extra / "c.ckpt").write_bytes(b"")
    fp.add_model_folder_path("loras", str(extra))
    try:
        assert fp.get_filename_list("loras") == ["a.safetensors", "c.ckpt", "sub/b.pt"]
        assert fp.get_folder_paths("loras") == [str(loras), str(extra)]
    finally:
        del fp.folder_names_and_paths["loras"]
    out = fp.get_output_directory()
    folder, name, counter, sub, _ = fp.get_save_image_path("clips/take", out)
    assert (folder, name, counter, sub) == (str(Path(out) / "clips"), "take", 1, "clips")
    (Path(folder) / "take_00007_.png").write_bytes(b"")
    assert fp.get_save_image_path("clips/take", out)[2] == 8
    with pytest.raises(ValueError):
        fp.get_save_image_path("../escape", out)


def test_progress_bar_and_upscale() -> None:
    import torch

    from engine.comfy.shims.comfy import utils

    bar = utils.ProgressBar(4)  # outside a node: counts silently
    bar.update(3)
    bar.update(3)
    assert bar.current == 4
    image = torch.rand(1, 3, 8, 12)
    assert utils.common_upscale(image, 6, 4, "bilinear", "disabled").shape == (1, 3, 4, 6)
    assert utils.common_upscale(image, 4, 4, "nearest-exact", "center").shape == (1, 3, 4, 4)
    lanczos = utils.common_upscale(image, 24, 16, "lanczos", "disabled")
    assert lanczos.shape == (1, 3, 16, 24) and math.isclose(float(lanczos.mean()), float(image.mean()), abs_tol=0.05)


def test_native_nodes_mixed_into_v1_mappings_and_bad_classes(data_dirs: Path) -> None:
    root = data_dirs / "cn"
    root.mkdir()
    (root / "mixed.py").write_text(
        "from engine.graph.node import Node, Output\n"
        "class Native(Node):\n"
        "    OUTPUTS = (Output('n', 'INT'),)\n"
        "    def run(self, ctx):\n"
        "        return (1,)\n"
        "class NoFunction:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {}}\n"
        "    RETURN_TYPES = ()\n"
        "NODE_CLASS_MAPPINGS = {'Native': Native, 'NoFunction': NoFunction}\n")
    registry = NodeRegistry()

    class Builtin(Node):
        TYPE = "Native"

    registry.register(Builtin)
    try:
        report = load_packs(registry, root, {"*"}, entry_point_group=None)
    finally:
        comfy_shims.uninstall()
    info = report.get("mixed")
    assert info.status == "loaded" and info.nodes == []
    assert any("NoFunction" in w and "FUNCTION" in w for w in info.warnings)
    assert any("built in" in w for w in info.warnings) and registry.get("Native") is Builtin


def test_nodes_package_gets_live_mappings_while_packs_load(custom_nodes: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Our ``nodes`` package (already imported by the application) answers ComfyUI's names to packs."""
    import types

    fake = types.ModuleType("nodes")
    monkeypatch.setitem(sys.modules, "nodes", fake)
    registry = NodeRegistry()
    try:
        report = load_packs(registry, custom_nodes, {"comfy_pack_example"}, entry_point_group=None)
        assert report.get("comfy_pack_example").status == "loaded"
        assert fake.NODE_CLASS_MAPPINGS.registry is registry and "ExampleRepeatText" in fake.NODE_CLASS_MAPPINGS
        assert fake.MAX_RESOLUTION == 16384
    finally:
        comfy_shims.uninstall()
    assert not hasattr(fake, "NODE_CLASS_MAPPINGS")


def test_entry_point_packs(data_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = data_dirs / "site"
    (site / "ep_pack_mod").mkdir(parents=True)
    (site / "ep_pack_mod" / "__init__.py").write_text(
        "from engine.graph.node import Node, Output\n"
        "class EpNode(Node):\n"
        "    OUTPUTS = (Output('n', 'INT'),)\n"
        "    def run(self, ctx):\n"
        "        return (7,)\n"
        "NODES = [EpNode]\n")
    dist = site / "ep_pack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[avatargraph.test_nodes]\nep_pack = ep_pack_mod\n")
    monkeypatch.syspath_prepend(str(site))
    registry = NodeRegistry()
    try:
        off = load_packs(registry, None, set(), entry_point_group="avatargraph.test_nodes")
        assert off.get("ep_pack").status == "disabled" and "EpNode" not in registry
        on = load_packs(registry, None, {"ep_pack"}, entry_point_group="avatargraph.test_nodes")
    finally:
        comfy_shims.uninstall()
    info = on.get("ep_pack")
    assert info.status == "loaded" and info.kind == "entry_point" and info.nodes == ["EpNode"]
    assert "ep-pack" in info.source and registry.origins["EpNode"] == "ep_pack"


async def test_async_v1_function() -> None:
    class Later:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": ("INT", {"default": 1})}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "go"

        async def go(self, x):
            await asyncio.sleep(0)
            return (x * 2,)

    ctx, _ = _ctx()
    result = await adapt_v1_node("Later", Later)("1").execute(ctx, {"x": ComfyList([1, 2])})
    assert result.outputs == ([2, 4],)
