"""Hostile content: a bundle trained on data whose titles, genres, tags, directors and
authors carry HTML and script payloads, quotes, template syntax, very long strings and odd
unicode. Every page shows them inert (escaped) and intact; JSON carries them verbatim;
no page has a script beyond our own two."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from markupsafe import escape

from app.main import create_app
from app.settings import Settings
from models.bundle import save_bundle
from models.data.datasets import load_dataset
from models.pipeline import label_knobs, train_models
from tests.app.conftest import CFG, migrated

TITLES = [
    '<script>alert("title")</script>',
    '"><img src=x onerror=alert(1)>',
    "It's a \"quoted\" & <b>bold</b> title",
    "{{ 7*7 }} {% raw %} ${7*7}",
    "</textarea><svg onload=alert(2)>",
    "javascript:alert(3)",
    "\u202egnp.exe \u200d zero\u200bwidth 🎬 café ﷽",
    "L" * 3000 + "<i>end</i>",
]
CONCEPTS = {                       # the planted concepts renamed (genres and tags)
    "concept-1": "<script>alert('tag')</script>",
    "concept-2": '"quoted" & \'apos\' <u>',
    "concept-3": "{{ config }}",
    "concept-4": "ünï<code>cödé</code> 🎭",
}
DIRECTOR = "<b onmouseover=alert(4)>Dir</b>"
AUTHOR = "<em onclick=alert(5)>Au</em> & {{ co }}"
PAGES_SCRIPTS = 2          # htmx and knobs.js, both from /static


@pytest.fixture(scope="module")
def hostile_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset("synthetic")
    cat = ds.catalog.copy()
    cat["title"] = [TITLES[i % len(TITLES)] + f" #{i}" for i in range(len(cat))]

    def rename(names: list[str]) -> list[str]:
        return [CONCEPTS.get(n, n) for n in names]

    cat["genres"] = cat["genres"].map(rename)
    cat["tags"] = cat["tags"].map(rename)
    cat["directors"] = [[DIRECTOR] if i % 2 else [] for i in range(len(cat))]
    cat["authors"] = [[AUTHOR] if i % 2 == 0 else [] for i in range(len(cat))]
    tags = ds.tag_events.assign(tag=ds.tag_events["tag"].map(lambda t: CONCEPTS.get(t, t)))
    dev = torch.device("cpu")
    trained = train_models(ds.interactions, CFG, dev, progress=False)
    concepts, settings = label_knobs(trained.elsa, trained.sae, ds.interactions, cat, tags, dev)
    out = tmp_path_factory.mktemp("hostile") / "bundle"
    save_bundle(out, dataset="synthetic", elsa=trained.elsa, sae=trained.sae,
                train_config=CFG, data=ds.interactions, catalog=cat,
                quality=trained.quality, concepts=concepts, concept_settings=settings)
    return out


@pytest.fixture(scope="module")
def client(hostile_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    url = migrated(f"sqlite:///{tmp_path_factory.mktemp('db') / 'knobs.db'}")
    settings = Settings(bundle=hostile_bundle, device="cpu", database_url=url,
                        admin_token="hostile-admin-token")
    with TestClient(create_app(settings)) as c:
        yield c


def inert(html: str) -> None:
    """No script, handler or markup of the payloads made it into the page as markup."""
    assert len(re.findall(r"<script", html)) == PAGES_SCRIPTS, html[:300]
    assert all(src.startswith("/static/") for src in re.findall(r'<script src="([^"]+)"', html))
    for bad in ("<img src=x", "<svg onload", "<b onmouseover", "<u>", "<code>cödé",
                "alert(\"title\")</script>", "<b>bold</b>", "<i>end</i>", "<em onclick"):
        assert bad not in html, bad


def test_every_page_shows_hostile_metadata_inert_and_intact(client: TestClient) -> None:
    shown: list[str] = []
    pages = ["/", "/items?q=%3Cscript", "/items?q=quoted", "/items/1", "/items/2",
             "/items/7", "/items/8", "/concepts?q=%3C", "/concepts?q=%22",
             "/concepts?q=%7B", "/steer?user=1", "/steer?user=2"]
    neurons = client.get("/api/v1/users/1/code").json()["knobs"]
    pages += [f"/knobs/{k['neuron']}" for k in neurons[:6]]
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        inert(r.text)
        shown.append(r.text)
    html = "\n".join(shown)
    for title in TITLES:                                     # intact, as text
        assert str(escape(title)) in html, title[:40]
    labels = [str(escape(name.lower())) for name in CONCEPTS.values()]
    assert sum(label in html for label in labels) >= 3
    assert str(escape(DIRECTOR.lower())) in html or str(escape(DIRECTOR)) in html
    assert f"by {escape(AUTHOR)}" in html


def test_the_json_api_carries_them_verbatim(client: TestClient) -> None:
    items = client.get("/api/v1/items", params={"q": "<script>"}).json()
    assert items and items[0]["title"].startswith('<script>alert("title")</script>')
    long = client.get("/api/v1/items/8").json()
    assert long["title"] == TITLES[7] + " #7"
    assert client.get("/api/v1/items/1").json()["authors"] == [AUTHOR]
    assert client.get("/api/v1/items", params={"q": "<em"}).json()[0]["authors"] == [AUTHOR]
    found = client.get("/api/v1/concepts", params={"q": "<script>"}).json()
    assert [c["name"] for c in found] == ["<script>alert('tag')</script>"]
    r = client.post("/api/v1/recommendations", json={
        "user": 1, "n": 5, "knobs": [{"concept": "{{ config }}", "alpha": 0.5}]})
    assert r.status_code == 200 and r.json()["knobs"][0]["label"] == "{{ config }}"


def test_hostile_concepts_as_knobs_and_hostile_study_text(client: TestClient) -> None:
    page = client.get("/steer", params={"user": 3})
    csrf = re.findall(r'name="csrf" value="([^"]+)"', page.text)[0]
    sid = str(page.url).rsplit("/", 1)[1]
    for name in CONCEPTS.values():
        r = client.post(f"/sessions/{sid}/knobs", data={"csrf": csrf, "add": f"c:{name}"})
        assert r.status_code == 200
        inert(r.text)
        assert str(escape(name.lower())) in r.text
    r = client.post(f"/sessions/{sid}/permalink", data={"csrf": csrf, "layout": "full"})
    inert(r.text)
    assert str(escape(CONCEPTS["concept-1"])) in r.text
    login = client.get("/admin/login")
    token = re.findall(r'name="csrf" value="([^"]+)"', login.text)[0]
    client.post("/admin/login", data={"csrf": token, "token": "hostile-admin-token"})
    consent = "<script>alert('consent')</script>\n\"Agree\" & go"
    client.post("/admin/studies", data={
        "csrf": token, "slug": "hostile", "title": "<h1 onclick=x>Study</h1>",
        "consent": consent, "conditions": "a = sliders"})
    client.post("/admin/presets", data={
        "csrf": token, "name": "<img src=x onerror=alert(5)>", "targets": "{{ config }}",
        "alpha": "0.2"})
    for path in ("/admin", "/admin/studies/hostile", "/study/hostile"):
        r = client.get(path)
        assert r.status_code == 200, path
        inert(r.text)
        assert "<h1 onclick" not in r.text and "<img src=x onerror" not in r.text
    assert str(escape(consent)) in client.get("/study/hostile").text
    with TestClient(client.app) as p:                   # a participant's whole path
        page = p.get("/study/hostile", params={"pid": "-cmd"})
        inert(page.text)
        token = re.findall(r'name="csrf" value="([^"]+)"', page.text)[0]
        profile = p.post("/study/hostile/consent", data={"csrf": token, "pid": "-cmd"})
        inert(profile.text)
        liked = p.get("/items", params={"q": "quoted", "items": [1, 2, 5]})
        inert(liked.text)
        assert str(escape(TITLES[0])) in liked.text                 # ticked, escaped
        steer = p.post("/study/hostile/start", data={"csrf": token, "items": [1, 2, 5]})
        inert(steer.text)
        assert "<title>&lt;h1 onclick=x&gt;Study&lt;/h1&gt;</title>" in steer.text
        assert str(escape(TITLES[1])) in steer.text or str(escape(TITLES[2])) in steer.text
        done = p.post("/study/hostile/complete", data={"csrf": token})
        inert(done.text)
    inert(client.get("/admin/studies/hostile").text)
    assert "<td>-cmd</td>" in client.get("/admin/studies/hostile").text
    frame = pd.read_csv(io.StringIO(client.get("/admin/studies/hostile/events.csv").text),
                        dtype=str)
    assert list(frame.columns)[:3] == ["id", "at", "type"]
    assert set(frame["participant_external_id"]) == {"'-cmd"}     # no spreadsheet formula
