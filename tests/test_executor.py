"""Executor: sub-graph selection, caching across reruns, overlap, streaming with back-pressure, errors."""

import asyncio
import time
import tracemalloc

import pytest

from engine.graph.cache import OutputCache
from engine.graph.executor import Executor
from engine.models.manager import ModelManager, ModelSpec
from engine.graph.node import Input, Node, Output
from engine.graph import types as T
from tests import engine_nodes as N


@pytest.fixture
def reg():
    N.CALLS.clear()
    N.Count.produced.clear()
    N.SlowCollect.received.clear()
    return N.make_registry()


def chain_prompt(gain_label="x"):
    return {
        "photo": {"class_type": "Const", "inputs": {"value": 2}},
        "voice": {"class_type": "Const", "inputs": {"value": 3}},
        "face": {"class_type": "Add", "inputs": {"a": ["photo", 0], "b": ["photo", 0]}},
        "latents": {"class_type": "Add", "inputs": {"a": ["voice", 0]}},
        "reply": {"class_type": "Pick", "inputs": {"label": gain_label}},
        "speech": {"class_type": "Add", "inputs": {"a": ["latents", 0], "b": ["face", 0]}},
        "out": {"class_type": "Show", "inputs": {"value": ["speech", 0]}},
        "out2": {"class_type": "Show", "inputs": {"value": ["reply", 0]}},
        "unused": {"class_type": "Const", "inputs": {"value": 9}},
    }


async def test_runs_only_what_outputs_need_and_events_in_order(reg):
    events = []
    result = await Executor(reg).execute(chain_prompt(), on_event=lambda e: events.append((e.type, e.data)))
    assert result.ok
    assert result.outputs["out"] == {"text": ["7"]} and result.outputs["out2"] == {"text": ["x:fast:1.0"]}
    assert "unused" not in N.CALLS
    types = [t for t, _ in events]
    assert types[0] == "execution_start" and types[1] == "execution_cached"
    assert types[-2:] == ["executing", "execution_success"] and events[-2][1]["node"] is None
    starts = [d["node"] for t, d in events if t == "executing" and d["node"]]
    assert starts.index("photo") < starts.index("face") < starts.index("speech") < starts.index("out")


async def test_cache_hits_and_partial_rerun(reg):
    ex = Executor(reg)
    await ex.execute(chain_prompt())
    first = dict(N.CALLS)
    again = await ex.execute(chain_prompt())
    assert dict(N.CALLS) == first, "an identical rerun executes nothing"
    assert set(again.cached) >= {"photo", "voice", "face", "latents", "speech", "out", "out2", "reply"}
    assert again.outputs["out"] == {"text": ["7"]}
    # Change only the late input: the photo's face and the voice's latents are reused.
    changed = chain_prompt(gain_label="hello")
    result = await ex.execute(changed)
    assert result.outputs["out2"] == {"text": ["hello:fast:1.0"]}
    assert N.CALLS["reply"] == 2 and N.CALLS["out2"] == 2
    for nid in ("photo", "voice", "face", "latents", "speech", "out"):
        assert N.CALLS[nid] == 1, nid


async def test_changed_ancestor_reruns_descendants_only(reg):
    ex = Executor(reg)
    await ex.execute(chain_prompt())
    p = chain_prompt()
    p["voice"]["inputs"]["value"] = 10
    result = await ex.execute(p)
    assert result.outputs["out"] == {"text": ["14"]}
    assert N.CALLS["voice"] == 2 and N.CALLS["latents"] == 2 and N.CALLS["speech"] == 2
    assert N.CALLS["photo"] == 1 and N.CALLS["face"] == 1


async def test_non_deterministic_nodes_never_cached(reg):
    ex = Executor(reg)
    p = {"r": {"class_type": "Random", "inputs": {}}, "a": {"class_type": "Add", "inputs": {"a": ["r", 0]}},
         "s": {"class_type": "Show", "inputs": {"value": ["a", 0]}}}
    r1 = await ex.execute(p)
    r2 = await ex.execute(p)
    assert N.CALLS["r"] == 2 and N.CALLS["a"] == 2 and N.CALLS["s"] == 2
    assert r1.outputs["s"] != r2.outputs["s"]


async def test_fingerprint_invalidates(reg):
    state = {"v": 1}

    class FileLike(Node):
        INPUTS = (Input.string("path", default="a.png"),)
        OUTPUTS = (Output("value", T.INT),)

        @classmethod
        def fingerprint(cls, inputs):
            return state["v"]

        async def run(self, ctx, path):
            N.count(self.node_id)
            return (state["v"],)

    reg.register(FileLike)
    ex = Executor(reg)
    p = {"f": {"class_type": "FileLike", "inputs": {}}, "s": {"class_type": "Show", "inputs": {"value": ["f", 0]}}}
    await ex.execute(p)
    await ex.execute(p)
    assert N.CALLS["f"] == 1
    state["v"] = 2
    result = await ex.execute(p)
    assert N.CALLS["f"] == 2 and result.outputs["s"] == {"text": ["2"]}


async def test_lru_bound(reg):
    ex = Executor(reg, cache=OutputCache(max_entries=3))
    for v in range(6):
        await ex.execute({"c": {"class_type": "Const", "inputs": {"value": v}},
                          "s": {"class_type": "Show", "inputs": {"value": ["c", 0]}}})
    assert len(ex.cache) == 3 and ex.cache.stats.evictions == 9


async def test_independent_branches_overlap(reg):
    p = {"c": {"class_type": "Const", "inputs": {}},
         "a": {"class_type": "Sleep", "inputs": {"value": ["c", 0], "seconds": 0.3}},
         "b": {"class_type": "Sleep", "inputs": {"value": ["c", 0], "seconds": 0.3}},
         "sa": {"class_type": "Show", "inputs": {"value": ["a", 0]}},
         "sb": {"class_type": "Show", "inputs": {"value": ["b", 0]}}}
    t = time.perf_counter()
    assert (await Executor(reg).execute(p)).ok
    assert time.perf_counter() - t < 0.55  # serial would take 0.6 s


async def test_streaming_consumer_starts_on_first_chunk_and_backpressure(reg):
    n, buffer = 200, 4
    p = {"gen": {"class_type": "Count", "inputs": {"n": n}},
         "up": {"class_type": "Upper", "inputs": {"chunks": ["gen", 0]}},
         "out": {"class_type": "SlowCollect", "inputs": {"chunks": ["up", 0], "delay": 0.002}}}
    result = await Executor(reg, stream_buffer=buffer).execute(p)
    assert result.ok and result.outputs["out"]["text"] == [f"CHUNK{i}" for i in range(n)]
    produced, received = N.Count.produced, [t for t, _ in N.SlowCollect.received]
    # The consumer had its first chunk long before the producer finished.
    assert received[0] < produced[-1]
    # Back-pressure: the producer is never more than the buffers (two hops) + in-flight items ahead.
    max_ahead = max(sum(1 for t in produced if t <= r) - (i + 1) for i, r in enumerate(received))
    assert max_ahead <= 2 * buffer + 3, max_ahead


async def test_slow_consumer_keeps_memory_bounded(reg):
    class Big(Node):
        OUTPUTS = (Output("chunks", T.AUDIO_STREAM),)

        async def run(self, ctx):
            async def chunks():
                for _ in range(300):
                    yield bytearray(1_000_000)  # 1 MB each, 300 MB if all were held
            return (chunks(),)

    class Drain(Node):
        OUTPUT_NODE = True
        INPUTS = (Input.socket("chunks", T.AUDIO_STREAM),)

        async def run(self, ctx, chunks):
            n = 0
            async for _ in chunks:
                n += 1
                await asyncio.sleep(0.0005)
            from engine.graph.node import NodeResult
            return NodeResult((), {"n": [n]})

    reg.register(Big)
    reg.register(Drain)
    tracemalloc.start()
    result = await Executor(reg, stream_buffer=4).execute(
        {"b": {"class_type": "Big", "inputs": {}}, "d": {"class_type": "Drain", "inputs": {"chunks": ["b", 0]}}})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.outputs["d"] == {"n": [300]}
    assert peak < 20_000_000, peak  # a handful of chunks in flight, not 300 MB


async def test_node_error_event_names_node_and_stops(reg):
    events = []
    p = {"c": {"class_type": "Const", "inputs": {}}, "f": {"class_type": "Fail", "inputs": {"value": ["c", 0]}},
         "s": {"class_type": "Show", "inputs": {"value": ["f", 0]}}}
    result = await Executor(reg).execute(p, on_event=lambda e: events.append(e))
    assert result.status == "error"
    err = [e for e in events if e.type == "execution_error"][0].data
    assert err["node_id"] == "f" and err["node_type"] == "Fail"
    assert "deliberate failure" in err["exception_message"] and err["traceback"]
    assert "s" not in N.CALLS


async def test_stream_producer_error_reaches_consumer(reg):
    class Broken(Node):
        OUTPUTS = (Output("chunks", T.TEXT_STREAM),)

        async def run(self, ctx):
            async def chunks():
                yield "one"
                raise ValueError("decoder broke")
            return (chunks(),)

    reg.register(Broken)
    result = await Executor(reg).execute({"b": {"class_type": "Broken", "inputs": {}},
                                          "o": {"class_type": "SlowCollect", "inputs": {"chunks": ["b", 0]}}})
    assert result.status == "error" and "decoder broke" in result.error["exception_message"]


async def test_oom_evicts_and_retries_once(reg):
    models = ModelManager(vram_budget_bytes=10 * 2**30, ram_budget_bytes=4 * 2**30)
    models.register(ModelSpec("big", "test", 6 * 2**30, load=lambda device: object()))
    models.get("big")
    attempts = []

    class Hungry(Node):
        OUTPUTS = (Output("value", T.INT),)

        def run(self, ctx):
            attempts.append([m.id for m in ctx.models.loaded() if m.device != "cpu"])
            if len(attempts) == 1:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return (1,)

    reg.register(Hungry)
    result = await Executor(reg, models=models).execute(
        {"h": {"class_type": "Hungry", "inputs": {}}, "s": {"class_type": "Show", "inputs": {"value": ["h", 0]}}})
    assert result.ok and len(attempts) == 2
    assert "big" in attempts[0] and "big" not in attempts[1]


async def test_oom_twice_gives_clear_error(reg):
    models = ModelManager(vram_budget_bytes=10 * 2**30)

    class AlwaysOOM(Node):
        OUTPUTS = (Output("value", T.INT),)

        def run(self, ctx):
            raise RuntimeError("CUDA out of memory")

    reg.register(AlwaysOOM)
    result = await Executor(reg, models=models).execute(
        {"h": {"class_type": "AlwaysOOM", "inputs": {}}, "s": {"class_type": "Show", "inputs": {"value": ["h", 0]}}})
    assert result.status == "error"
    assert "budget" in result.error["exception_message"].lower()


async def test_progress_from_worker_thread_and_node_done(reg):
    events = []
    p = {"c": {"class_type": "Const", "inputs": {}},
         "b": {"class_type": "BlockingSleep", "inputs": {"value": ["c", 0], "seconds": 0.1}},
         "s": {"class_type": "Show", "inputs": {"value": ["b", 0]}}}
    result = await Executor(reg).execute(p, on_event=lambda e: events.append(e))
    assert result.ok
    progress = [e.data for e in events if e.type == "progress"]
    assert progress and all(d["node"] == "b" and d["max"] == 100 for d in progress)
    assert [d["value"] for d in progress] == sorted(d["value"] for d in progress)
    assert {e.data["node"] for e in events if e.type == "node_done"} == {"c", "b", "s"}


def test_ram_pressure_evicts_least_recently_used():
    cache = OutputCache(max_entries=100, ram_headroom_bytes=1 << 60)  # more headroom than any machine has
    for i in range(10):
        cache._entries[bytes([i])] = i
    cache.get(bytes([0]))  # most recently used now
    evicted = cache.poll_ram()
    assert evicted == 10 and len(cache) == 0
    small = OutputCache(max_entries=100, ram_headroom_bytes=1)
    small.put(b"k", 1)
    assert small.poll_ram() == 0 and small.get(b"k") == 1


async def test_models_used_by_a_running_node_are_pinned_until_it_finishes(reg):
    models = ModelManager(vram_budget_bytes=10 * 2**30)
    seen = {}

    class UsesModel(Node):
        OUTPUTS = (Output("value", T.INT),)

        def run(self, ctx):
            model = ctx.model(ModelSpec("m", "test", 2**30, load=lambda device: {"device": device}))
            seen["pinned"] = [i.pinned_by for i in ctx.models.loaded() if i.id == "m"][0]
            return (len(model),)

    reg.register(UsesModel)
    result = await Executor(reg, models=models).execute(
        {"u": {"class_type": "UsesModel", "inputs": {}}, "s": {"class_type": "Show", "inputs": {"value": ["u", 0]}}})
    assert result.ok and seen["pinned"]
    assert not [i for i in models.loaded() if i.pinned_by], "pins are released when the node is done"


async def test_deferred_output_reaches_consumers_after_the_stream(reg):
    class Speak(Node):
        OUTPUTS = (Output("count", T.INT), Output("chunks", T.TEXT_STREAM))

        async def run(self, ctx):
            whole = asyncio.get_running_loop().create_future()

            async def chunks():
                for i in range(5):
                    yield f"c{i}"
                whole.set_result(5)
            return whole, chunks()

    reg.register(Speak)
    result = await Executor(reg).execute({
        "s": {"class_type": "Speak", "inputs": {}},
        "frames": {"class_type": "SlowCollect", "inputs": {"chunks": ["s", 1]}},
        "n": {"class_type": "Show", "inputs": {"value": ["s", 0]}}})
    assert result.ok, result.error
    assert result.outputs["n"] == {"text": ["5"]} and result.outputs["frames"]["text"] == [f"c{i}" for i in range(5)]


async def test_deferred_output_never_resolved_is_a_clear_error(reg):
    class Forgetful(Node):
        OUTPUTS = (Output("count", T.INT), Output("chunks", T.TEXT_STREAM))

        async def run(self, ctx):
            async def chunks():
                yield "x"
            return asyncio.get_running_loop().create_future(), chunks()

    reg.register(Forgetful)
    result = await Executor(reg).execute({
        "f": {"class_type": "Forgetful", "inputs": {}},
        "c": {"class_type": "SlowCollect", "inputs": {"chunks": ["f", 1]}}})
    assert result.status == "error" and "never produced its output 'count'" in result.error["exception_message"]
