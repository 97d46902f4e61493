"""The engine assembled: registry, folders, store, model manager, executor, queue worker and sessions.

The server and the CLI both build one ``Runtime``; it holds no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.cache import OutputCache
from engine.events import Event, EventSink
from engine.executor import Executor
from engine.folders import PROJECT_ROOT, folders
from engine.model_manager import ModelManager
from engine.prompt import Prompt
from engine.registry import NodeRegistry, registry as default_registry
from engine.session import MediaSink, Session
from engine.store import QueueItem, Store
from engine.validation import PromptInvalid, ValidationReport, validate
from engine.worker import PromptWorker

log = logging.getLogger(__name__)


@dataclass
class RuntimeConfig:
    data_dir: Path = PROJECT_ROOT / "data"
    models_dir: Path | None = None
    vram_budget_gb: float | None = None
    enabled_packs: set[str] = field(default_factory=set)
    custom_nodes_dir: Path = PROJECT_ROOT / "custom_nodes"
    builtin_packages: tuple[str, ...] = ("nodes",)
    cache_entries: int = 512


class Runtime:
    def __init__(self, config: RuntimeConfig, registry: NodeRegistry | None = None):
        self.config = config
        folders.configure(config.data_dir, config.models_dir)
        self.registry = registry if registry is not None else default_registry
        self.store = Store(Path(config.data_dir) / "avatargraph.sqlite3")
        budget = int(config.vram_budget_gb * 2**30) if config.vram_budget_gb else None
        self.models = ModelManager(vram_budget_bytes=budget)
        self.executor = Executor(self.registry, OutputCache(max_entries=config.cache_entries), self.models)
        self.listeners: list[EventSink] = []
        self.worker: PromptWorker | None = None
        self.sessions: dict[str, Session] = {}
        self.pack_report: Any = None

    # Set-up ---------------------------------------------------------------------------------------------
    def load_nodes(self) -> None:
        for package in self.config.builtin_packages:
            self.registry.discover(package)  # idempotent: modules are imported once
        from engine.packs import load_packs  # packs are optional machinery: import on use

        enabled = set(self.config.enabled_packs) | set(self.store.get_setting("packs.enabled", default=[]) or [])
        self.pack_report = load_packs(self.registry, self.config.custom_nodes_dir, enabled)
        log.info("%s", self.pack_report.summary())
        from engine.comfy_shims.comfy import model_management

        model_management.set_interrupt_handler(lambda on: self.interrupt() if on else None)

    async def start(self, local_worker: bool = True) -> None:
        if local_worker:
            self.worker = PromptWorker(self.store, self.executor, self.emit)
            self.worker.start()

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
        if self.worker is not None:
            await self.worker.stop()
        self.store.close()

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
        """Validate and queue; raises ``PromptInvalid`` (nothing queued) when the prompt has problems."""
        report = self.validate(prompt, targets)
        if not report.ok:
            raise PromptInvalid(report)
        item = self.store.enqueue(prompt, extra_data or {}, client_id, prompt_id or str(uuid.uuid4()),
                                  list(report.outputs), front, number)
        if self.worker is not None:
            self.worker.wake()
        return item, report

    def interrupt(self, prompt_id: str | None = None) -> bool:
        return self.worker.interrupt(prompt_id) if self.worker is not None else False

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
