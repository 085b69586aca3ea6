"""Concept vocabulary, the §5 TF-IDF mapping, both labels and their quality numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from models.concepts import (
    build_vocabulary,
    code_density,
    item_codes,
    map_concepts,
    normalize,
    precision_matrix,
    relative_entropy_decrease,
    tfidf,
    top_items,
)
from models.elsa import ELSA
from models.sae import TopKSAE


def catalog(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "item": np.arange(10, 10 + n),
        "title": [f"t{i}" for i in range(n)],
        "year": pd.array([1994, 1999, 2003, None, 1991, 2011][:n], dtype="Int64"),
        "genres": [["Sci-Fi", "Drama"], ["Drama"], ["Sci-Fi"], [], ["Comedy"], ["Drama"]][:n],
        "tags": [[] for _ in range(n)],
        "hetrec_tags": [[("sci-fi", 3)], [], [("space", 2)], [("space", 1)], [], []][:n],
        "directors": [["Ridley Scott"], [], ["Ridley Scott"], [], [], []][:n],
        "countries": [["USA"], ["USA"], ["UK"], [], [], ["USA"]][:n],
    })


def test_normalize() -> None:
    assert normalize("  Sci-Fi ") == "sci-fi"
    assert normalize("Quentin\t  TARANTINO") == "quentin tarantino"


def test_vocabulary_merges_sources_counts_and_filters() -> None:
    events = pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 11, 12, 99],
                           "tag": ["Space ", "ridley scott", "space", "space"]})
    v = build_vocabulary(catalog(), events, min_items=2)
    assert v.names == sorted(v.names)
    kinds = dict(zip(v.names, v.kinds, strict=True))
    # genre "Sci-Fi" and HetRec tag "sci-fi" are one concept, shown as a genre (2 items
    # against 1); the tag "ridley scott" merges into the director (2 items against 1)
    assert kinds["sci-fi"] == "genre" and kinds["ridley scott"] == "director"
    assert kinds["space"] == "tag" and kinds["usa"] == "country" and kinds["drama"] == "genre"
    assert kinds["1990s"] == "decade"
    c = v.counts.toarray()
    # sci-fi: item 10 genre (1) + HetRec weight 3; item 12 genre (1)
    assert c[v.index("Sci-Fi")].tolist() == [4, 0, 1, 0, 0, 0]
    # space: HetRec weights 2 and 1 + MovieLens tags of users 1 and 2 (item 99 unknown)
    assert c[v.index("space")].tolist() == [1, 0, 3, 1, 0, 0]
    assert c[v.index("ridley scott")].tolist() == [1, 1, 1, 0, 0, 0]
    assert c[v.index("1990s")].tolist() == [1, 1, 0, 0, 1, 0]
    # one item only: dropped by min_items=2
    assert "comedy" not in v.names and "uk" not in v.names and "2000s" not in v.names
    with pytest.raises(KeyError, match="comedy"):
        v.index("comedy")


def test_a_merged_concept_shows_as_the_kind_with_most_items() -> None:
    events = pd.DataFrame({"user": [1] * 4, "item": [10, 11, 13, 14],
                           "tag": ["Ridley Scott"] * 4})
    v = build_vocabulary(catalog(), events, min_items=2)
    assert v.kinds[v.index("ridley scott")] == "tag"        # 4 tagged items, 2 directed


def test_vocabulary_drops_excluded_users_tags() -> None:
    events = pd.DataFrame({"user": [1, 3, 2, 2], "item": [10, 12, 11, 13],
                           "tag": ["x", "x", "x", "x"]})
    assert "x" in build_vocabulary(catalog(), events, min_items=4).names
    v = build_vocabulary(catalog(), events, exclude_users=[2], min_items=1)
    assert v.counts.toarray()[v.index("x")].tolist() == [1, 0, 1, 0, 0, 0]


def test_a_tag_only_one_person_uses_is_not_a_concept() -> None:
    events = pd.DataFrame({"user": [7] * 5 + [1, 2], "item": [10, 11, 12, 13, 14, 10, 11],
                           "tag": ["my dvds"] * 5 + ["noir", "noir"]})
    cat = catalog()
    # a HetRec tag must have been applied to some film twice (the loader has already
    # dropped tags fewer than two HetRec users applied: tests/models/data/test_hetrec.py)
    cat["hetrec_tags"] = [[("foqam", 1)], [("foqam", 1)], [("foqam", 1), ("dark", 2)],
                          [("dark", 1)], [], []]
    v = build_vocabulary(cat, events, min_items=2)
    assert "my dvds" not in v.names and "foqam" not in v.names
    assert "noir" in v.names and "dark" in v.names
    # HetRec's weight counts applications, not people: with the HetRec users' counts
    # (Dataset.hetrec_taggers) a tag that one person applied twice to a film is out
    v = build_vocabulary(cat, events, min_items=2, hetrec_taggers={"dark": 1})
    assert "dark" not in v.names and "noir" in v.names
    assert "dark" in build_vocabulary(cat, events, min_items=2,
                                      hetrec_taggers={"dark": 2}).names
    # ... while a name two MovieLens users share keeps its HetRec films (they count
    # toward min_items), whoever applied them in HetRec
    cat["hetrec_tags"] = [[], [], [("noir", 1)], [("noir", 1)], [], []]
    v = build_vocabulary(cat, events, min_items=4, hetrec_taggers={})
    assert v.counts.toarray()[v.index("noir")].tolist() == [1, 1, 1, 1, 0, 0]
    # without tag events, the catalog's own tags need two applications to one item
    cat["tags"] = [["mine", "ours", "ours"], ["mine", "ours"], [], [], [], []]
    v = build_vocabulary(cat, None, min_items=2)
    assert "mine" not in v.names and "ours" in v.names
    # a name that is also a genre or a director stays whoever tags it
    events = pd.DataFrame({"user": [7, 7], "item": [10, 12], "tag": ["ridley scott"] * 2})
    assert "ridley scott" in build_vocabulary(catalog(), events, min_items=2).names


def test_vocabulary_kinds_and_errors() -> None:
    v = build_vocabulary(catalog(), None, min_items=1, kinds=("genre",))
    assert set(v.kinds) == {"genre"}
    with pytest.raises(ValueError, match="unknown concept kind"):
        build_vocabulary(catalog(), None, kinds=("mood",))
    with pytest.raises(ValueError, match="min_items"):
        build_vocabulary(catalog(), None, min_items=0)


def test_tfidf_by_hand() -> None:
    x = np.array([[2.0, 0.0], [1.0, 1.0], [1.0, 0.0]])      # 3 terms, 2 documents
    got = tfidf(x)
    idf = np.log(3 / np.array([2, 3, 2])) + 1                # N = 2 docs; df = 1, 2, 1
    tf = x / x.sum(axis=0)
    assert np.allclose(got, tf * idf[:, None])
    assert np.allclose(tfidf(np.zeros((2, 3))), 0.0)


def test_relative_entropy_decrease() -> None:
    m = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                  [0.0, 1.0, 0.0, 0.0]])
    red = relative_entropy_decrease(m)
    # average of rows 0, 1, 3 as distributions: [5/12, 5/12, 1/12, 1/12]
    avg = np.array([5, 5, 1, 1]) / 12
    h = -(avg * np.log(avg)).sum()
    assert red[0] == pytest.approx((h - math.log(4)) / h)
    assert red[1] == pytest.approx(1.0) and red[3] == pytest.approx(1.0)
    assert np.isnan(red[2])


def planted_codes() -> tuple[sp.csr_matrix, object]:
    """12 items, concepts a (items 0-5) and b (items 6-11, rarer tag c on 6-7); neuron 0
    fires on a's items, neuron 1 on b's, neuron 2 on c's, neuron 3 on nothing (dead),
    neuron 4 weakly on everything."""
    n = 12
    cat = pd.DataFrame({"item": np.arange(n), "title": [""] * n,
                        "year": pd.array([None] * n, dtype="Int64"),
                        "genres": [["a"]] * 6 + [["b"]] * 6,
                        "hetrec_tags": [[]] * 6 + [[("c", 5)]] * 2 + [[]] * 4})
    vocab = build_vocabulary(cat, None, min_items=2)
    s = np.zeros((n, 5), dtype=np.float32)
    s[:6, 0] = np.linspace(2, 1, 6)
    s[6:, 1] = np.linspace(2, 1, 6)
    s[6:8, 2] = 3.0
    s[:, 4] = 0.1
    return sp.csr_matrix(s), vocab


def test_map_concepts_on_planted_codes() -> None:
    codes, vocab = planted_codes()
    cm = map_concepts(codes, vocab, n_best=3)  # type: ignore[arg-type]
    a, b, c = (cm.concept(x) for x in "abc")
    assert cm.live.tolist() == [True, True, True, False, True]
    assert cm.label[3] == -1 and cm.paper_label[3] == -1 and np.isnan(cm.precision[3])
    assert cm.label_name(0) == "a" and cm.paper_label[0] == a and cm.precision[0] == 1.0
    assert cm.label[2] == c and cm.precision[2] == 1.0
    assert cm.paper_label[1] == b and cm.precision[1] == 1.0
    # maps back from concepts; the dead neuron is in no map
    assert cm.neurons_for(a, "best")[0] == 0 and cm.neurons_for(c, "best")[0] == 2
    assert cm.neurons_for(a, "unique")[0] == 0 and cm.neurons_for(c, "unique")[0] == 2
    assert 3 not in cm.best and 3 not in cm.unique
    assert cm.top_items[2, :2].tolist() == [6, 7] and (cm.top_items[2, 2:] == -1).all()
    # confidence corrects for chance: a is on half the items, precision 1 -> (1 - .5) / .5
    assert cm.confidence[0] == pytest.approx(1.0)
    s = cm.summary()
    assert s["live"] == 4 and s["coverage"] == 1.0 and s["paper"]["coverage"] == 1.0
    assert (cm.lifts == -1).all()                       # built without item rows
    with pytest.raises(ValueError, match="'best', 'unique' or 'lifts'"):
        cm.neurons_for(a, "top")
    with pytest.raises(KeyError):
        cm.concept("zzz")


def test_knobs_label_prefers_an_enriched_precise_concept() -> None:
    """A neuron whose top items are mostly concept x (common) but include the only two
    items of rare concept y: the paper's TF-IDF picks y, Knobs' label picks x (enriched,
    more precise)."""
    n = 40
    cat = pd.DataFrame({"item": np.arange(n), "title": [""] * n,
                        "year": pd.array([None] * n, dtype="Int64"),
                        "genres": [["x"]] * 10 + [["w"]] * 30,
                        "hetrec_tags": [[("y", 2)]] * 2 + [[]] * 38})
    vocab = build_vocabulary(cat, None, min_items=2)
    s = np.zeros((n, 3), dtype=np.float32)
    s[:10, 0] = 1.0                       # neuron 0: the ten x items (two of them y)
    s[10:, 1] = 1.0                       # neuron 1: the w items
    s[2:10, 2] = 1.0                      # neuron 2: the x items that are not y
    cm = map_concepts(sp.csr_matrix(s), vocab)
    assert cm.names[cm.paper_label[0]] == "y" and cm.paper_precision[0] == pytest.approx(0.2)
    assert cm.label_name(0) == "x" and cm.precision[0] == pytest.approx(1.0)


def test_a_live_neuron_without_concepts_has_no_label_and_counts_as_imprecise() -> None:
    codes, vocab = planted_codes()
    dense = codes.toarray()
    dense[:, 3] = 0.0
    counts = vocab.counts.tolil()
    counts[:, 11] = 0                              # item 11 carries nothing ...
    dense[11, 3] = 1.0                             # ... and only it activates neuron 3
    vocab = type(vocab)(vocab.names, vocab.kinds, counts.tocsr())
    cm = map_concepts(sp.csr_matrix(dense), vocab)
    assert cm.live[3] and cm.label[3] == -1 and cm.paper_label[3] == -1
    assert cm.precision[3] == 0.0 and cm.confidence[3] == 0.0
    s = cm.summary()
    assert s["live"] == 5 and s["coverage"] == pytest.approx(0.8)
    assert not np.isnan(s["median_precision"])


def test_precision_matrix_and_top_items() -> None:
    codes = sp.csr_matrix(np.array([[0.5, 0], [0.9, 0], [0.1, 0]], dtype=np.float32))
    tops = top_items(codes, top=2)
    assert tops.tolist() == [[1, 0], [-1, -1]]
    carries = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=bool))
    p = precision_matrix(tops, carries)
    assert p[0].tolist() == [1.0, 0.5] and np.isnan(p[1]).all()


def test_map_concepts_rejects_mismatched_inputs() -> None:
    codes, vocab = planted_codes()
    with pytest.raises(ValueError, match="items"):
        map_concepts(codes[:5], vocab)  # type: ignore[arg-type]


def test_item_codes_and_density_match_the_sae(generator: torch.Generator) -> None:
    elsa = ELSA(7, 4, generator)
    sae = TopKSAE(4, 9, 2, generator).eval()
    s = item_codes(elsa, sae, 7, torch.device("cpu"), batch_size=3)
    expected = sae.encode(elsa.A.detach()).code.detach().numpy()
    assert np.allclose(s.toarray(), expected)
    users = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1, 1]],
                                   dtype=np.float32))
    dens = code_density(elsa, sae, users, torch.device("cpu"), batch_size=1)
    codes = sae.encode(torch.from_numpy(users.toarray()) @ elsa.A.detach()).code
    assert np.allclose(dens, (codes > 0).float().mean(dim=0).numpy())


def test_lifts_rank_neurons_by_how_much_they_raise_the_concepts_items() -> None:
    codes, vocab = planted_codes()
    rows = np.zeros((5, 12))
    rows[0, :6] = 1.0                   # neuron 0 raises a's items
    rows[1, 6:] = 1.0                   # neuron 1 raises b's items
    rows[2, 6:8] = 5.0                  # neuron 2 raises c's two items a lot
    rows[3, 6:8] = 9.0                  # neuron 3 too, but it is dead: never chosen
    rows[4] = np.arange(12)             # neuron 4: a ramp toward b's items
    cm = map_concepts(codes, vocab, item_rows=lambda idx: rows[idx])  # type: ignore[arg-type]
    a, b, c = (cm.concept(x) for x in "abc")
    assert cm.neurons_for(a, "lifts", 1).tolist() == [0]
    assert cm.neurons_for(c, "lifts", 2).tolist() == [2, 1]
    assert cm.neurons_for(b, "lifts", 2).tolist() == [1, 4]
    assert 3 not in cm.lifts and (cm.lifts[:, :4] >= 0).all() and (cm.lifts[:, 4] == -1).all()
    assert (np.diff(cm.lift_scores[:, :4], axis=1) <= 0).all()
    # the score is the mean standardised row over the concept's items
    z = (rows[2] - rows[2].mean()) / rows[2].std()
    assert cm.lift_scores[c, 0] == pytest.approx(z[6:8].mean(), rel=1e-5)


def test_maps_match_a_loop_by_loop_reading_of_method_md() -> None:
    """Random codes and counts; labels and both maps recomputed here from §5's words with
    plain loops (no shared helper), so swapped directions or a lost idf show."""
    rng = np.random.default_rng(4)
    n_items, h, n_concepts = 30, 7, 5
    s = rng.random((n_items, h)) * (rng.random((n_items, h)) < 0.4)
    s[:, 6] = 0.0                                                  # a dead neuron
    genres = [[f"g{c}" for c in range(n_concepts) if rng.random() < 0.35] or ["g0"]
              for _ in range(n_items)]
    cat = pd.DataFrame({"item": np.arange(n_items), "title": [""] * n_items,
                        "year": pd.array([None] * n_items, dtype="Int64"), "genres": genres})
    vocab = build_vocabulary(cat, None, min_items=1)
    cm = map_concepts(sp.csr_matrix(s.astype(np.float32)), vocab, n_best=3)
    c = vocab.counts.toarray().astype(np.float64)
    p = c / c.sum(axis=1, keepdims=True)
    m = p @ s                                                     # [concepts, h]
    live = [n for n in range(h) if s[:, n].any()]

    def tfidf_loops(x: np.ndarray) -> np.ndarray:  # rows terms, columns documents
        terms, docs = x.shape
        out = np.zeros_like(x)
        for t in range(terms):
            df = sum(1 for d in range(docs) if x[t, d] > 0)
            idf = math.log((docs + 1) / (df + 1)) + 1
            for d in range(docs):
                col = sum(x[u, d] for u in range(terms))
                out[t, d] = (x[t, d] / col if col > 0 else 0.0) * idf
        return out

    m_live = m[:, live]
    by_neuron = tfidf_loops(m_live.T)          # neurons are terms, concepts documents
    by_concept = tfidf_loops(m_live)           # concepts are terms, neurons documents
    for j, n in enumerate(live):
        assert cm.paper_label[n] == int(np.argmax(by_neuron[j]))
    for t in range(len(vocab)):
        best = [live[j] for j in np.argsort(-by_neuron[:, t], kind="stable")[:3]]
        assert cm.best[t].tolist() == best
        assert cm.unique[t, 0] == live[int(np.argmax(by_concept[t]))]
    assert cm.paper_label[6] == -1 and 6 not in cm.best and 6 not in cm.unique
