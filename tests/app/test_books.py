"""A books bundle (the planted synthetic data in goodbooks-10k's files): the pages call the
items books and show their authors beside the titles, the API's items carry the authors,
and the title search finds books by author. A film bundle still says movies; any other
dataset says titles and shows no authors."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.engine import nouns
from app.main import create_app
from app.settings import Settings
from models.bundle import load_bundle
from tests.app.conftest import migrated

TOKEN = "books-admin-token-for-tests"
HX = {"HX-Request": "true"}


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def serve(bundle: Path, db: Path, dataset: str | None = None) -> TestClient:
    """A client of an app serving `bundle` (as if trained on `dataset`, when given)."""
    loaded = load_bundle(bundle)
    if dataset is not None:
        loaded = dataclasses.replace(loaded, config={**loaded.config, "dataset": dataset})
    settings = Settings(bundle=bundle, device="cpu", admin_token=TOKEN,
                        database_url=migrated(f"sqlite:///{db}"))
    return TestClient(create_app(settings, bundle=loaded))


@pytest.fixture(scope="module")
def client(books_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    with serve(books_bundle_dir, tmp_path_factory.mktemp("db") / "knobs.db") as c:
        yield c


@pytest.fixture(scope="module")
def authors(client: TestClient) -> dict[int, list[str]]:
    """Each book's authors in the bundle's catalog."""
    catalog = client.app.state.engine.bundle.catalog  # type: ignore[attr-defined]
    return dict(zip(catalog["item"].tolist(), catalog["authors"].tolist(), strict=True))


def study_profile(c: TestClient) -> str:
    """The profile page of a new participant in a new study."""
    c.post("/admin/login", data={"csrf": csrf_of(c.get("/admin/login").text), "token": TOKEN})
    r = c.post("/admin/studies", data={"csrf": csrf_of(c.get("/admin").text), "slug": "picks",
                                       "title": "Picks", "consent": "We record clicks.",
                                       "conditions": "knobs = sliders", "n": 10})
    assert r.status_code == 200, r.text
    consent = c.get("/study/picks")
    r = c.post("/study/picks/consent", data={"csrf": csrf_of(consent.text)})
    assert r.status_code == 200 and r.url.path == "/study/picks/profile", r.text
    return r.text


def frozen_study_screen(c: TestClient) -> str:
    """A permalink of user 1's screen in the study layout (no study: no study title)."""
    steer = c.get("/steer", params={"user": 1})
    r = c.post(f"{steer.url.path}/permalink", data={"csrf": csrf_of(steer.text),
                                                    "layout": "study"})
    assert r.status_code == 200 and r.url.path.startswith("/p/"), r.text
    return r.text


def test_the_nouns_follow_the_dataset() -> None:
    assert nouns("goodbooks-10k")[:3] == ("book", "books", "Title or author")
    for films in ("ml-latest-small", "ml-1m", "ml-25m"):
        assert nouns(films)[:3] == ("movie", "movies", "Title")
    for other in ("synthetic", "msd", ""):
        assert nouns(other)[:3] == ("title", "titles", "Title")


@pytest.mark.parametrize(("bundle", "dataset", "one", "many"), [
    ("books_bundle_dir", None, "Book", "books"),
    ("bundle_dir", "ml-latest-small", "Movie", "movies"),
    ("bundle_dir", None, "Title", "titles"),
])
def test_pages_name_the_items_by_the_bundles_dataset(
        request: pytest.FixtureRequest, tmp_path: Path, bundle: str, dataset: str | None,
        one: str, many: str) -> None:
    with serve(request.getfixturevalue(bundle), tmp_path / "knobs.db", dataset) as c:
        profile, frozen = study_profile(c), frozen_study_screen(c)
        steer = c.get("/steer", params={"user": 1}).text
        item = c.get("/api/v1/items/1").json()
    assert f"<h1>Which {many} do you like?</h1>" in profile
    assert f'<span class="brand">{one} recommendations</span>' in frozen
    for other in {"books", "movies", "titles"} - {many}:
        assert f"Which {other}" not in profile
    for page in (profile, frozen, steer):
        words = set(re.findall(r"\b(book|books|movie|movies|film|films)\b", page.lower()))
        assert words <= {one.lower(), many}, words
    books = many == "books"
    assert ("Title or author" in profile) == books
    assert ("fantasy, stephen king" in steer) == books
    assert ("tom hanks" in steer) == (many == "movies")
    assert ('class="hint by"' in steer) == books         # films: nothing beside the title
    assert bool(item["authors"]) == books


def test_pages_show_authors_beside_titles(client: TestClient,
                                          authors: dict[int, list[str]]) -> None:
    by = f"by {', '.join(authors[1])}"
    assert by in client.get("/items/1").text
    steer = client.get("/steer", params={"user": 1}).text
    for list_id in ("steered", "unsteered"):
        block = re.search(rf'<ol class="recs" id="{list_id}">(.*?)</ol>', steer, re.S)
        assert block, list_id
        rows = re.findall(r'<li data-item="(\d+)">(.*?)</li>', block.group(1), re.S)
        assert rows, list_id
        for item, html in rows:
            assert f'<span class="hint by">by {", ".join(authors[int(item)])}</span>' in html
    history = re.search(r'<details class="history">(.*?)</details>', steer, re.S)
    assert history and history.group(1).count('class="hint by"') > 0
    frag = client.get("/items", params={"q": "Book 1"}, headers=HX).text
    assert "<html" not in frag and by in frag
    neuron = client.get("/api/v1/users/1/code").json()["knobs"][0]["neuron"]
    knob = client.get(f"/knobs/{neuron}").text
    assert knob.count('class="hint by"') >= 10                  # lifts and activated_by


def test_the_apis_items_carry_their_authors(client: TestClient,
                                             authors: dict[int, list[str]]) -> None:
    assert client.get("/api/v1/items/1").json()["authors"] == authors[1]
    r = client.post("/api/v1/recommendations", json={
        "user": 1, "n": 5, "knobs": [{"concept": "horror", "alpha": 0.5}]})
    assert r.status_code == 200, r.text
    body = r.json()
    for i in body["steered"] + body["unsteered"]:
        assert i["authors"] == authors[i["id"]] and i["authors"]
    neuron = client.get("/api/v1/users/1/code").json()["knobs"][0]["neuron"]
    knob = client.get(f"/api/v1/knobs/{neuron}").json()
    for i in knob["lifts"] + knob["activated_by"]:
        assert i["authors"] == authors[i["item"]]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ItemOut"]
    assert "authors" in schema["required"]


def test_the_title_search_finds_books_by_author(client: TestClient,
                                                authors: dict[int, list[str]]) -> None:
    name = authors[1][0]                                   # "Author 1-0"
    found = client.get("/api/v1/items", params={"q": name.upper(), "limit": 100}).json()
    assert {i["id"] for i in found} == {i for i, a in authors.items() if name in a}
    # titles first, as before (starting with the query, then containing it), then the
    # books whose author's name contains it
    found = client.get("/api/v1/items", params={"q": "7", "limit": 100}).json()
    by_title = [i for i in found if "7" in i["title"]]
    assert by_title and found[:len(by_title)] == by_title
    assert {i["id"] for i in found} == {i for i, a in authors.items()
                                       if "7" in f"Book {i}" or any("7" in x for x in a)}
    assert len(found) > len(by_title)
    page = client.get("/items", params={"q": name.split()[-1]}).text   # "1-0"
    rows = re.findall(r'<li>\s*<label><input type="checkbox".*?</label>', page, re.S)
    assert rows and all(f"by {name}" in row for row in rows)
    assert "<label for=\"q\">Title or author</label>" in page
