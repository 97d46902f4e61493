"""Sessions: a long-lived graph whose interrupt cancels every running node within 100 ms (barge-in)."""

import asyncio
import statistics
import time

from engine.graph.executor import Executor
from engine.live.session import Session
from tests import engine_nodes as N

LIVE = {"mic": {"class_type": "Endless", "inputs": {}},
        "up": {"class_type": "Upper", "inputs": {"chunks": ["mic", 0]}},
        "out": {"class_type": "SlowCollect", "inputs": {"chunks": ["up", 0], "delay": 0.01}},
        "c": {"class_type": "Const", "inputs": {}},
        "think": {"class_type": "BlockingSleep", "inputs": {"value": ["c", 0], "seconds": 30}},
        "say": {"class_type": "Show", "inputs": {"value": ["think", 0]}}}


async def test_interrupt_stops_every_node_fast_and_session_stays_usable():
    reg = N.make_registry()
    events = []
    session = Session("s1", Executor(reg), LIVE, on_event=lambda e: events.append(e.type))
    latencies = []
    for _ in range(5):
        task = session.start()
        await asyncio.sleep(0.15)  # streams flowing, blocking node busy in its thread
        assert session.running
        t0 = time.perf_counter()
        report = await session.interrupt()
        latencies.append(time.perf_counter() - t0)
        result = await task
        assert result.status == "interrupted"
        assert {"mic", "up", "out", "think"} <= set(report.nodes_cancelled)
        assert not session.running
    assert max(latencies) < 0.1, latencies
    assert "execution_interrupted" in events and "interrupted" in events
    # Still usable: a normal short run succeeds after the interrupts.
    session.prompt.set_input("think", "seconds", 0.01)
    session.prompt.nodes.pop("mic"), session.prompt.nodes.pop("up"), session.prompt.nodes.pop("out")
    result = await session.run()
    assert result.ok and result.outputs["say"] == {"text": ["1"]}
    await session.close()
    print("interrupt latency ms: median %.1f max %.1f" % (statistics.median(latencies) * 1000,
                                                           max(latencies) * 1000))


async def test_session_keeps_node_instances_and_inputs():
    reg = N.make_registry()
    session = Session("s2", Executor(reg), {"c": {"class_type": "Const", "inputs": {"value": 4}},
                                            "s": {"class_type": "Show", "inputs": {"value": ["c", 0]}}})
    await session.run()
    instances = dict(session.executor.instances)
    result = await session.run({("c", "value"): 5})
    assert result.outputs["s"] == {"text": ["5"]}
    assert all(session.executor.instances[k] is v for k, v in instances.items())
    session.feed("mic", b"\x00\x01")
    session.channel("mic").close()
    assert [c async for c in session.input_stream("mic")] == [b"\x00\x01"]
    await session.close()


async def test_two_sessions_are_isolated():
    reg = N.make_registry()
    base = Executor(reg)
    prompt = {"c": {"class_type": "Const", "inputs": {"value": 1}},
              "t": {"class_type": "BlockingSleep", "inputs": {"value": ["c", 0], "seconds": 30}},
              "s": {"class_type": "Show", "inputs": {"value": ["t", 0]}}}
    a, b = Session("a", base, prompt), Session("b", base, {**prompt, "t": {"class_type": "Sleep", "inputs": {
        "value": ["c", 0], "seconds": 0.3}}})
    ta, tb = a.start(), b.start()
    await asyncio.sleep(0.1)
    await a.interrupt()
    assert (await ta).status == "interrupted"
    assert (await tb).ok, "interrupting one session leaves the other running"
    await a.close(), await b.close()


async def test_input_channel_rewind_replays_recent_chunks_after_restart():
    reg = N.make_registry()
    session = Session("s3", Executor(reg), {"c": {"class_type": "Const", "inputs": {}},
                                            "s": {"class_type": "Show", "inputs": {"value": ["c", 0]}}})
    for i in range(5):
        session.feed("mic", bytes([i]))
    stream = session.input_stream("mic")
    first = [await anext(stream) for _ in range(3)]
    assert session.channel("mic").rewind(2) == 2  # barge-in: the restarted graph hears the last 2 again
    session.channel("mic").close()
    again = [c async for c in session.input_stream("mic")]
    assert first == [b"\x00", b"\x01", b"\x02"] and again == [b"\x01", b"\x02", b"\x03", b"\x04"]
    await session.close()
