"""The JSON API v1 and the serving engine, on a small bundle trained on the planted
synthetic data: answers, bad input (404 / 422 naming the problem, never a 500), start-up
refusal, concurrent cold users batched, and real HTTP through uvicorn on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.main import StartupError, create_app
from app.settings import Settings
from models.data.datasets import load_dataset


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["dataset"] == "synthetic"
    assert len(ready["bundle_sha256"]) == 64 and ready["neurons"] == 48


def test_users_and_their_codes(client: TestClient) -> None:
    users = client.get("/api/v1/users", params={"limit": 5}).json()
    assert len(users) == 5 and all(u["history"] > 0 for u in users)
    code = client.get(f"/api/v1/users/{users[0]['id']}/code").json()
    values = [k["value"] for k in code["knobs"]]
    assert 0 < len(values) <= 6 and values == sorted(values, reverse=True)
    assert code["mass"] == pytest.approx(sum(values), rel=1e-5)
    assert code["history"] == users[0]["history"]


def test_unsteered_request_is_the_unsteered_list(client: TestClient) -> None:
    r = client.post("/api/v1/recommendations", json={"user": 1, "n": 10}).json()
    assert [i["id"] for i in r["steered"]] == [i["id"] for i in r["unsteered"]]
    assert [i["rank_before"] for i in r["steered"]] == list(range(10))
    assert all(i["why"] for i in r["steered"])
    scores = [i["score"] for i in r["steered"]]
    assert scores == sorted(scores, reverse=True)


def test_a_concept_knob_moves_the_list_toward_the_concept(client: TestClient) -> None:
    ds = load_dataset("synthetic")
    genres = dict(zip(ds.catalog["item"], ds.catalog["genres"], strict=True))
    history = set(ds.catalog["item"][ds.interactions.matrix[0].indices])
    # a concept the user's history has least of
    counts = {c: sum(c in genres[i] for i in history) for c in
              (f"concept-{j}" for j in range(8))}
    concept = min(counts, key=lambda c: counts[c])
    share = []
    for alpha in (0.0, 0.5, 1.0):
        r = client.post("/api/v1/recommendations", json={
            "user": int(ds.interactions.users.ids[0]), "n": 20,
            "knobs": [{"concept": concept, "alpha": alpha}]})
        assert r.status_code == 200, r.text
        body = r.json()
        share.append(np.mean([concept in genres[i["id"]] for i in body["steered"]]))
        assert not {i["id"] for i in body["steered"]} & history
    assert share[0] < share[1] <= share[2] and share[2] >= 0.8, share
    assert body["knobs"][0]["label"] == concept and len(body["knobs"][0]["neurons"]) > 1
    # at alpha 1 the code is all knob: every item's why is that knob
    assert all(i["why"] and {w["knob"] for w in i["why"]} == {0} for i in body["steered"])
    assert all(w["label"] == concept for i in body["steered"] for w in i["why"])
    moved = [i for i in body["steered"] if i["rank_before"] is None]
    assert moved, "alpha 1 should bring in items that were not in the top 20"


def test_less_of_a_users_own_knob_lowers_its_items(client: TestClient) -> None:
    code = client.get("/api/v1/users/1/code").json()
    top = code["knobs"][0]["neuron"]
    before = client.post("/api/v1/recommendations", json={"user": 1, "n": 20}).json()
    after = client.post("/api/v1/recommendations", json={
        "user": 1, "n": 20, "knobs": [{"neuron": top, "alpha": 1.0, "direction": "less"}]
    }).json()
    lifted_before = sum(any(w["neuron"] == top for w in i["why"]) for i in before["steered"])
    lifted_after = sum(any(w["neuron"] == top for w in i["why"]) for i in after["steered"])
    assert lifted_before > 0 and lifted_after == 0
    assert after["knobs"][0]["strength"] == -1.0


def test_profile_of_liked_items_folds_in(client: TestClient) -> None:
    liked = [i["id"] for i in client.get("/api/v1/items", params={"q": "item 1"}).json()[:4]]
    assert len(liked) == 4
    r = client.post("/api/v1/recommendations", json={"items": liked, "n": 15})
    assert r.status_code == 200
    ids = [i["id"] for i in r.json()["steered"]]
    assert len(ids) == 15 and not set(ids) & set(liked)


@pytest.mark.parametrize(("body", "field"), [
    ({"user": 1, "knobs": [{"neuron": 1, "alpha": 1.5}]}, "alpha"),
    ({"user": 1, "knobs": [{"neuron": 1, "alpha": -0.1}]}, "alpha"),
    ({"user": 1, "knobs": [{"neuron": 1, "alpha": 0.6}, {"neuron": 2, "alpha": 0.6}]},
     "combined strength"),
    ({"user": 1, "knobs": [{"neuron": i, "alpha": 0.01} for i in range(33)]}, "knobs"),
    ({"user": 1, "n": 0}, "n"),
    ({"user": 1, "n": 101}, "n"),
    ({"items": []}, "items"),
    ({"items": list(range(1, 502))}, "items"),
    ({"user": 1, "items": [1, 2, 3]}, "exactly one of 'user' or 'items'"),
    ({}, "exactly one of 'user' or 'items'"),
    ({"user": 1, "knobs": [{"neuron": 1, "concept": "x", "alpha": 0.1}]}, "exactly one"),
    ({"user": 1, "knobs": [{"neuron": 1, "alpha": 0.1, "direction": "up"}]}, "direction"),
    ({"user": "one"}, "user"),
])
def test_bad_input_is_a_422_naming_the_field(client: TestClient, body: dict,
                                              field: str) -> None:
    r = client.post("/api/v1/recommendations", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"][-1] == field or field in e["msg"] for e in errors), errors


@pytest.mark.parametrize(("method", "url", "body", "names"), [
    ("post", "/api/v1/recommendations", {"user": 99999}, "unknown user 99999"),
    ("post", "/api/v1/recommendations", {"items": [1, 99998, 99999]}, "unknown items 99998"),
    ("post", "/api/v1/recommendations", {"user": 1, "knobs": [{"neuron": 48, "alpha": 0.1}]},
     "unknown knob 48 (this bundle has neurons 0..47)"),
    ("post", "/api/v1/recommendations",
     {"user": 1, "knobs": [{"concept": "polka <b>", "alpha": 0.1}]},
     "unknown concept 'polka <b>'"),
    ("get", "/api/v1/users/99999/code", None, "unknown user 99999"),
    ("get", "/api/v1/knobs/48", None, "unknown knob 48"),
    ("get", "/api/v1/items/99999", None, "unknown item 99999"),
])
def test_unknown_ids_are_a_404_naming_them(client: TestClient, method: str, url: str,
                                           body: dict | None, names: str) -> None:
    r = client.post(url, json=body) if method == "post" else client.get(url)
    assert r.status_code == 404, r.text
    assert names in r.json()["detail"]


def test_knob_concept_and_item_search(client: TestClient) -> None:
    k = client.get("/api/v1/knobs/3").json()
    assert k["neuron"] == 3 and len(k["lifts"]) == 10 and len(k["neighbours"]) == 5
    found = client.get("/api/v1/concepts", params={"q": "concept-"}).json()
    assert {c["name"] for c in found} >= {f"concept-{j}" for j in range(8)}
    assert all(c["neurons"] for c in found)
    items = client.get("/api/v1/items", params={"q": "item 12"}).json()
    assert items and all("item 12" in i["title"].lower() for i in items)
    assert items[0]["title"].lower().startswith("item 12")
    assert client.get("/api/v1/items", params={"q": ""}).status_code == 422
    assert client.get("/docs").status_code == 200
    assert "/api/v1/recommendations" in client.get("/openapi.json").json()["paths"]


def test_concurrent_cold_users_are_batched(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    before = len(engine._batcher.batches)
    ids = [int(u["id"]) for u in client.get("/api/v1/users", params={"limit": 200}).json()]
    cold = ids[-48:]

    def ask(u: int) -> int:
        return client.post("/api/v1/recommendations", json={"user": u, "n": 5}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(ask, cold))
    assert codes == [200] * len(cold)
    batches = list(engine._batcher.batches)[before:]
    assert sum(batches) == len(cold) and max(batches) > 1


def test_a_missing_or_corrupt_bundle_refuses_to_start(tmp_path: Path, bundle_dir: Path,
                                                      db_url: str) -> None:
    with pytest.raises(StartupError, match="no bundle folder there"), \
            TestClient(create_app(Settings(bundle=tmp_path / "none", device="cpu",
                                           database_url=db_url))):
        pass
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in bundle_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "sae.safetensors").write_bytes(b"garbage")
    with pytest.raises(StartupError, match=r"sae\.safetensors"), \
            TestClient(create_app(Settings(bundle=broken, device="cpu",
                                           database_url=db_url))):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_http_on_loopback(settings: Settings) -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port,
        log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
        r = httpx.post(f"{base}/api/v1/recommendations",
                       json={"user": 1, "n": 5, "knobs": [{"neuron": 0, "alpha": 0.3}]})
        assert r.status_code == 200 and len(r.json()["steered"]) == 5
        assert httpx.post(f"{base}/api/v1/recommendations",
                          json={"user": 1, "n": 500}).status_code == 422
    finally:
        server.should_exit = True
        thread.join(10)


def test_n_beyond_the_items_left_is_capped_and_scores_stay_finite(client: TestClient) -> None:
    """A profile of most of the catalog asking for 100: only items it does not have come
    back, every score a finite JSON number (no -Infinity)."""
    n_items = client.get("/readyz").json()["items"]
    liked = list(range(1, n_items - 19))                 # all but 20 of the catalog
    for knobs in ([], [{"neuron": 0, "alpha": 0.4}], [{"neuron": 0, "alpha": 0.4,
                                                      "direction": "less"}]):
        r = client.post("/api/v1/recommendations",
                        json={"items": liked, "n": 100, "knobs": knobs})
        assert r.status_code == 200 and "Infinity" not in r.text and "NaN" not in r.text
        body = r.json()
        ids = [i["id"] for i in body["steered"]]
        assert len(set(ids)) == len(ids) == 20 and not set(ids) & set(liked)
        assert len(body["unsteered"]) == 20


def test_a_profile_of_the_whole_catalog_gets_empty_lists(client: TestClient) -> None:
    """Nothing left to recommend: two empty lists, not an error."""
    n_items = client.get("/readyz").json()["items"]
    everything = list(range(1, n_items + 1))
    for knobs in ([], [{"neuron": 0, "alpha": 0.4}]):
        r = client.post("/api/v1/recommendations", json={"items": everything, "knobs": knobs})
        assert r.status_code == 200, r.text
        assert r.json()["steered"] == [] and r.json()["unsteered"] == []


@pytest.mark.parametrize(("headers", "content", "status", "says"), [
    ({}, b'{"user": 1}', 422, "Content-Type missing"),
    ({"Content-Type": "text/plain"}, b'{"user": 1}', 422, "Content-Type 'text/plain'"),
    ({"Content-Type": "application/json"}, b'{"user": 1', 422, "Invalid JSON"),
    ({"Content-Type": "application/json"}, b'{"user": 1, "n": "\xff"}', 400, "not UTF-8"),
    ({"Content-Type": "application/json"}, b"", 422, "Invalid JSON"),
])
def test_a_body_that_is_not_json_is_refused(client: TestClient, headers: dict,
                                            content: bytes, status: int, says: str) -> None:
    r = client.post("/api/v1/recommendations", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.text


def test_any_json_media_type_is_accepted(client: TestClient) -> None:
    ok = client.post("/api/v1/recommendations", content=b'{"user": 1}',
                     headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
    assert ok.status_code == 200


def test_a_client_gone_before_its_body_is_a_400_not_an_error(client: TestClient) -> None:
    """The ASGI app itself, its receive saying the client disconnected mid-body: a 400
    naming that, sent (nothing raised, so nothing logged as a failure)."""
    app = client.app
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/v1/recommendations",
             "raw_path": b"/api/v1/recommendations", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"t"), (b"content-type", b"application/json"),
                         (b"content-length", b"100")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": app}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert b"went away before sending the body" in b"".join(
        m.get("body", b"") for m in sent[1:])


def test_the_docs_describe_the_recommendations_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/recommendations"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendIn"}
    parts = schema["components"]["schemas"]
    assert set(parts["RecommendIn"]["properties"]) == {"user", "items", "knobs", "n"}
    assert parts["RecommendIn"]["properties"]["knobs"]["items"] == {
        "$ref": "#/components/schemas/KnobIn"}
    assert set(parts["KnobIn"]["properties"]) == {"neuron", "concept", "alpha", "direction"}
