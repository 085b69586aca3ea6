"""Studies end to end through the pages: admin sign-in with the token (absent token =
admin disabled), a study with conditions, balanced assignment, consent, a profile, the
steering screen in the participant's condition, a completion code, CSV / JSON export;
editorial presets shown as labelled, removable knobs."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

TOKEN = "s3cret-admin-token-for-tests"


@pytest.fixture(scope="module")
def app_settings(bundle_dir: Path, db_url: str) -> Settings:
    return Settings(bundle=bundle_dir, device="cpu", database_url=db_url, admin_token=TOKEN)


@pytest.fixture(scope="module")
def app(app_settings: Settings) -> Iterator[object]:
    application = create_app(app_settings)
    with TestClient(application):
        yield application


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


@pytest.fixture(scope="module")
def admin(app: object) -> Iterator[TestClient]:
    with TestClient(app) as c:  # type: ignore[arg-type]
        page = c.get("/admin/login")
        r = c.post("/admin/login", data={"csrf": csrf_of(page.text), "token": TOKEN})
        assert r.status_code == 200 and "Studies" in r.text
        yield c


def post(c: TestClient, url: str, page_url: str, **data: object) -> object:
    return c.post(url, data={"csrf": csrf_of(c.get(page_url).text), **data})


def test_admin_needs_the_token(app: object, bundle_dir: Path, db_url: str) -> None:
    with TestClient(app) as c:  # type: ignore[arg-type]
        r = c.get("/admin")
        assert r.status_code == 403 and "sign in" in r.text
        assert c.get("/admin/studies/x/events.csv").status_code == 403
        page = c.get("/admin/login")
        wrong = c.post("/admin/login", data={"csrf": csrf_of(page.text), "token": "nope" * 5})
        assert wrong.status_code == 403 and "wrong token" in wrong.text
        assert c.get("/admin", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/admin", headers={"Authorization": "Bearer x" + TOKEN}).status_code == 403
    disabled = create_app(Settings(bundle=bundle_dir, device="cpu", database_url=db_url))
    with TestClient(disabled) as c:
        r = c.get("/admin", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403 and "admin is disabled" in r.text
        assert c.get("/admin/login").status_code == 403


def join(app: object, slug: str, pid: str) -> tuple[TestClient, str]:
    """A participant who consents; (their client, their condition's page)."""
    c = TestClient(app)  # type: ignore[arg-type]
    consent = c.get(f"/study/{slug}", params={"pid": pid})
    assert consent.status_code == 200 and "I agree" in consent.text
    r = c.post(f"/study/{slug}/consent", data={"csrf": csrf_of(consent.text), "pid": pid})
    assert r.status_code == 200 and "Which titles do you like?" in r.text
    r = c.post(f"/study/{slug}/start", data={"csrf": csrf_of(r.text), "items": [1, 2, 3, 4]})
    assert r.status_code == 200, r.text
    return c, r.text


def test_a_study_from_consent_to_completion_code(app: object, admin: TestClient) -> None:
    r = post(admin, "/admin/studies", "/admin", slug="knob-study", title="Movie picks",
             consent="We record what you click.\nYou can stop at any time.",
             conditions="sliders = sliders\nbuttons = buttons\nplain = none", n=10)
    assert r.status_code == 200 and "Movie picks" in r.text  # type: ignore[attr-defined]
    people = [join(app, "knob-study", f"P{i}") for i in range(6)]
    kinds = Counter("type=\"range\"" in html and "sliders" or "− less" in html and "buttons"
                    or "plain" for _, html in people)
    assert kinds == {"sliders": 2, "buttons": 2, "plain": 2}          # balanced
    for _, html in people:
        assert '<nav>' not in html and 'class="study"' in html       # minimal chrome
    slider_client, slider_page = next(p for p in people if 'type="range"' in p[1])
    plain_client, plain_page = next(p for p in people if 'name="kid"' not in p[1])
    button_client, button_page = next(p for p in people if "− less" in p[1])
    assert "Recommended for you" in plain_page and 'id="unsteered"' not in plain_page

    # a participant in the buttons condition presses "more" twice
    sid = re.search(r'/sessions/([\w-]+)/knobs', button_page).group(1)  # type: ignore[union-attr]
    key = re.findall(r'name="kid" value="([^"]+)"', button_page)[0]
    for _ in range(2):
        r = button_client.post(f"/sessions/{sid}/knobs",
                               data={"csrf": csrf_of(button_page), "nudge": f"{key}:+"},
                               headers={"HX-Request": "true", "HX-Target": "steer-panel"})
        assert r.status_code == 200 and r.text.lstrip().startswith('<section id="steer-panel"')
    assert "+0.2" in r.text
    # the plain condition has no knobs to change; nobody reads another's session
    psid = re.search(r'/sessions/([\w-]+)/click', plain_page).group(1)  # type: ignore[union-attr]
    r = plain_client.post(f"/sessions/{psid}/knobs",
                          data={"csrf": csrf_of(plain_page), "add": "c:concept-1"})
    assert r.status_code == 422 and "none to change" in r.text
    assert slider_client.get(f"/sessions/{sid}").status_code == 404
    assert slider_client.get(f"/api/v1/sessions/{sid}").status_code == 404
    # a click, then done: a completion code, and a refresh stays on it
    item = re.findall(r'data-item="(\d+)"', plain_page)[0]
    assert plain_client.post(f"/sessions/{psid}/click/{item}",
                             headers={"X-CSRF-Token": csrf_of(plain_page)}).status_code == 204
    done = plain_client.post("/study/knob-study/complete", data={"csrf": csrf_of(plain_page)})
    code = re.search(r'id="code">(\w+)<', done.text)
    assert code and plain_client.get("/study/knob-study").url.path.endswith("/done")
    assert plain_client.get("/study/knob-study/steer").url.path.endswith("/done")

    # the admin sees everyone and exports their events
    page = admin.get("/admin/studies/knob-study").text
    assert all(f"<td>P{i}</td>" in page for i in range(6)) and code.group(1) in page
    rows = list(csv.DictReader(io.StringIO(
        admin.get("/admin/studies/knob-study/events.csv").text)))
    as_json = admin.get("/admin/studies/knob-study/events.json").json()
    assert [r["id"] for r in rows] == [str(e["id"]) for e in as_json]
    types = Counter((e["participant_external_id"], e["type"]) for e in as_json)
    assert all(types[(f"P{i}", "consent")] == 1 for i in range(6))
    for i in range(6):
        pages = [e["page"] for e in as_json
                 if e["participant_external_id"] == f"P{i}" and e["type"] == "page_view"]
        assert pages[:2] == ["profile", "steer"]
    plain_pid = next(e["participant_external_id"] for e in as_json if e["session"] == psid)
    assert types[(plain_pid, "item_click")] == 1 and types[(plain_pid, "complete")] == 1
    moves = [e for e in as_json if e["session"] == sid and e["type"] == "knob_move"]
    assert [m["value"] for m in moves] == [0.1, 0.2] and all(len(m["shown"]) == 10
                                                               for m in moves)
    assert {e["condition"] for e in as_json} == {"sliders", "buttons", "plain"}
    csv_click = next(r for r in rows if r["type"] == "item_click")
    assert csv_click["item"] == item and item in csv_click["shown"].split()


def test_presets_are_labelled_removable_knobs(app: object, admin: TestClient) -> None:
    r = post(admin, "/admin/presets", "/admin", name="Concept-2 week",
             targets="concept-2, #3", alpha=0.4, direction="more", scope="everyone")
    assert r.status_code == 200 and "Concept-2 week" in r.text  # type: ignore[attr-defined]
    bad = post(admin, "/admin/presets", "/admin", name="x", targets="no-such-concept",
               alpha=0.4)
    assert bad.status_code == 404 and "unknown concept" in bad.text  # type: ignore[attr-defined]
    with TestClient(app) as c:  # type: ignore[arg-type]
        page = c.get("/steer", params={"user": 5})
        assert "Concept-2 week" in page.text and "editor's pick" in page.text
        key = re.search(r'name="kid" value="(p:\d+)"', page.text).group(1)  # type: ignore[union-attr]
        sid = str(page.url).rsplit("/", 1)[1]
        state = c.get(f"/api/v1/sessions/{sid}").json()
        preset = next(k for k in state["knobs"] if k["key"] == key)
        assert preset["alpha"] == 0.4 and preset["kind"] == "preset"
        assert state["steered"] != state["unsteered"]                # it steers at once
        r = c.post(f"/sessions/{sid}/knobs", data={"csrf": csrf_of(page.text), "remove": key})
        assert key not in r.text
        assert key not in c.get(f"/sessions/{sid}").text              # removed stays removed
    # a preset for a study condition reaches only that condition
    post(admin, "/admin/studies", "/admin", slug="preset-study", title="P",
         consent="ok", conditions="a = sliders\nb = sliders")
    post(admin, "/admin/presets", "/admin", name="Only for a", targets="concept-4",
         alpha=0.3, scope="preset-study/a")
    pages = [join(app, "preset-study", f"Q{i}")[1] for i in range(2)]
    assert sorted("Only for a" in p for p in pages) == [False, True]
    assert not any("Concept-2 week" in p for p in pages)             # studies are controlled


def test_joining_races_and_shortcuts(app: object, admin: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor
    post(admin, "/admin/studies", "/admin", slug="race", title="R", consent="ok",
         conditions="a = sliders\nb = buttons\nc = none")

    def consent(i: int) -> TestClient:
        c = TestClient(app)  # type: ignore[arg-type]
        page = c.get("/study/race")
        r = c.post("/study/race/consent", data={"csrf": csrf_of(page.text), "pid": f"R{i}"})
        assert r.status_code == 200
        return c

    with ThreadPoolExecutor(6) as pool:
        clients = list(pool.map(consent, range(12)))
    table = admin.get("/admin/studies/race").text
    assert Counter(re.findall(r"<td>([abc])</td>", table)) == {"a": 4, "b": 4, "c": 4}

    c = clients[0]
    csrf = csrf_of(c.get("/study/race/profile").text)
    done = c.post("/study/race/complete", data={"csrf": csrf})       # nothing done yet
    assert "Which titles do you like?" in done.text

    def start(_: int) -> int:
        return c.post("/study/race/start", data={"csrf": csrf, "items": [1, 2, 3]}).status_code

    with ThreadPoolExecutor(4) as pool:                               # a double submit
        assert set(pool.map(start, range(4))) == {200}
    events = admin.get("/admin/studies/race/events.json").json()
    mine = {e["session"] for e in events if e["participant_external_id"] == "R0"} - {None}
    assert len(mine) == 1
    views = [e["page"] for e in events if e["participant_external_id"] == "R0"
             and e["type"] == "page_view"]
    assert views[:1] == ["profile"] and "steer" in views
    assert all(e["at"].endswith("+00:00") for e in events)           # UTC on every database


def test_a_closed_study_takes_nobody_new_but_lets_members_finish(app: object,
                                                                admin: TestClient) -> None:
    post(admin, "/admin/studies", "/admin", slug="closing", title="C", consent="ok",
         conditions="only = none")
    member, page = join(app, "closing", "M1")
    post(admin, "/admin/studies/closing/active", "/admin/studies/closing", active="false")
    with TestClient(app) as late:  # type: ignore[arg-type]
        r = late.get("/study/closing")
        assert r.status_code == 404 and "closed" in r.text
        token = csrf_of(late.get("/admin/login").text)
        r = late.post("/study/closing/consent", data={"csrf": token})
        assert r.status_code == 404 and "closed" in r.text
    done = member.post("/study/closing/complete", data={"csrf": csrf_of(page)})
    assert done.status_code == 200 and 'id="code"' in done.text
    assert 'id="code"' in member.get("/study/closing/done").text


def test_a_participant_cannot_take_another_conditions_preset(app: object,
                                                              admin: TestClient) -> None:
    post(admin, "/admin/studies", "/admin", slug="guarded", title="G", consent="ok",
         conditions="x = sliders\ny = sliders\nz = none")
    r = post(admin, "/admin/presets", "/admin", name="Only y", targets="concept-5",
             alpha=0.3, scope="guarded/y")
    assert "Only y" in r.text  # type: ignore[attr-defined]
    r = post(admin, "/admin/presets", "/admin", name="For z", targets="concept-5",
             alpha=0.3, scope="guarded/z")
    assert r.status_code == 422 and "shows no knobs" in r.text  # type: ignore[attr-defined]
    preset = re.search(r"Only y</td>.*?/admin/presets/(\d+)/active", admin.get("/admin").text,
                       re.S)
    assert preset
    c, page = join(app, "guarded", "G1")                    # the first condition: x
    assert "Only y" not in page
    sid = re.search(r"/sessions/([\w-]+)/knobs", page).group(1)  # type: ignore[union-attr]
    r = c.post(f"/sessions/{sid}/knobs",
               data={"csrf": csrf_of(page), "add": f"p:{preset.group(1)}"})
    assert r.status_code == 422 and "not offered on this screen" in r.text
    # the study screen frozen: its layout, controls and title
    link = c.post(f"/sessions/{sid}/permalink", data={"csrf": csrf_of(page)})
    assert link.status_code == 200 and "<title>G</title>" in link.text
    assert 'class="study"' in link.text and 'type="range"' in link.text


def test_admin_forms_name_what_is_wrong(admin: TestClient, app: object) -> None:
    cases = [({"slug": "ok-slug", "title": "  ", "consent": "x", "conditions": "a = none"},
              "title: must be non-empty"),
             ({"slug": "ok-slug", "title": "t\x00", "consent": "x", "conditions": "a = none"},
              "title: must be non-empty"),
             ({"slug": "Bad Slug", "title": "t", "consent": "x", "conditions": "a = none"},
              "slug:"),
             ({"slug": "ok-slug", "title": "t", "consent": "x", "conditions": "a = knobs"},
              "conditions: line 1")]
    for data, names in cases:
        r = post(admin, "/admin/studies", "/admin", **data)
        assert r.status_code == 422 and names in r.text, (data, r.text[-400:])  # type: ignore[attr-defined]
    r = post(admin, "/admin/presets", "/admin", name="n", targets="#¹", alpha=0.1)
    assert r.status_code == 404 and "unknown concept" in r.text  # type: ignore[attr-defined]
    r = admin.post("/admin/presets/99999999999/active",
                   data={"csrf": csrf_of(admin.get("/admin").text), "active": "false"})
    assert r.status_code == 422
    for path in ("/admin/studies/a%00b", "/study/a%00b", "/p/a%00b", "/sessions/a%00b"):
        assert admin.get(path).status_code == 404, path
    r = admin.get("/concepts", params={"q": "concept", "session": "../study/x/complete?"})
    assert r.status_code == 404
    with TestClient(app) as other:  # type: ignore[arg-type]
        mine = other.get("/steer", params={"user": 1})
        sid = str(mine.url).rsplit("/", 1)[1]
    assert admin.get("/concepts", params={"q": "c", "session": sid}).status_code == 404


def test_signing_out_voids_every_admin_cookie(app: object) -> None:
    with TestClient(app) as a, TestClient(app) as b:  # type: ignore[arg-type]
        for c in (a, b):
            page = c.get("/admin/login")
            c.post("/admin/login", data={"csrf": csrf_of(page.text), "token": TOKEN})
            assert c.get("/admin").status_code == 200
        stolen = a.cookies["knobs_admin"]
        r = a.post("/admin/logout", data={"csrf": csrf_of(a.get("/admin").text)})
        assert r.status_code == 200
        assert b.get("/admin").status_code == 403                 # signed out everywhere
        b.cookies.set("knobs_admin", stolen)
        assert b.get("/admin").status_code == 403
