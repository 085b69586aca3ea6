"""Server-rendered pages: each URL gives the whole page, or its fragment on HX-Request;
bad input is a 404 / 422 page naming the problem; metadata text is escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app import service
from app.main import create_app
from app.settings import Settings

HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
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


class Screen:
    """A steering session opened through /steer, as a browser holds it."""

    def __init__(self, client: TestClient, **params: object) -> None:
        r = client.get("/steer", params=params)
        assert r.status_code == 200, r.text
        self.client, self.url, self.html = client, str(r.url), r.text
        m = re.search(r"/sessions/([\w-]+)$", self.url)
        assert m, self.url
        self.sid = m.group(1)
        self.csrf = re.findall(r'name="csrf" value="([^"]+)"', r.text)[0]

    def knobs(self, html: str | None = None) -> dict[str, tuple[float, str]]:
        html = html or self.html
        keys = re.findall(r'name="kid" value="([^"]+)"', html)
        alphas = re.findall(r'name="ka"[^>]*value="([^"]+)"', html)
        dirs = re.findall(r'<option value="(more|less)"[^>]*selected', html)
        return {k: (float(a), d) for k, a, d in zip(keys, alphas, dirs, strict=True)}

    def post(self, state: dict[str, tuple[float, str]] | None = None, htmx: str = "",
             **extra: str) -> Response:
        data: dict[str, object] = {"csrf": self.csrf, **extra}
        if state is not None:
            data |= {"full": "1", "kid": list(state), "ka": [str(a) for a, _ in state.values()],
                     "kd": [d for _, d in state.values()]}
        headers = {"HX-Request": "true", "HX-Target": htmx} if htmx else {}
        return self.client.post(f"/sessions/{self.sid}/knobs", data=data, headers=headers)

    def reload(self) -> str:
        self.html = self.client.get(f"/sessions/{self.sid}").text
        return self.html


def test_steer_page_seeds_knobs_from_the_users_code(client: TestClient) -> None:
    code = client.get("/api/v1/users/1/code").json()
    screen = Screen(client, user=1)
    keys = [int(k[2:]) for k in screen.knobs()]
    assert keys == [k["neuron"] for k in code["knobs"]][:len(keys)]
    assert ids(screen.html, "steered") == ids(screen.html, "unsteered")  # all knobs at 0
    assert 'type="range"' in screen.html and 'aria-label="strength of' in screen.html


def test_moving_a_knob_returns_the_fragment_with_movement(client: TestClient) -> None:
    screen = Screen(client, user=1)
    frag = screen.post({"c:concept-3": (1.0, "more")}, htmx="recs")
    assert frag.status_code == 200 and "<html" not in frag.text
    assert frag.text.lstrip().startswith('<div id="recs"')
    assert ids(frag.text, "steered") != ids(frag.text, "unsteered")
    assert 'class="moved new"' in frag.text and "why: concept-3" in frag.text
    full = screen.reload()                           # autosaved: a refresh resumes it
    assert screen.knobs(full) == {"c:concept-3": (1.0, "more")}
    assert ids(full, "steered") == ids(frag.text, "steered")


def test_add_remove_and_reset(client: TestClient) -> None:
    screen = Screen(client, user=4)
    own = screen.knobs()
    added = screen.post(add="c:concept-2")
    assert added.status_code == 200 and 'value="c:concept-2"' in added.text
    assert set(own) < set(screen.knobs(added.text))               # own knobs kept
    panel = screen.post(screen.knobs(added.text), htmx="steer-panel",
                        remove="c:concept-2")
    assert panel.text.lstrip().startswith('<section id="steer-panel"')
    assert 'value="c:concept-2"' not in panel.text
    moved = dict.fromkeys(own, (0.4, "more"))
    screen.post(moved)
    fresh = screen.post(reset="1")
    assert screen.knobs(fresh.text) == own                         # all back at 0
    assert ids(fresh.text, "steered") == ids(fresh.text, "unsteered")


def test_the_same_visitor_resumes_and_another_cannot_see_it(client: TestClient,
                                                           settings: Settings) -> None:
    screen = Screen(client, user=2)
    screen.post({"c:concept-1": (0.5, "more")})
    again = Screen(client, user=2)
    assert again.sid == screen.sid and again.knobs() == {"c:concept-1": (0.5, "more")}
    with TestClient(client.app) as stranger:
        r = stranger.get(f"/sessions/{screen.sid}")
        assert r.status_code == 404 and "unknown session" in r.text
        post = stranger.post(f"/sessions/{screen.sid}/knobs",
                             data={"csrf": screen.csrf, "add": "c:concept-2"})
        assert post.status_code == 403                   # not their form token
        mine = Screen(stranger, user=2)
        r = stranger.post(f"/sessions/{screen.sid}/knobs",
                          data={"csrf": mine.csrf, "add": "c:concept-2"})
        assert r.status_code == 404
    assert screen.knobs(screen.reload()) == {"c:concept-1": (0.5, "more")}


def test_a_state_change_needs_the_form_token(client: TestClient) -> None:
    screen = Screen(client, user=1)
    for data in ({"add": "c:concept-2"}, {"add": "c:concept-2", "csrf": "forged"}):
        r = client.post(f"/sessions/{screen.sid}/knobs", data=data)
        assert r.status_code == 403 and "csrf" in r.text
    assert "c:concept-2" not in screen.knobs(screen.reload())


def test_a_new_profile_from_liked_titles(client: TestClient) -> None:
    frag = client.get("/items", params={"q": "item 1", "items": [3]}, headers=HX).text
    assert 'value="3" checked' in frag                   # liked titles stay ticked
    liked = [int(i) for i in re.findall(r'name="items" value="(\d+)"', frag)][:3]
    screen = Screen(client, items=liked)
    assert "Your profile" in screen.html
    assert not set(ids(screen.html, "steered")) & set(liked)
    few = client.get("/steer", params={"items": liked[:2]})
    assert few.status_code == 422 and "at least three" in few.text


def test_bad_knob_forms_are_422_naming_the_field(client: TestClient) -> None:
    screen = Screen(client, user=1)
    for state, names in (({"n:1": (1.5, "more")}, "alpha: must be in [0, 1]"),
                         ({"n:1": (0.1, "up")}, "direction: must be"),
                         ({"x:1": (0.1, "more")}, "key: &#39;x:1&#39; is not")):
        r = screen.post(state)
        assert r.status_code == 422 and names in r.text
    r = screen.post({"n:99": (0.1, "more")})
    assert r.status_code == 404 and "unknown knob 99" in r.text
    r = screen.post(nudge="n:1:+")
    assert r.status_code == 422 and "nudge" in r.text


@pytest.mark.parametrize(("url", "status", "names"), [
    ("/steer?user=99999", 404, "unknown user 99999"),
    ("/steer?user=1&kid=n:1&ka=1.5&kd=more", 422, "alpha: must be in [0, 1]"),
    ("/steer?user=1&kid=n:1&ka=x&kd=more", 422, "is not a number"),
    ("/steer?user=1&kid=n:1&ka=0.1&kd=up", 422, "direction: must be"),
    ("/steer?user=1&kid=n:99&ka=0.1&kd=more", 404, "unknown knob 99"),
    ("/sessions/nosuchsession", 404, "unknown session"),
    ("/p/nosuchlink", 404, "unknown permalink"),
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
    screen = Screen(client, user=1)
    r = screen.post(add="c:<script>alert(1)</script>")
    assert r.status_code == 404
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text
    found = client.get("/concepts", params={"q": "<b>x</b>"}, headers=HX).text
    assert "<b>x</b>" not in found and "&lt;b&gt;x&lt;/b&gt;" in found


def test_knob_page_shows_the_neuron(client: TestClient) -> None:
    page = client.get("/knobs/3").text
    assert "Lifts most" in page and "Activated by" in page and "Neighbours" in page
    assert "<svg" in page and "% of" in page
    assert client.get("/items/1").status_code == 200


def test_an_item_click_is_logged_through_its_link(client: TestClient) -> None:
    screen = Screen(client, user=6)
    link = re.search(r'href="(/sessions/[\w-]+/click/(\d+)\?t=[\w-]+)"', screen.html)
    assert link
    r = client.get(link.group(1), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/items/{link.group(2)}"
    bare = client.get(link.group(1).split("?")[0], follow_redirects=False)
    assert bare.status_code == 403 and "link token" in bare.text
    with TestClient(client.app) as other:
        assert other.get(link.group(1), follow_redirects=False).status_code == 403


def test_a_permalink_keeps_its_knobs_neurons(client: TestClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen as resolved: a later change to how concepts resolve leaves it as it was."""
    screen = Screen(client, user=7)
    screen.post({"c:concept-3": (0.6, "more"), "n:2": (0.3, "less")})
    r = client.post(f"/sessions/{screen.sid}/permalink", data={"csrf": screen.csrf},
                    follow_redirects=False)
    link = r.headers["location"]
    first = client.get(link)
    monkeypatch.setattr(service, "CONCEPT_NEURONS", 1)
    monkeypatch.setattr(service, "CONCEPT_SHARE", 10_000)
    again = client.get(link)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert ids(again.text, "steered") != ids(again.text, "unsteered")
