"""Small test-only nodes for the engine tests (registered on fresh registries, never in nodes/)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from engine.graph import types as T
from engine.graph.node import Input, Node, NodeResult, Output
from engine.graph.registry import NodeRegistry

CALLS: Counter[str] = Counter()  # how many times each node id ran (tests reset it)
_lock = threading.Lock()


def count(node_id: str) -> None:
    with _lock:
        CALLS[node_id] += 1


class Const(Node):
    INPUTS = (Input.integer("value", default=1, min=-1000, max=1000),)
    OUTPUTS = (Output("value", T.INT),)

    async def run(self, ctx, value):
        count(self.node_id)
        return (value,)


class Add(Node):
    INPUTS = (Input.socket("a", T.INT), Input.socket("b", T.INT, required=False))
    OUTPUTS = (Output("sum", T.INT),)

    def run(self, ctx, a, b=0):  # blocking: runs in a worker thread
        count(self.node_id)
        return (a + b,)


class Pick(Node):
    INPUTS = (Input.combo("mode", ["fast", "slow"], default="fast"), Input.number("gain", 1.0, min=0.0, max=2.0),
              Input.string("label", default="x"))
    OUTPUTS = (Output("label", T.TEXT),)

    async def run(self, ctx, mode, gain, label):
        count(self.node_id)
        return (f"{label}:{mode}:{gain}",)


class Random(Node):
    DETERMINISTIC = False
    OUTPUTS = (Output("value", T.INT),)

    async def run(self, ctx):
        count(self.node_id)
        return (CALLS[self.node_id],)


class Sleep(Node):
    INPUTS = (Input.socket("value", T.INT), Input.number("seconds", 0.2, min=0, max=60))
    OUTPUTS = (Output("value", T.INT),)

    async def run(self, ctx, value, seconds):
        count(self.node_id)
        await asyncio.sleep(seconds)
        return (value,)


class BlockingSleep(Node):
    """Blocking work in a thread that checks for interruption between steps."""
    INPUTS = (Input.socket("value", T.INT), Input.number("seconds", 5.0, min=0, max=60))
    OUTPUTS = (Output("value", T.INT),)

    def run(self, ctx, value, seconds):
        count(self.node_id)
        end = time.monotonic() + seconds
        steps = 0
        while time.monotonic() < end:
            ctx.check_interrupted()
            time.sleep(0.01)
            steps += 1
            ctx.progress(min(steps, 100), 100)
        return (value,)


class Fail(Node):
    INPUTS = (Input.socket("value", T.INT),)
    OUTPUTS = (Output("value", T.INT),)

    def run(self, ctx, value):
        raise RuntimeError("deliberate failure")


class Show(Node):
    OUTPUT_NODE = True
    INPUTS = (Input.socket("value", T.ANY),)

    async def run(self, ctx, value):
        count(self.node_id)
        return NodeResult((), {"text": [str(value)]})


class Count(Node):
    """Produces ``n`` chunks into a TEXT_STREAM and records how far ahead of the consumer it gets."""
    INPUTS = (Input.integer("n", default=10, min=0, max=100000),)
    OUTPUTS = (Output("chunks", T.TEXT_STREAM),)
    produced: list[float] = []

    async def run(self, ctx, n):
        count(self.node_id)

        async def chunks():
            for i in range(n):
                Count.produced.append(time.perf_counter())
                yield f"chunk{i}"
        return (chunks(),)


class Upper(Node):
    INPUTS = (Input.socket("chunks", T.TEXT_STREAM),)
    OUTPUTS = (Output("chunks", T.TEXT_STREAM),)

    async def run(self, ctx, chunks):
        count(self.node_id)

        async def upper():
            async for c in chunks:
                yield c.upper()
        return (upper(),)


class SlowCollect(Node):
    OUTPUT_NODE = True
    INPUTS = (Input.socket("chunks", T.TEXT_STREAM), Input.number("delay", 0.0, min=0, max=10))
    received: list[tuple[float, str]] = []

    async def run(self, ctx, chunks, delay):
        count(self.node_id)
        got = []
        async for c in chunks:
            SlowCollect.received.append((time.perf_counter(), c))
            got.append(c)
            await asyncio.sleep(delay)
        return NodeResult((), {"text": got})


class Endless(Node):
    """A stream that never ends (a live mic, say) until interrupted."""
    OUTPUTS = (Output("chunks", T.TEXT_STREAM),)

    async def run(self, ctx):
        async def forever():
            i = 0
            while True:
                await asyncio.sleep(0.005)
                i += 1
                yield f"c{i}"
        return (forever(),)


ALL = (Const, Add, Pick, Random, Sleep, BlockingSleep, Fail, Show, Count, Upper, SlowCollect, Endless)


def make_registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in ALL:
        reg.register(cls, "tests")
    return reg
