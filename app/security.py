"""Cookies, CSRF, the admin token and the request-size limit.

- The visitor cookie holds a random id and its HMAC: unguessable, unforgeable without the
  server's secret, HttpOnly, SameSite=Lax (Secure behind HTTPS with KNOBS_COOKIE_SECURE).
  Steering sessions belong to a visitor; nobody else can read or change them.
- State-changing forms carry a CSRF token (an HMAC of the visitor id), as a form field
  `csrf` or the header X-CSRF-Token (htmx sends it). JSON endpoints need a JSON body,
  which a cross-site form cannot send without a CORS preflight we never grant.
- Admin pages and endpoints need KNOBS_ADMIN_TOKEN, as `Authorization: Bearer <token>`
  or the cookie that /admin/login sets; compared in constant time. No token configured:
  admin is disabled, not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
VISITOR_COOKIE = "knobs_visitor"
ADMIN_COOKIE = "knobs_admin"
COOKIE_AGE = 180 * 24 * 3600


def new_token(nbytes: int = 32) -> str:
    """An unguessable URL-safe id (32 bytes: 43 characters)."""
    return secrets.token_urlsafe(nbytes)


def mac(secret: str, purpose: str, value: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: str, value: str) -> str:
    return f"{value}.{mac(secret, 'visitor', value)}"


def unsign(secret: str, cookie: str | None) -> str | None:
    """The visitor id in a signed cookie, None if absent or tampered with."""
    if not cookie or "." not in cookie or len(cookie) > 200:
        return None
    value, _, sig = cookie.rpartition(".")
    return value if same(sig, mac(secret, "visitor", value)) else None


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings of any characters (hmac.compare_digest
    refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


def csrf_token(secret: str, visitor: str) -> str:
    return mac(secret, "csrf", visitor)


def cookie_header(name: str, value: str, secure: bool, max_age: int = COOKIE_AGE) -> bytes:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


async def visitor(request: Request) -> str:
    """This request's visitor id; a new one (and its cookie on the response) if none."""
    state = request.state
    if getattr(state, "visitor", None) is None:
        state.visitor = new_token(18)
        state.new_visitor = True
    return str(state.visitor)


def known_visitor(request: Request) -> str | None:
    """The visitor id from a valid cookie, without creating one."""
    return getattr(request.state, "visitor", None)


async def check_csrf(request: Request) -> None:
    """403 unless the form field `csrf` or the X-CSRF-Token header matches the visitor."""
    vid = known_visitor(request)
    sent = request.headers.get("X-CSRF-Token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    secret: str = request.app.state.secret
    if vid is None or sent is None or not same(sent, csrf_token(secret, vid)):
        raise HTTPException(403, "csrf: missing or invalid form token (reload the page)")


ADMIN_AGE = 12 * 3600
"""An admin sign-in lasts this long (s)."""


def admin_cookie(secret: str, token: str, epoch: str, issued: int) -> str:
    """The admin cookie: when it was issued and an HMAC over the token's hash, the
    sign-out epoch and that time. Signing out starts a new epoch, which voids every
    admin cookie issued before, copies included."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f"{issued}.{mac(secret, 'admin', f'{digest}:{epoch}:{issued}')}"


def _admin_epoch(request: Request) -> str:
    from app.db import queries  # the database layer imports this module

    with request.app.state.db.write() as s:
        return queries.secret(s, "admin-epoch")


def is_admin(request: Request) -> bool:
    token: str | None = request.app.state.settings.admin_token
    if not token:
        return False
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and same(auth[7:], token):
        return True
    cookie = request.cookies.get(ADMIN_COOKIE, "")
    issued, _, _ = cookie.partition(".")
    if not (issued.isascii() and issued.isdigit() and len(issued) < 12):
        return False
    if not 0 <= time.time() - int(issued) <= ADMIN_AGE:
        return False
    expected = admin_cookie(request.app.state.secret, token, _admin_epoch(request),
                            int(issued))
    return same(cookie, expected)


def require_admin(request: Request) -> None:
    """403 naming why: admin disabled (no KNOBS_ADMIN_TOKEN) or not signed in. A plain
    `def`: checking the sign-in cookie reads the database, on a worker thread."""
    if not request.app.state.settings.admin_token:
        raise HTTPException(403, "admin is disabled: the server has no KNOBS_ADMIN_TOKEN")
    if not is_admin(request):
        raise HTTPException(403, "admin: sign in at /admin/login or send "
                                 "'Authorization: Bearer <KNOBS_ADMIN_TOKEN>'")


def media_type(content_type: str) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return content_type.split(";")[0].strip().lower()


async def require_json(request: Request) -> None:
    """415 unless the request says it is JSON: a cross-site form or a no-cors fetch
    cannot, so JSON endpoints without a body need no token."""
    if media_type(request.headers.get("Content-Type", "")) != "application/json":
        raise HTTPException(415, "Content-Type: must be application/json")


SAFE_HEAD = re.compile(r"/(healthz|readyz|items(/\d+)?|knobs/\d+|concepts|docs|openapi\.json"
                       r"|api/v1/(users|items|concepts|knobs)(/[^/]+)?|static/.*)?")
"""GETs without side effects (no session opened, no event logged), which HEAD may ask."""


class GuardMiddleware:
    """Pure ASGI: reads the visitor cookie into request.state (and sets it when a handler
    created a visitor), adds the security headers, and refuses request bodies over
    `max_body` bytes with 413 before the handler sees them (a declared Content-Length
    at once; a chunked body is read up to the limit first)."""

    CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
           b"base-uri 'none'; object-src 'none'")
    DOCS_CSP = (b"default-src 'self'; script-src 'self' 'unsafe-inline' "
                b"https://cdn.jsdelivr.net; style-src 'self' https://cdn.jsdelivr.net; "
                b"img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'; "
                b"base-uri 'none'; object-src 'none'")
    """/docs is FastAPI's Swagger UI: an inline start-up script and assets from a CDN."""
    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    ]

    def __init__(self, app: ASGIApp, max_body: int, secure: bool) -> None:
        self.app, self.max_body, self.secure = app, max_body, secure
        self.headers = [*self.HEADERS]
        if secure:               # served over HTTPS: browsers should stay on it
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD" and SAFE_HEAD.fullmatch(scope["path"]) is not None
        if head:                     # a read-only GET answers HEAD: its headers, no body
            scope = {**scope, "method": "GET"}
        state: dict[str, Any] = scope.setdefault("state", {})
        secret: str | None = getattr(scope["app"].state, "secret", None) \
            if "app" in scope else None
        cookie = _cookie(scope, VISITOR_COOKIE)
        state["visitor"] = unsign(secret, cookie) if secret else None
        csp = self.DOCS_CSP if scope["path"] == "/docs" else self.CSP
        extra = [*self.headers, (b"content-security-policy", csp)]
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _too_large(send, self.max_body, extra)
            return
        if length is None and _header(scope, b"transfer-encoding") is not None:
            body = await self._read_chunked(receive)
            if body is None:
                await _too_large(send, self.max_body, extra)
                return
            receive = _replay(body)

        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.body" and head:
                message = {"type": "http.response.body", "body": b"",
                           "more_body": message.get("more_body", False)}
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), *extra]
                if state.get("new_visitor") and secret:
                    headers.append((b"set-cookie", cookie_header(
                        VISITOR_COOKIE, sign(secret, state["visitor"]), self.secure)))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            log.exception("%s %s failed", scope["method"], scope["path"])
            body = b'{"detail":"internal error (logged)"}'
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})

    async def _read_chunked(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit."""
        parts: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts)
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


async def _too_large(send: Send, limit: int, headers: list[tuple[bytes, bytes]]) -> None:
    body = f'{{"detail":"request body: at most {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})
