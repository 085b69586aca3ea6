"""Server-rendered pages: each URL gives the whole page, or its fragment on HX-Request;
bad input is a 404 / 422 page naming the problem; metadata text is escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def client(bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(bundle=bundle_dir, device="cpu"))) as c:
        yield c


def ids(html: str, list_id: str) -> list[int]:
    block = re.search(rf'<ol class="recs" id="{list_id}">(.*?)</ol>', html, re.S)
    assert block, list_id
    return [int(i) for i in re.findall(r'data-item="(\d+)"', block.group(1))]


def test_home_page_and_its_user_fragment(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text and 'id="users"' in page.text
    assert "/static/vendor/htmx.min.js" in page.text
    frag = client.get("/", params={"q": "1"}, headers=HX)
    assert "<html" not in frag.text and frag.text.lstrip().startswith('<ul id="users"')
    assert all(u.startswith("1") for u in re.findall(r"/steer\?user=(\d+)", frag.text))


def test_steer_page_seeds_knobs_from_the_users_code(client: TestClient) -> None:
    code = client.get("/api/v1/users/1/code").json()
    page = client.get("/steer", params={"user": 1}).text
    keys = re.findall(r'name="kid" value="n:(\d+)"', page)
    assert [int(k) for k in keys] == [k["neuron"] for k in code["knobs"]][:len(keys)]
    assert ids(page, "steered") == ids(page, "unsteered")          # all knobs at 0
    assert 'type="range"' in page and 'aria-label="strength of' in page


def test_moving_a_knob_returns_the_fragment_with_movement(client: TestClient) -> None:
    params = {"user": 1, "seeded": 1, "kid": "c:concept-3", "ka": "1", "kd": "more"}
    frag = client.get("/steer", params=params, headers=HX)
    assert frag.status_code == 200 and "<html" not in frag.text
    assert frag.text.lstrip().startswith('<div id="recs"')
    assert ids(frag.text, "steered") != ids(frag.text, "unsteered")
    assert 'class="moved new"' in frag.text and "why: concept-3" in frag.text
    full = client.get("/steer", params=params)
    assert "<html" in full.text and ids(full.text, "steered") == ids(frag.text, "steered")


def test_add_remove_and_reset(client: TestClient) -> None:
    page = client.get("/steer", params={"user": 1, "add": "c:concept-2"}).text
    assert 'value="c:concept-2"' in page
    assert len(re.findall(r'name="kid" value="n:', page)) > 0     # own knobs kept
    remove = re.search(r'href="/steer\?([^"]*remove=c%3Aconcept-2)"', page)
    assert remove
    after = client.get("/steer?" + remove.group(1).replace("&amp;", "&")).text
    assert 'value="c:concept-2"' not in after
    reset = re.search(r'href="/steer\?([^"]*reset=1)"', page)
    assert reset
    fresh = client.get("/steer?" + reset.group(1).replace("&amp;", "&")).text
    assert 'value="c:concept-2"' not in fresh
    sliders = re.findall(r'name="ka"[^>]*value="([^"]+)"', fresh)
    assert sliders and all(float(v) == 0.0 for v in sliders)


def test_a_new_profile_from_liked_titles(client: TestClient) -> None:
    frag = client.get("/items", params={"q": "item 1", "items": [3]}, headers=HX).text
    assert 'value="3" checked' in frag                   # liked titles stay ticked
    liked = [int(i) for i in re.findall(r'name="items" value="(\d+)"', frag)][:3]
    page = client.get("/steer", params={"items": liked})
    assert page.status_code == 200 and "Your profile" in page.text
    assert not set(ids(page.text, "steered")) & set(liked)
    few = client.get("/steer", params={"items": liked[:2]})
    assert few.status_code == 422 and "at least three" in few.text


@pytest.mark.parametrize(("url", "status", "names"), [
    ("/steer?user=99999", 404, "unknown user 99999"),
    ("/steer?user=1&seeded=1&kid=n:1&ka=1.5&kd=more", 422, "alpha must be in [0, 1]"),
    ("/steer?user=1&seeded=1&kid=n:1&ka=x&kd=more", 422, "is not a number"),
    ("/steer?user=1&seeded=1&kid=n:1&ka=0.1&kd=up", 422, "direction must be"),
    ("/steer?user=1&seeded=1&kid=n:99&ka=0.1&kd=more", 404, "unknown knob 99"),
    ("/steer?user=1&n=0", 422, "n:"),
    ("/steer", 422, "give a user"),
    ("/knobs/48", 404, "unknown knob 48"),
    ("/items/99999", 404, "unknown item 99999"),
])
def test_bad_page_input_is_a_page_naming_it(client: TestClient, url: str, status: int,
                                            names: str) -> None:
    r = client.get(url)
    assert r.status_code == status and names in r.text and "<html" in r.text
    frag = client.get(url, headers=HX)
    assert frag.status_code == status and "<html" not in frag.text and names in frag.text


def test_user_text_is_escaped(client: TestClient) -> None:
    r = client.get("/steer", params={"user": 1, "add": "c:<script>alert(1)</script>"})
    assert r.status_code == 404
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text
    found = client.get("/concepts", params={"q": "<b>x</b>"}, headers=HX).text
    assert "<b>x</b>" not in found and "&lt;b&gt;x&lt;/b&gt;" in found


def test_knob_page_shows_the_neuron(client: TestClient) -> None:
    page = client.get("/knobs/3").text
    assert "Lifts most" in page and "Activated by" in page and "Neighbours" in page
    assert "<svg" in page and "% of" in page
    assert client.get("/items/1").status_code == 200
