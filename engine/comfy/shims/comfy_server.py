"""``PromptServer`` as ComfyUI packs see it (``from server import PromptServer``).

Packs touch it at import time (``@PromptServer.instance.routes.get("/my_pack/x")``) and while running
(``PromptServer.instance.send_sync("my_pack.progress", {...})``). Here routes and static folders are
recorded (``routes.defs``, ``app.static_dirs``) for the HTTP layer to mount if it chooses, and
``send_sync`` forwards to the event sink the app installs with ``set_event_sink``. No HTTP server is
started and nothing here imports an HTTP framework: ``engine`` knows no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

log = logging.getLogger(__name__)

EventSinkFn = Callable[[str, Any, "str | None"], None]


@dataclass(frozen=True)
class RouteDef:
    method: str
    path: str
    handler: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StaticDef:
    prefix: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class RouteTable:
    """Records route decorators the way ``aiohttp.web.RouteTableDef`` collects them."""

    def __init__(self) -> None:
        self.defs: list[RouteDef | StaticDef] = []

    def route(self, method: str, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.defs.append(RouteDef(method.upper(), path, handler, dict(kwargs)))
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("DELETE", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("HEAD", path, **kwargs)

    def view(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("*", path, **kwargs)

    def static(self, prefix: str, path: str, **kwargs: Any) -> None:
        self.defs.append(StaticDef(prefix, str(path), dict(kwargs)))

    def routes(self) -> list[RouteDef]:
        return [d for d in self.defs if isinstance(d, RouteDef)]

    def __iter__(self) -> Iterator[RouteDef | StaticDef]:
        return iter(self.defs)

    def __len__(self) -> int:
        return len(self.defs)


class _Router:
    def __init__(self, table: RouteTable):
        self._table = table

    def add_route(self, method: str, path: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        self._table.route(method, path, **kwargs)(handler)

    def add_get(self, path: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        self.add_route("GET", path, handler, **kwargs)

    def add_post(self, path: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        self.add_route("POST", path, handler, **kwargs)

    def add_static(self, prefix: str, path: str, **kwargs: Any) -> None:
        self._table.static(prefix, path, **kwargs)


class _App:
    """Stands for ``PromptServer.instance.app`` (an aiohttp Application in ComfyUI): records what packs add."""

    def __init__(self, table: RouteTable):
        self._table = table
        self.router = _Router(table)

    def add_routes(self, routes: Any) -> None:
        for item in routes:
            method = getattr(item, "method", None)
            path = getattr(item, "path", None)
            handler = getattr(item, "handler", None)
            if method and path and handler:
                self._table.route(method, path)(handler)
            else:
                prefix = getattr(item, "prefix", None)
                if prefix is not None:
                    self._table.static(prefix, str(getattr(item, "path", "")))

    @property
    def static_dirs(self) -> list[StaticDef]:
        return [d for d in self._table.defs if isinstance(d, StaticDef)]


class PromptServer:
    """The singleton ComfyUI packs reach through ``PromptServer.instance``."""

    instance: ClassVar[PromptServer]

    def __init__(self) -> None:
        self.routes = RouteTable()
        self.app = _App(self.routes)
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sockets: dict[str, Any] = {}
        self.on_prompt_handlers: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        self.prompt_queue: Any = None
        self._sink: EventSinkFn | None = None

    # App side -------------------------------------------------------------------------------------------
    def set_event_sink(self, sink: EventSinkFn | None) -> None:
        """Where ``send_sync`` delivers: ``sink(event, data, sid)``; it must be safe to call from any thread."""
        self._sink = sink

    def trigger_on_prompt(self, json_data: dict[str, Any]) -> dict[str, Any]:
        """Run the handlers packs registered with ``add_on_prompt_handler`` over a ``POST /prompt`` body."""
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                log.exception("an on-prompt handler of a pack failed; continuing without it")
        return json_data

    # Pack side ------------------------------------------------------------------------------------------
    def add_on_prompt_handler(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.on_prompt_handlers.append(handler)

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        if self._sink is None:
            log.debug("PromptServer.send_sync(%s) with no event sink installed: dropped", event)
            return
        self._sink(event, data, sid if sid is not None else self.client_id)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        self.send_sync(event, data, sid)

    async def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        self.send_sync(event, data, sid)

    def send_progress_text(self, text: str, node_id: str, sid: str | None = None) -> None:
        self.send_sync("progress_text", {"text": text, "node": node_id}, sid)


PromptServer.instance = PromptServer()
