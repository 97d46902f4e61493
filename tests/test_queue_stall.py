"""The prompt worker never leaves a prompt waiting in the queue with nothing running.

Stress: 1,000 prompts, alternately succeeding and failing, each submitted at the moment the previous one
finishes (from its ``prompt_done`` event, after a random 0-1 ms), while the queue's ``claim_next`` is made slow
when it finds nothing (0-1 ms, a busy disk): the window in which a submit's wake-up used to be dropped. A prompt
not finished within 2 s is a stall; the worker is then woken by hand so the count covers every round.
"""

from __future__ import annotations

import asyncio
import random
import time

from engine.graph.executor import Executor
from engine.queue.sqlite_store import Store
from engine.queue.worker import PromptWorker
from tests import engine_nodes as N

ROUNDS = 1000
STALL_S = 2.0

OK = {"1": {"class_type": "Const", "inputs": {"value": 1}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
FAILS = {"1": {"class_type": "Const", "inputs": {"value": 1}}, "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
         "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


class SlowEmptyStore(Store):
    """``claim_next`` that lingers when the queue is empty, as on a busy disk."""

    def claim_next(self):  # type: ignore[override]
        item = super().claim_next()
        if item is None:
            time.sleep(random.random() / 1000)
        return item


async def test_submit_as_the_previous_prompt_finishes_never_stalls(tmp_path):
    random.seed(17)
    store = SlowEmptyStore(tmp_path / "queue.sqlite3")
    done: dict[str, asyncio.Event] = {}
    statuses: dict[str, str] = {}

    def on_event(event):
        if event.type == "prompt_done":
            done[event.data["prompt_id"]].set()

    executor = Executor(N.make_registry())
    worker = PromptWorker(store, executor, on_event=on_event)
    worker.start()

    async def submit(index: int) -> str:
        prompt_id = f"p{index}"
        done[prompt_id] = asyncio.Event()
        await asyncio.sleep(random.random() / 1000)
        await asyncio.to_thread(store.enqueue, OK if index % 2 == 0 else FAILS, {}, None, prompt_id, ["2"]
                                if index % 2 == 0 else ["3"])
        worker.wake()
        return prompt_id

    stalls = []
    try:
        prompt_id = await submit(0)
        for index in range(1, ROUNDS + 1):
            try:
                await asyncio.wait_for(done[prompt_id].wait(), STALL_S)
            except asyncio.TimeoutError:
                stalls.append(prompt_id)
                worker.wake()
                await asyncio.wait_for(done[prompt_id].wait(), STALL_S)
            if index == ROUNDS:
                break
            prompt_id = await submit(index)  # at the moment the previous one finished
        for prompt_id, entry in store.history().items():
            statuses[prompt_id] = entry["status"]["status_str"]
    finally:
        await worker.stop()
        store.close()
    assert stalls == [], f"{len(stalls)} of {ROUNDS} prompts stalled in the queue: {stalls[:10]}"
    assert len(statuses) == ROUNDS and set(statuses.values()) == {"success", "error"}
