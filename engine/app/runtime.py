"""The engine assembled: registry, folders, store, model manager, executor, queue worker and sessions.

The server and the CLI both build one ``Runtime``; it holds no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.graph.cache import OutputCache
from engine.queue.cluster import Cluster, ClusterUnavailable, WorkerInfo, event_from_message, is_redis_url
from engine.graph.events import Event, EventSink
from engine.graph.executor import Executor
from engine.files.folders import PROJECT_ROOT, folders
from engine.models.manager import ModelManager
from engine.graph.prompt import Prompt
from engine.queue.base import PromptQueue
from engine.queue.redis_store import RedisQueue
from engine.graph.registry import NodeRegistry, registry as default_registry
from engine.live.session import MediaSink, Session
from engine.queue.sqlite_store import QueueItem, Store
from engine.graph.validation import PromptInvalid, ValidationReport, validate
from engine.queue.worker import PromptWorker

log = logging.getLogger(__name__)


@dataclass
class RuntimeConfig:
    data_dir: Path = PROJECT_ROOT / "data"
    models_dir: Path | None = None
    output_dir: Path | None = None  # default <data_dir>/output; in a cluster, a folder every member can read
    input_dir: Path | None = None
    queue_url: str | None = None  # None: SQLite in data_dir; redis://HOST:PORT/DB: the distributed queue
    worker_name: str | None = None  # this member's name in a cluster (default host-pid)
    heartbeat_s: float = 2.0
    vram_budget_gb: float | None = None
    enabled_packs: set[str] = field(default_factory=set)
    custom_nodes_dir: Path = PROJECT_ROOT / "custom_nodes"
    builtin_packages: tuple[str, ...] = ("nodes",)
    cache_entries: int = 512
    cache_policy: str = "ram"  # "ram" (ours), "classic", "lru", "none": see engine.graph.cache.OutputCache


class Runtime:
    def __init__(self, config: RuntimeConfig, registry: NodeRegistry | None = None):
        self.config = config
        folders.configure(config.data_dir, config.models_dir, config.output_dir, config.input_dir)
        self.registry = registry if registry is not None else default_registry
        self.cluster: Cluster | None = None
        if is_redis_url(config.queue_url):  # fails fast (ClusterUnavailable / ClusterVersionError) before any state
            self.cluster = Cluster(str(config.queue_url), config.worker_name, config.heartbeat_s)
            try:
                self.cluster.check_protocol()
                self.cluster.check_shared_folders({"input": folders.get("input"), "output": folders.get("output")})
            except BaseException:
                self.cluster.close()
                raise
        elif config.queue_url not in (None, "", "sqlite"):
            raise ClusterUnavailable(f"--queue {config.queue_url!r}: use redis://HOST:PORT/DB (or leave it out for "
                                     "the embedded SQLite queue)")
        self.store = Store(Path(config.data_dir) / "avatargraph.sqlite3")
        self.queue: PromptQueue = self.store
        if self.cluster is not None:
            self.queue = RedisQueue(self.cluster, router=self._place)
        budget = int(config.vram_budget_gb * 2**30) if config.vram_budget_gb else None
        self.models = ModelManager(vram_budget_bytes=budget)
        self.executor = Executor(self.registry, OutputCache(max_entries=config.cache_entries,
                                                                  policy=config.cache_policy), self.models)
        self.listeners: list[EventSink] = []
        self.worker: PromptWorker | None = None
        self.sessions: dict[str, Session] = {}
        self.pack_report: Any = None
        self.queue_listeners: list[Callable[[], None]] = []  # the queue changed elsewhere in the cluster
        self.worker_lost_listeners: list[Callable[[str], None]] = []
        self.remote_running: set[str] = set()  # prompt ids other cluster members are running
        self._cluster_tasks: list[asyncio.Task[Any]] = []

    # Set-up ---------------------------------------------------------------------------------------------
    def load_nodes(self) -> None:
        for package in self.config.builtin_packages:
            self.registry.discover(package)  # idempotent: modules are imported once
        from engine.app.packs import load_packs  # packs are optional machinery: import on use

        enabled = set(self.config.enabled_packs) | set(self.store.get_setting("packs.enabled", default=[]) or [])
        self.pack_report = load_packs(self.registry, self.config.custom_nodes_dir, enabled)
        log.info("%s", self.pack_report.summary())
        from engine.comfy.shims.comfy import model_management

        model_management.set_interrupt_handler(lambda on: self.interrupt() if on else None)

    async def start(self, local_worker: bool = True, serve_events: bool = True) -> None:
        """Start the queue worker (``local_worker``) and, in a cluster, the heartbeat, the bus and the reaper.
        ``serve_events``: deliver other members' prompt events to this process's listeners (servers do)."""
        if local_worker:
            self.worker = PromptWorker(self.queue, self.executor, self.emit_prompt_event,
                                       requeue_on_stop=self.cluster is not None)
            self.worker.start()
        if self.cluster is not None:
            if local_worker:
                self.cluster.start_heartbeat(self.describe)
                assert self.worker is not None
                self.worker.on_queue_change = self._announce_soon  # placement sees a finished prompt at once
            channels: dict[str, Any] = {self.cluster.keys.control: self._on_control}
            if serve_events:
                channels[self.cluster.keys.events] = self._on_bus_event
            loop = asyncio.get_running_loop()
            self._cluster_tasks = [loop.create_task(self.cluster.listen(channels), name="cluster-bus"),
                                   loop.create_task(self._reap_loop(), name="cluster-reaper")]

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
        if self.worker is not None:
            await self.worker.stop()
        for task in self._cluster_tasks:
            task.cancel()
        await asyncio.gather(*self._cluster_tasks, return_exceptions=True)
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.close)
        self.store.close()

    # Cluster ---------------------------------------------------------------------------------------------
    def describe(self) -> WorkerInfo:
        """This process as a cluster worker (its heartbeat)."""
        stats = self.models.stats()
        device = (stats.get("devices") or [{}])[0]
        current = self.worker.current if self.worker is not None else None
        return WorkerInfo(name=self.cluster.name if self.cluster else "local", device=str(device.get("name", "cpu")),
                          vram_total=int(device.get("vram_total") or 0), vram_free=int(device.get("vram_free") or 0),
                          loaded=[m["id"] for m in stats.get("loaded", [])], warm=sorted(self.models.warm_users()),
                          running=current.prompt_id if current is not None else None,
                          sessions=sorted(self.sessions.copy()))  # copy: atomic, the loop may change it

    def _announce_soon(self) -> None:
        """An extra heartbeat now (a prompt started or finished), off the event loop."""
        cluster = self.cluster
        if cluster is None:
            return

        def announce() -> None:
            try:
                cluster.announce(self.describe())
            except Exception as exc:
                log.debug("cluster: announce failed (%s)", exc)
        asyncio.get_running_loop().run_in_executor(None, announce)

    def _place(self, prompt: dict[str, Any]) -> str | None:
        """Placement of a queued prompt: an idle worker that has the models of its node classes loaded."""
        assert self.cluster is not None and isinstance(self.queue, RedisQueue)
        classes = {str(n.get("class_type")) for n in prompt.values() if isinstance(n, dict)}
        return self.cluster.choose_worker(classes, idle_only=True, busy=lambda w: self.queue.waiting_for(w) > 0)

    def workers(self) -> list[dict[str, Any]]:
        """The cluster's workers as /system_stats and /queue show them (``[]`` without a cluster)."""
        if self.cluster is None:
            return []
        return [asdict(w) for w in self.cluster.workers()]

    def is_queued_run(self, prompt_id: str) -> bool:
        """Whether ``prompt_id`` is a queued prompt running now (here or on another member)."""
        current = self.worker.current if self.worker is not None else None
        return (current is not None and current.prompt_id == prompt_id) or prompt_id in self.remote_running

    def emit_prompt_event(self, event: Event) -> None:
        """Events of queued prompts: to this process's listeners and, in a cluster, to every server."""
        self.emit(event)
        if self.cluster is not None:
            self.cluster.publish_event(event)

    def _on_bus_event(self, message: dict[str, Any]) -> None:
        event = event_from_message(message)
        prompt_id = str(event.data.get("prompt_id", "")) if isinstance(event.data, dict) else ""
        if event.type == "execution_start" and prompt_id:
            self.remote_running.add(prompt_id)
        self.emit(event)
        if event.type == "prompt_done":
            self.remote_running.discard(prompt_id)
            self._queue_changed()

    def _on_control(self, message: dict[str, Any]) -> None:
        if "interrupt" in message and self.worker is not None:
            self.worker.interrupt(message["interrupt"])
        lost = message.get("worker_lost")
        if lost:
            self._worker_lost(str(lost))

    def _queue_changed(self) -> None:
        for listener in list(self.queue_listeners):
            try:
                listener()
            except Exception:
                log.exception("queue listener failed")

    def _worker_lost(self, name: str) -> None:
        for listener in list(self.worker_lost_listeners):
            try:
                listener(name)
            except Exception:
                log.exception("worker-lost listener failed")

    async def _reap_loop(self) -> None:
        """Every heartbeat: a worker whose heartbeat expired has its prompts queued again and its sessions told."""
        assert self.cluster is not None and isinstance(self.queue, RedisQueue)
        cluster, queue = self.cluster, self.queue
        while True:
            await asyncio.sleep(cluster.heartbeat_s)
            try:
                if self.remote_running:  # a "prompt_done" lost with the bus (Redis restarted): the queue knows
                    watched = set(self.remote_running)
                    finished = watched - await asyncio.to_thread(queue.still_queued, watched)
                    if finished:
                        self.remote_running -= finished
                        self._queue_changed()
                lost = await asyncio.to_thread(cluster.lost_workers)
                for name in lost:
                    if name == cluster.name or not await asyncio.to_thread(cluster.claim_reaping, name):
                        continue
                    moved = await asyncio.to_thread(queue.requeue_worker, name)
                    await asyncio.to_thread(cluster.withdraw, name)
                    log.warning("cluster: worker %s stopped answering; %d prompt(s) queued again", name, moved)
                    await asyncio.to_thread(cluster.publish_control, {"worker_lost": name})
                    self._worker_lost(name)
                    self._queue_changed()
            except Exception as exc:  # Redis away: the next round tries again
                log.debug("cluster: reaper round failed (%s)", exc)

    # Events ---------------------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", event.type)

    # Prompts --------------------------------------------------------------------------------------------
    def validate(self, prompt: dict[str, Any], targets: Iterable[str] | None = None) -> ValidationReport:
        return validate(Prompt.from_api(prompt), self.registry, targets)

    def submit(self, prompt: dict[str, Any], extra_data: dict[str, Any] | None = None, client_id: str | None = None,
               front: bool = False, number: float | None = None, targets: Iterable[str] | None = None,
               prompt_id: str | None = None) -> tuple[QueueItem, ValidationReport]:
        """Validate and queue; raises ``PromptInvalid`` (nothing queued) when no output can run. Outputs that
        depend on a broken node are left out (``report.failed_outputs``), as ComfyUI does."""
        report = self.validate(prompt, targets)
        if not report.runnable:
            raise PromptInvalid(report)
        item = self.queue.enqueue(prompt, extra_data or {}, client_id, prompt_id or str(uuid.uuid4()),
                                  list(report.outputs), front, number)
        if self.worker is not None:
            self.worker.wake()
        return item, report

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (any, or ``prompt_id``) here and, in a cluster, on every worker."""
        done = self.worker.interrupt(prompt_id) if self.worker is not None else False
        if self.cluster is not None:
            running = prompt_id is None or prompt_id in self.remote_running
            try:
                self.cluster.publish_control({"interrupt": prompt_id})
            except Exception as exc:
                log.warning("cluster: could not send the interrupt (%s)", exc)
                running = False
            done = done or running
        return done

    # Sessions -------------------------------------------------------------------------------------------
    def open_session(self, prompt: dict[str, Any], session_id: str | None = None,
                     on_media: MediaSink | None = None, meta: dict[str, Any] | None = None) -> Session:
        session_id = session_id or uuid.uuid4().hex
        report = self.validate(prompt)
        if not report.ok:
            raise PromptInvalid(report)
        session = Session(session_id, self.executor, prompt, self.store, self.emit, on_media)
        self.sessions[session_id] = session
        if self.store.get_session(session_id) is None:
            self.store.create_session(session_id, prompt, meta or {})
        return session

    async def close_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            await session.close()
            await asyncio.to_thread(self.store.close_session, session_id)
