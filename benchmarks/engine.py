"""Engine overhead: µs per node for a cold 200-node chain and a 200-wide fan-in, a fully cached rerun,
and how the chain figure scales with depth. Engine only (no server, no history persistence).

    .venv/bin/python benchmarks/engine.py [--repeat N]

Prints the figures and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.graph import types as T  # noqa: E402
from engine.graph.executor import Executor  # noqa: E402
from engine.graph.node import Input, Node, NodeResult, Output  # noqa: E402
from engine.graph.registry import NodeRegistry  # noqa: E402

WIDE = 200


class NoOpSource(Node):
    INPUTS = (Input.integer("value", default=0),)
    OUTPUTS = (Output("value", T.INT),)

    async def run(self, ctx, value):
        return (value,)


class NoOp(Node):
    INPUTS = (Input.socket("value", T.INT),)
    OUTPUTS = (Output("value", T.INT),)

    async def run(self, ctx, value):
        return (value,)


class NoOpOutput(Node):
    OUTPUT_NODE = True
    INPUTS = tuple(Input.socket(f"in{i}", T.INT, required=False) for i in range(WIDE))

    async def run(self, ctx, **values):
        return NodeResult((), {"n": [len(values)]})


def registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in (NoOpSource, NoOp, NoOpOutput):
        reg.register(cls)
    return reg


def chain(n: int) -> dict:
    prompt = {"0": {"class_type": "NoOpSource", "inputs": {"value": 1}}}
    for i in range(1, n - 1):
        prompt[str(i)] = {"class_type": "NoOp", "inputs": {"value": [str(i - 1), 0]}}
    prompt[str(n - 1)] = {"class_type": "NoOpOutput", "inputs": {"in0": [str(n - 2), 0]}}
    return prompt


def wide(n: int) -> dict:
    prompt = {str(i): {"class_type": "NoOpSource", "inputs": {"value": i}} for i in range(n)}
    prompt["out"] = {"class_type": "NoOpOutput", "inputs": {f"in{i}": [str(i), 0] for i in range(n)}}
    return prompt


async def cold(reg: NodeRegistry, prompt: dict, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        executor = Executor(reg)  # empty cache: everything runs
        t = time.perf_counter()
        result = await executor.execute(prompt)
        times.append(time.perf_counter() - t)
        assert result.ok, result.error
    return statistics.median(times)


async def cached(reg: NodeRegistry, prompt: dict, repeat: int) -> float:
    executor = Executor(reg)
    assert (await executor.execute(prompt)).ok
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = await executor.execute(prompt)
        times.append(time.perf_counter() - t)
        assert result.ok and not result.executed
    return statistics.median(times)


async def main(repeat: int) -> dict:
    reg = registry()
    await cold(reg, chain(10), 3)  # warm up imports and code paths
    scaling = {str(n): await cold(reg, chain(n), repeat) / n * 1e6 for n in (10, 50, 100, 200)}
    results = {
        "chain200_us_per_node": round(scaling["200"], 1),
        "wide200_us_per_node": round(await cold(reg, wide(WIDE), repeat) / (WIDE + 1) * 1e6, 1),
        "cached7_ms": round(await cached(reg, chain(7), repeat * 5) * 1e3, 3),
        "chain_scaling_us_per_node": {k: round(v, 1) for k, v in scaling.items()},
    }
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    res = asyncio.run(main(args.repeat))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"median of {args.repeat} runs")
    print(f"200-node chain, cold:       {res['chain200_us_per_node']:8.1f} µs/node   (target <= 100)")
    print(f"200-wide fan-in, cold:      {res['wide200_us_per_node']:8.1f} µs/node   (target <= 100)")
    print(f"7-node chain, all cached:   {res['cached7_ms']:8.3f} ms        (target <= 0.5)")
    print("chain scaling (µs/node):    " + ", ".join(f"{k}: {v}" for k, v in res["chain_scaling_us_per_node"].items()))
    print(json.dumps(res))
