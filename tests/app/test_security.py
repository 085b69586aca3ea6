"""Security headers on every response, the page, the API, the errors and the static
files alike; the API docs keep working under their own policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.security import same
from app.settings import Settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"max_body_bytes": 2048}))) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200), ("GET", "/steer?user=1", 200), ("GET", "/knobs/3", 200),
    ("GET", "/api/v1/users?limit=2", 200), ("GET", "/nowhere", 404),
    ("GET", "/api/v1/items/999999", 404), ("GET", "/static/css/knobs.css", 200),
    ("POST", "/api/v1/recommendations", 413), ("GET", "/admin", 403),
])
def test_every_response_carries_the_security_headers(client: TestClient, method: str,
                                                     path: str, status: int) -> None:
    body = b'{"user": 1, "n": 5, "pad": "' + b"x" * 4000 + b'"}' if status == 413 else None
    r = client.request(method, path, content=body,
                       headers={"Content-Type": "application/json"} if body else {})
    assert r.status_code == status
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in r.headers       # plain HTTP here


def test_pages_have_no_inline_script(client: TestClient) -> None:
    for path in ("/", "/steer?user=1", "/knobs/3", "/items?q=item", "/concepts?q=c"):
        html = client.get(path).text
        assert "<script>" not in html and " on" + "input=" not in html
        assert "onchange=" not in html and "onclick=" not in html


def test_the_docs_page_gets_its_own_policy(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "cdn.jsdelivr.net" in r.headers["content-security-policy"]


def test_secure_cookies_and_hsts_behind_https(settings: Settings) -> None:
    secure = settings.model_copy(update={"cookie_secure": True})
    with TestClient(create_app(secure)) as c:
        r = c.get("/steer?user=1", follow_redirects=False)
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_odd_bytes_in_cookies_tokens_and_bodies_are_refused_not_500(
        client: TestClient) -> None:
    r = client.get("/steer?user=1", headers={"Cookie": b"knobs_visitor=a.\xc3\xa9"},  # type: ignore[dict-item]
                   follow_redirects=False)
    assert r.status_code == 303 and "knobs_visitor=" in r.headers["set-cookie"]  # a new one
    with TestClient(client.app) as c:
        page = c.get("/steer?user=1")
        sid = str(page.url).rsplit("/", 1)[1]
        for token in ("é", "\u2603" * 40):
            r = c.post(f"/sessions/{sid}/knobs", data={"csrf": token, "add": "c:concept-1"})
            assert r.status_code == 403
            r = c.post(f"/sessions/{sid}/knobs", data={"add": "c:concept-1"},
                       headers={"X-CSRF-Token": token.encode()})  # type: ignore[dict-item]
            assert r.status_code == 403
        assert c.get(f"/sessions/{sid}/click/1", params={"t": "é"},
                     follow_redirects=False).status_code == 403
    for body in (b'{"user":1,"knobs":[{"neuron":1,"alpha":NaN}]}', b'{"user":1e400}',
                 b'{"user":1,"knobs":[{"concept":"\\ud800","alpha":0.5}]}',
                 b'{"user": true}', b'{"user": "1"}', b'{"user": 1, "extra": 2}'):
        r = client.post("/api/v1/recommendations", content=body,
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (body, r.status_code)
        assert all("input" not in e for e in r.json()["detail"])   # nothing echoed back


def test_an_unexpected_error_is_a_500_with_the_headers(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        c.app.state.engine = object()           # /readyz now fails inside
        r = c.get("/readyz")
        assert r.status_code == 500 and r.json() == {"detail": "internal error (logged)"}
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_head_answers_read_only_gets(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/", "/knobs/3", "/api/v1/users", "/static/js/knobs.js"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", path
        assert "content-security-policy" in r.headers
    assert client.head("/steer?user=1").status_code == 405    # opens a session: no HEAD


@pytest.mark.parametrize(("a", "b", "equal"), [
    ("token", "token", True), ("token", "tokem", False), ("é", "é", True),
    ("\ud800", "\ud800", True), ("\ud800", "\udc80", False), ("\udc80", "\x80", False),
])
def test_constant_time_compare_takes_any_string(a: str, b: str, equal: bool) -> None:
    """Every str, lone surrogates included, compares without raising."""
    assert same(a, b) is equal
