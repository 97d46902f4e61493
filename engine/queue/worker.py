"""The prompt worker: takes prompts from the persistent queue one at a time, runs them, writes history.

It runs as a task on the event loop; the executor keeps model calls off it. A prompt left running by a
killed process is put back in the queue by ``Store.recover()`` at start-up and runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from engine.queue.cluster import backoff_s
from engine.graph.events import Event, EventSink, discard, jsonable
from engine.graph.executor import Execution, Executor
from engine.graph.prompt import Prompt, PromptFormatError
from engine.queue.base import PromptQueue
from engine.queue.sqlite_store import QueueItem
from engine.graph.validation import PromptInvalid

log = logging.getLogger(__name__)


class PromptWorker:
    def __init__(self, store: PromptQueue, executor: Executor, on_event: EventSink = discard,
                 on_queue_change: Callable[[], None] | None = None, requeue_on_stop: bool = False):
        self.store = store
        self.executor = executor
        self.on_event = on_event
        self.on_queue_change = on_queue_change or (lambda: None)
        self.current: QueueItem | None = None
        self._execution: Execution | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # A cluster worker that is stopped hands its unfinished prompt back to the queue instead of recording it
        # as interrupted: another worker runs it.
        self.requeue_on_stop = requeue_on_stop

    def start(self) -> asyncio.Task[None]:
        recovered = self.store.recover()
        if recovered:
            log.info("resuming %d prompt(s) left in the queue by the last run", recovered)
        self._task = asyncio.create_task(self._loop(), name="prompt-worker")
        self._wake.set()
        return self._task

    async def stop(self) -> None:
        self._stopping = True
        self.interrupt()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    def wake(self) -> None:
        """Call after enqueueing: the worker looks at the queue again."""
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (any, or only ``prompt_id``); returns whether one was interrupted."""
        execution = self._execution
        if execution is None or (prompt_id is not None and execution.prompt_id != prompt_id):
            return False
        execution.interrupt()
        return True

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            # Clear before looking, never after: a wake() that arrives while claim_next runs (in its thread) must
            # survive it, or a prompt submitted just then waits in the queue until the next submit.
            self._wake.clear()
            try:
                item = await asyncio.to_thread(self.store.claim_next)
                failures = 0
            except Exception as exc:  # the queue is unreachable (Redis restarting): back off and try again
                failures += 1
                if failures == 1:
                    log.warning("the queue is unreachable (%s); retrying with backoff", exc)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=backoff_s(failures))
                except asyncio.TimeoutError:
                    pass
                continue
            if item is None:
                if not getattr(self.store, "blocking_claim", False):  # claim_next waited already on Redis
                    await self._wake.wait()
                continue
            self.current = item
            self.on_queue_change()
            try:
                await self.run_item(item)
            except Exception:  # the worker must survive anything a prompt does
                log.exception("prompt %s failed outside a node", item.prompt_id)
            finally:
                self.current = None
                self.on_queue_change()

    def _emit_for(self, item: QueueItem) -> EventSink:
        client_id = item.client_id

        def emit(event: Event) -> None:
            self.on_event(Event(event.type, event.data, client_id))
        return emit

    async def run_item(self, item: QueueItem) -> None:
        started = time.time()
        emit = self._emit_for(item)
        try:
            prompt = Prompt.from_api(item.prompt)
            self._execution = self.executor.start(prompt, item.prompt_id, item.outputs_to_execute or None, emit,
                                                  extra_data=item.extra_data)
        except (PromptInvalid, PromptFormatError) as exc:  # e.g. a pack was disabled since it was queued
            error = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
                     "exception_message": f"the prompt is no longer valid: {exc}",
                     "exception_type": type(exc).__name__, "traceback": [], "current_inputs": {},
                     "current_outputs": []}
            emit(Event("execution_error", error))
            await self._record(item, "error", {}, [["execution_error", error]], None, error)
            return
        try:
            result = await self._execution.run()
        finally:
            self._execution = None
            self.executor.prune_instances((nid, n.class_type) for nid, n in prompt.nodes.items())
        if self._stopping and self.requeue_on_stop and result.status == "interrupted":
            log.info("prompt %s stopped with this worker; it goes back to the queue", item.prompt_id)
            await asyncio.to_thread(self.store.recover)
            return
        meta = {nid: {"node_id": nid, "display_node": nid, "real_node_id": nid} for nid in result.outputs}
        timings = {**result.timings, "started": started}
        messages = [[kind, jsonable(data)] for kind, data in result.messages]
        await self._record(item, result.status, jsonable(result.outputs), messages, timings,
                           jsonable(result.error), meta)

    async def _record(self, item: QueueItem, *args: Any) -> None:
        """Write the history entry (which also takes the prompt off the queue), retrying while the queue is
        unreachable: a result is never dropped. Then tell listeners the prompt is done."""
        failures = 0
        while True:
            try:
                await asyncio.to_thread(self.store.complete, item.prompt_id, *args)
                break
            except KeyError:  # deleted meanwhile (POST /queue clear on Redis, history cleared): nothing to record
                log.info("prompt %s left the queue while it ran; its result is not recorded", item.prompt_id)
                break
            except Exception as exc:
                failures += 1
                if failures == 1 or self._stopping:
                    log.warning("could not record prompt %s (%s); retrying", item.prompt_id, exc)
                if self._stopping and failures > 3:
                    log.error("prompt %s: result not recorded; it runs again when the queue is back",
                              item.prompt_id)
                    return
                await asyncio.sleep(backoff_s(failures))
        self.on_event(Event("prompt_done", {"prompt_id": item.prompt_id}, item.client_id))

