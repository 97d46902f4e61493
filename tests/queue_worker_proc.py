"""Run as a subprocess by test_queue_recovery: a real process that executes a persistent queue.

usage: python -m tests.queue_worker_proc DB enqueue N | DB work
"""

import asyncio
import sys

from engine.graph.executor import Executor
from engine.queue.sqlite_store import Store
from engine.queue.worker import PromptWorker
from tests import engine_nodes as N


def prompt(i: int) -> dict:
    return {"c": {"class_type": "Const", "inputs": {"value": i}},
            "w": {"class_type": "Sleep", "inputs": {"value": ["c", 0], "seconds": 0.4}},
            "s": {"class_type": "Show", "inputs": {"value": ["w", 0]}}}


async def work(db: str) -> None:
    store = Store(db)
    worker = PromptWorker(store, Executor(N.make_registry()))
    worker.start()
    while store.remaining() or worker.current is not None:
        await asyncio.sleep(0.05)
    await worker.stop()
    print("drained", flush=True)


if __name__ == "__main__":
    db, action = sys.argv[1], sys.argv[2]
    if action == "enqueue":
        store = Store(db)
        for i in range(int(sys.argv[3])):
            store.enqueue(prompt(i), {}, "cli", f"p{i}", ["s"])
        store.close()
    else:
        asyncio.run(work(db))
