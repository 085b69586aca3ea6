"""Security headers on every response, the page, the API, the errors and the static
files alike; the API docs keep working under their own policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
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
