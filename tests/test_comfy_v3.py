"""ComfyUI's V3 node API (``comfy_api.latest``: ``io.ComfyNode``, ``io.Schema``, ``io.NodeOutput``, ``ui``) on our
engine: hidden inputs through ``cls.hidden``, ``fingerprint_inputs``, async ``validate_inputs``, lazy inputs with
``check_lazy_status``, expansion with ``GraphBuilder``, ``block_execution`` and UI outputs."""

from __future__ import annotations

import asyncio

import pytest

from engine.comfy.shims import install_modules
from engine.graph.executor import Executor
from engine.graph.registry import NodeRegistry
from engine.graph.validation import PromptInvalid

install_modules()

from comfy_api.latest import ComfyExtension, io, ui  # noqa: E402
from comfy_execution.graph_utils import GraphBuilder  # noqa: E402

from engine.app.packs import _v3_node_list  # noqa: E402
from engine.comfy.adapter import adapt_v1_node  # noqa: E402

CALLS: list[str] = []


class Count(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="V3Count", display_name="Count", category="test",
                         inputs=[io.Int.Input("n", default=1, min=0, max=10, tooltip="how many")],
                         outputs=[io.Int.Output(display_name="n")], hidden=[io.Hidden.unique_id])

    @classmethod
    def fingerprint_inputs(cls, n):
        return n  # same n, same result: cached

    @classmethod
    async def validate_inputs(cls, n):
        await asyncio.sleep(0)
        return True if n != 7 else "7 is not allowed"

    @classmethod
    def execute(cls, n) -> io.NodeOutput:
        CALLS.append(f"count:{cls.hidden.unique_id}")
        return io.NodeOutput(n)


class Choose(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="V3Choose", inputs=[io.Boolean.Input("first"), io.Int.Input("a", lazy=True),
                                                     io.Int.Input("b", lazy=True)],
                         outputs=[io.Int.Output()])

    @classmethod
    def check_lazy_status(cls, first, a=None, b=None):
        return ["a"] if first and a is None else ["b"] if not first and b is None else []

    @classmethod
    def execute(cls, first, a=None, b=None) -> io.NodeOutput:
        return io.NodeOutput(a if first else b)


class Twice(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="V3Twice", inputs=[io.Int.Input("n")], outputs=[io.Int.Output()], enable_expand=True)

    @classmethod
    def execute(cls, n) -> io.NodeOutput:
        g = GraphBuilder()
        first = g.node("V3Count", n=n)
        return io.NodeOutput(first.out(0), expand=g.finalize())


class Show(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="V3Show", inputs=[io.AnyType.Input("value"), io.Boolean.Input("stop", default=False)],
                         outputs=[io.AnyType.Output()], is_output_node=True)

    @classmethod
    def execute(cls, value, stop) -> io.NodeOutput:
        if stop:
            return io.NodeOutput(block_execution="stopped on purpose")
        return io.NodeOutput(value, ui=ui.PreviewText(str(value)))


class Extension(ComfyExtension):
    async def get_node_list(self):
        return [Count, Choose, Twice, Show]


async def comfy_entrypoint() -> Extension:
    return Extension()


@pytest.fixture
def executor() -> Executor:
    reg = NodeRegistry()
    for cls in _v3_node_list(comfy_entrypoint):
        schema = cls.GET_SCHEMA()
        reg.register(adapt_v1_node(schema.node_id, cls, schema.display_name), "v3-test")
    CALLS.clear()
    return Executor(reg)


async def test_v3_nodes_run_with_hidden_inputs_fingerprint_lazy_and_ui(executor):
    api = {"1": {"class_type": "V3Count", "inputs": {"n": 2}}, "2": {"class_type": "V3Count", "inputs": {"n": 3}},
           "3": {"class_type": "V3Choose", "inputs": {"first": False, "a": ["1", 0], "b": ["2", 0]}},
           "4": {"class_type": "V3Show", "inputs": {"value": ["3", 0]}}}
    result = await executor.execute(api)
    assert result.ok, result.error
    assert result.outputs["4"] == {"text": ["3"]} and CALLS == ["count:2"]  # hidden unique_id; "1" never ran
    again = await executor.execute(api)
    assert "2" in again.cached and not again.executed


async def test_v3_validation_expansion_and_blocking(executor):
    with pytest.raises(PromptInvalid) as bad:
        await executor.execute({"1": {"class_type": "V3Count", "inputs": {"n": 7}},
                                "2": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}}})
    assert any("7 is not allowed" in i.message for i in bad.value.report.issues)
    api = {"1": {"class_type": "V3Twice", "inputs": {"n": 4}}, "2": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}},
           "3": {"class_type": "V3Show", "inputs": {"value": ["1", 0], "stop": True}},
           "4": {"class_type": "V3Show", "inputs": {"value": ["3", 0]}}}
    result = await executor.execute(api)
    assert result.ok, result.error
    assert result.outputs["2"] == {"text": ["4"]} and "4" not in result.outputs  # blocked after node 3
    assert any(c.startswith("count:1.") for c in CALLS)  # the expanded node's own id
