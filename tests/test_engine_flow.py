"""Execution semantics as first-class engine concepts, with native nodes: lazy inputs, node expansion (with
cycle detection blamed on the expanding node), execution blockers, raw links, undeclared inputs, literals on
union types, async input checks, partial validity, and the cache policies (ours, classic, lru, none)."""

from __future__ import annotations

import asyncio
import pytest

from engine.graph import types as T
from engine.graph.cache import OutputCache
from engine.graph.executor import Executor
from engine.graph.flow import ExecutionBlocker
from engine.graph.node import Input, Node, NodeResult, Output
from engine.graph.prompt import Link
from engine.graph.registry import NodeRegistry
from engine.graph.validation import PromptInvalid

RAN: list[str] = []


class Num(Node):
    INPUTS = (Input.integer("value", tooltip="n"),)
    OUTPUTS = (Output("value", T.INT),)

    def run(self, ctx, value):
        RAN.append(f"Num{value}")
        return (value,)


class Pick(Node):
    """Lazy switch: computes only the branch it takes."""
    INPUTS = (Input.boolean("first", tooltip="which"), Input.socket("a", T.INT, lazy=True),
              Input.socket("b", T.INT, lazy=True))
    OUTPUTS = (Output("value", T.INT),)

    async def needed_inputs(self, ctx, inputs):
        return ["a"] if inputs["first"] else ["b"]

    def run(self, ctx, first, a=None, b=None):
        return (a if first else b,)


class Double(Node):
    """Expands into Num -> Add(x, x) built at run time."""
    INPUTS = (Input.integer("value", tooltip="n"),)
    OUTPUTS = (Output("value", T.INT),)

    def run(self, ctx, value):
        graph = {f"{ctx.node_id}.n": {"class_type": "Num", "inputs": {"value": value}},
                 f"{ctx.node_id}.s": {"class_type": "Sum", "inputs": {"a": [f"{ctx.node_id}.n", 0],
                                                                     "b": [f"{ctx.node_id}.n", 0]}}}
        return NodeResult((Link(f"{ctx.node_id}.s", 0),), expand=graph)


class Loop(Node):
    """Expands into two nodes waiting on each other (through lazy inputs)."""
    INPUTS = (Input.integer("value", tooltip="n"),)
    OUTPUTS = (Output("value", T.INT),)

    def run(self, ctx, value):
        p = ctx.node_id
        graph = {f"{p}.x": {"class_type": "Pick", "inputs": {"first": True, "a": [f"{p}.y", 0], "b": [f"{p}.y", 0]}},
                 f"{p}.y": {"class_type": "Pick", "inputs": {"first": True, "a": [f"{p}.x", 0], "b": [f"{p}.x", 0]}}}
        return NodeResult((Link(f"{p}.x", 0),), expand=graph)


class Sum(Node):
    ACCEPTS_UNDECLARED_INPUTS = True
    INPUTS = (Input.socket("a", T.INT),)
    OUTPUTS = (Output("value", T.INT),)

    def run(self, ctx, a, **more):
        return (a + sum(more.values()),)


class Gate(Node):
    INPUTS = (Input.socket("value", T.ANY), Input.boolean("block", tooltip="stop it"),
              Input.string("why", tooltip="message", required=False))
    OUTPUTS = (Output("value", T.ANY),)

    def run(self, ctx, value, block, why=None):
        return (ExecutionBlocker(why or None) if block else value,)


class Where(Node):
    INPUTS = (Input.socket("source", T.INT, raw_link=True),)
    OUTPUTS = (Output("value", T.STRING),)

    def run(self, ctx, source):
        return (f"{source[0]}:{source[1]}",)


class Scale(Node):
    """A union input: a link of either type, or a number typed in (checked asynchronously)."""
    INPUTS = (Input.socket("x", "INT,FLOAT"),)
    OUTPUTS = (Output("value", T.FLOAT),)

    @classmethod
    async def check_inputs(cls, inputs):
        await asyncio.sleep(0)
        x = inputs.get("x")
        return [("x", "must be a number")] if x is not None and not isinstance(x, int | float) else []

    def run(self, ctx, x):
        return (float(x) * 2,)


class Out(Node):
    OUTPUT_NODE = True
    INPUTS = (Input.socket("value", T.ANY),)

    def run(self, ctx, value):
        RAN.append(f"Out{value}")
        return NodeResult((), {"text": [str(value)]})


@pytest.fixture
def reg() -> NodeRegistry:
    r = NodeRegistry()
    for cls in (Num, Pick, Double, Loop, Sum, Gate, Where, Scale, Out):
        r.register(cls)
    RAN.clear()
    return r


async def test_lazy_input_computes_only_the_branch_taken(reg):
    api = {"1": {"class_type": "Num", "inputs": {"value": 1}}, "2": {"class_type": "Num", "inputs": {"value": 2}},
           "3": {"class_type": "Pick", "inputs": {"first": False, "a": ["1", 0], "b": ["2", 0]}},
           "4": {"class_type": "Out", "inputs": {"value": ["3", 0]}}}
    result = await Executor(reg).execute(api)
    assert result.outputs["4"] == {"text": ["2"]} and "1" not in result.executed and "Num1" not in RAN


async def test_expansion_runs_the_subgraph_and_caches_the_result(reg):
    api = {"1": {"class_type": "Double", "inputs": {"value": 21}}, "2": {"class_type": "Out", "inputs": {"value": ["1", 0]}}}
    executor = Executor(reg)
    result = await executor.execute(api)
    assert result.outputs["2"] == {"text": ["42"]} and {"1.n", "1.s"} <= set(result.executed)
    again = await executor.execute(api)
    assert again.cached == ["1", "2"] and not again.executed


async def test_cycle_made_by_an_expansion_fails_on_the_expanding_node(reg):
    api = {"1": {"class_type": "Loop", "inputs": {"value": 1}}, "2": {"class_type": "Out", "inputs": {"value": ["1", 0]}}}
    result = await asyncio.wait_for(Executor(reg).execute(api), 10)
    assert result.status == "error" and result.error["node_id"] == "1"
    assert "cycle" in result.error["exception_message"]


async def test_blocker_stops_downstream_nodes_silently(reg):
    api = {"1": {"class_type": "Num", "inputs": {"value": 5}},
           "2": {"class_type": "Gate", "inputs": {"value": ["1", 0], "block": True}},
           "3": {"class_type": "Out", "inputs": {"value": ["2", 0]}}}
    result = await Executor(reg).execute(api)
    assert result.ok and "3" not in result.outputs and "Out5" not in RAN


async def test_blocker_with_a_message_is_reported_once(reg):
    api = {"1": {"class_type": "Num", "inputs": {"value": 5}},
           "2": {"class_type": "Gate", "inputs": {"value": ["1", 0], "block": True, "why": "no face found"}},
           "3": {"class_type": "Gate", "inputs": {"value": ["2", 0], "block": False}},
           "4": {"class_type": "Out", "inputs": {"value": ["3", 0]}}}
    events = []
    result = await Executor(reg).execute(api, on_event=events.append)
    errors = [e.data for e in events if e.type == "execution_error"]
    assert result.ok and "4" not in result.outputs
    assert [(e["node_id"], e["exception_message"]) for e in errors] == [("3", "Execution Blocked: no face found")]


async def test_raw_link_undeclared_inputs_and_literals_on_unions(reg):
    api = {"1": {"class_type": "Num", "inputs": {"value": 2}}, "2": {"class_type": "Num", "inputs": {"value": 3}},
           "3": {"class_type": "Sum", "inputs": {"a": ["1", 0], "extra": ["2", 0]}},
           "4": {"class_type": "Where", "inputs": {"source": ["3", 0]}},
           "5": {"class_type": "Scale", "inputs": {"x": 1.5}},
           "6": {"class_type": "Out", "inputs": {"value": ["3", 0]}}, "7": {"class_type": "Out", "inputs": {"value": ["4", 0]}},
           "8": {"class_type": "Out", "inputs": {"value": ["5", 0]}}}
    result = await Executor(reg).execute(api)
    assert result.outputs["6"] == {"text": ["5"]} and result.outputs["7"] == {"text": ["3:0"]}
    assert result.outputs["8"] == {"text": ["3.0"]}


async def test_async_check_and_partial_validity(reg):
    api = {"1": {"class_type": "Scale", "inputs": {"x": "seven"}}, "2": {"class_type": "Out", "inputs": {"value": ["1", 0]}},
           "3": {"class_type": "Num", "inputs": {"value": 4}}, "4": {"class_type": "Out", "inputs": {"value": ["3", 0]}}}
    result = await Executor(reg).execute(api)  # the broken branch is left out, the other runs
    assert result.ok and result.outputs == {"4": {"text": ["4"]}}
    with pytest.raises(PromptInvalid) as bad:
        await Executor(reg).execute({k: api[k] for k in ("1", "2")})
    assert any(i.input_name == "x" and "number" in i.message for i in bad.value.report.issues)


@pytest.mark.parametrize("policy, reruns", [("ram", False), ("lru", False), ("classic", False), ("none", True)])
async def test_cache_policies(reg, policy: str, reruns: bool):
    api = {"1": {"class_type": "Num", "inputs": {"value": 7}}, "2": {"class_type": "Out", "inputs": {"value": ["1", 0]}}}
    other = {"1": {"class_type": "Num", "inputs": {"value": 8}}, "2": {"class_type": "Out", "inputs": {"value": ["1", 0]}}}
    executor = Executor(reg, OutputCache(max_entries=2 if policy == "lru" else 100, policy=policy))
    await executor.execute(api)
    again = await executor.execute(api)
    assert bool(again.executed) == reruns
    await executor.execute(other)  # classic keeps only the last prompt's results; lru(2) only the latest two
    third = await executor.execute(api)
    assert ("1" in third.executed) == (policy in ("classic", "lru", "none"))
