"""Who may talk to the server: loopback by default, a token otherwise, and no cross-site browser requests.

- **Token**: when the server has one (always when it listens on a non-loopback address), every request
  carries it as ``Authorization: Bearer <token>``, the ``avatargraph_token`` cookie, or ``?token=`` (which,
  on a page load, also sets the cookie so the editor's own requests carry it).
- **Host** (against DNS rebinding): when bound to loopback, the ``Host`` header must name a loopback host.
- **Origin** (against CSRF): on every state-changing request (POST/PUT/PATCH/DELETE) and on WebSocket
  upgrades, an ``Origin`` header must match the ``Host``; ``Origin: null`` and ``Sec-Fetch-Site: cross-site``
  are refused. Scripts that send no ``Origin`` (urllib, curl) are unaffected.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

TOKEN_COOKIE = "avatargraph_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 in brackets) -> (host, port)."""
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


OFFLINE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; "
               "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
               "font-src 'self' data:; worker-src 'self' blob:; frame-src 'self'; object-src 'none'; "
               "base-uri 'self'; form-action 'self'; connect-src 'self' ws://{host} wss://{host}")


@dataclass(frozen=True)
class SecurityPolicy:
    bind_host: str
    token: str | None = None
    offline: bool = True  # pages may load and contact nothing but this server (Content-Security-Policy)

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.bind_host)

    def host_allowed(self, host_header: str | None) -> bool:
        if not self.loopback_only:
            return True  # reachable by name from elsewhere: the token is the guard
        host, _ = split_host(host_header or "")
        return is_loopback(host)

    def origin_allowed(self, origin: str | None, host_header: str | None, fetch_site: str | None) -> bool:
        if fetch_site == "cross-site":
            return False
        if origin is None:
            return True
        if origin == "null":
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        o_host, o_port = parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)
        h_host, h_port = split_host(host_header or "")
        h_port = h_port or (443 if parts.scheme == "https" else 80)
        same = o_host == h_host or (is_loopback(o_host) and is_loopback(h_host) and self.loopback_only)
        return same and o_port == h_port

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def presented_token(headers: dict[str, str], query: dict[str, list[str]]) -> tuple[str | None, bool]:
    """The token the request carries, and whether it came in the query string."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    if "x-avatargraph-token" in headers:
        return headers["x-avatargraph-token"], False
    if query.get("token"):
        return query["token"][0], True
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:
        return None, False
    morsel = cookie.get(TOKEN_COOKIE)
    return (morsel.value if morsel else None), False


class SecurityMiddleware:
    """Pure ASGI middleware applying :class:`SecurityPolicy` to HTTP requests and WebSocket upgrades."""

    def __init__(self, app: Any, policy: SecurityPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        policy = self.policy
        problem: tuple[int, str] | None = None
        if not policy.host_allowed(headers.get("host")):
            problem = (403, f"Host {headers.get('host')!r} is not allowed: this server only answers to loopback "
                            "names (protection against DNS rebinding)")
        elif (method in STATE_CHANGING or method == "WEBSOCKET") and not policy.origin_allowed(
                headers.get("origin"), headers.get("host"), headers.get("sec-fetch-site")):
            problem = (403, f"cross-origin request from {headers.get('origin')!r} refused (Origin must match Host)")
        token, from_query = presented_token(headers, query)
        if problem is None and not policy.token_ok(token):
            problem = (401, "this server requires a token: send 'Authorization: Bearer <token>' or open the "
                            "page with ?token=<token> (it was printed when the server started)")
        if problem is not None:
            log.warning("refused %s %s: %s", method, scope.get("path"), problem[1])
            body = json.dumps({"error": {"type": "forbidden" if problem[0] == 403 else "unauthorized",
                                         "message": problem[1]}}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if scope["type"] == "websocket":
                if "websocket.http.response" in scope.get("extensions", {}):  # the refusal with its reason
                    await send({"type": "websocket.http.response.start", "status": problem[0], "headers": headers})
                    await send({"type": "websocket.http.response.body", "body": body})
                else:
                    await send({"type": "websocket.close", "code": 1008, "reason": problem[1][:120]})
                return
            await send({"type": "http.response.start", "status": problem[0], "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if policy.token is not None and from_query and scope["type"] == "http":
            send = _with_cookie(send, token or "")
        if policy.offline and scope["type"] == "http":
            send = _with_csp(send, headers.get("host", ""))
        await self.app(scope, receive, send)


def _with_cookie(send: Any, token: str) -> Any:
    cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)
    return wrapped


def _with_csp(send: Any, host: str) -> Any:
    """Pages (HTML) get a Content-Security-Policy that lets them contact this server only: the browser itself
    refuses any request a page or a frontend feature would make to another host (telemetry, release checks,
    cloud APIs, model or template downloads)."""
    host = "".join(c for c in host if c.isalnum() or c in ".:-[]") or "localhost"
    policy = OFFLINE_CSP.format(host=host).encode()

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                message = {**message, "headers": [*headers, (b"content-security-policy", policy)]}
        await send(message)
    return wrapped
