"""load_dataset: the synthetic path end to end, the catalog alignment, unknown names."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.concepts import build_vocabulary
from models.data.datasets import DATASETS, build_catalog, load_dataset


def test_synthetic_dataset_is_canonical_and_aligned() -> None:
    ds = load_dataset("synthetic", seed=3)
    data = ds.interactions
    assert ds.name == "synthetic" and "synthetic" in DATASETS
    assert data.n_users > 0 and data.n_items > 0 and data.nnz > 0
    assert np.diff(data.matrix.indptr).min() >= 5                  # the >= 5 positives rule
    assert np.array_equal(ds.catalog["item"].to_numpy(), data.items.ids)
    for col in ("title", "year", "genres", "tags", "hetrec_tags", "directors", "countries"):
        assert col in ds.catalog.columns
    assert all(isinstance(g, list) and g for g in ds.catalog["genres"])
    assert ds.metadata_sources == ("synthetic",)


def test_synthetic_dataset_is_seeded() -> None:
    a, b, c = (load_dataset("synthetic", seed=s) for s in (1, 1, 2))
    assert a.interactions.fingerprint() == b.interactions.fingerprint()
    assert a.interactions.fingerprint() != c.interactions.fingerprint()


def test_unknown_dataset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="ml-nope.*synthetic"):
        load_dataset("ml-nope")


def test_build_catalog_titles_missing_items_by_id(caplog: pytest.LogCaptureFixture) -> None:
    movies = pd.DataFrame({"item": [1, 2], "title": ["One", "Two"],
                           "year": pd.array([2000, None], dtype="Int64"),
                           "genres": [["Drama"], ["Comedy", "Drama"]]})
    tags = pd.DataFrame({"user": [1, 1, 2], "item": [2, 2, 9], "tag": ["fun", "witty", "x"]})
    with caplog.at_level(logging.WARNING):
        cat = build_catalog(np.array([2, 1, 3]), movies, tags, None)
    assert cat["item"].tolist() == [2, 1, 3]
    assert cat["title"].tolist() == ["Two", "One", "item 3"]
    assert cat["tags"].tolist() == [["fun", "witty"], [], []]
    assert cat["genres"].tolist() == [["Comedy", "Drama"], ["Drama"], []]
    assert cat["directors"].tolist() == [[], [], []]
    assert "missing" in caplog.text


@pytest.mark.realdata
def test_ml_latest_small_end_to_end(real_data_dir: Path) -> None:
    ds = load_dataset("ml-latest-small", real_data_dir)
    data = ds.interactions
    # method.md §1 on the 2018-09-26 release: 603 users keep >= 5 positives (rating >= 4).
    assert (data.n_users, data.n_items, data.nnz) == (603, 6298, 48562)
    assert ds.metadata_sources == ("ml-latest-small movies", "ml-latest-small tags",
                                   "hetrec2011-movielens-2k-v2")
    cat = ds.catalog.set_index("item")
    assert cat.loc[1, "title"] == "Toy Story" and cat.loc[1, "year"] == 1995
    assert "Animation" in cat.loc[1, "genres"]
    assert cat.loc[1, "directors"] == ["John Lasseter"]
    assert "USA" in cat.loc[1, "countries"]
    # movieID 47 (Se7en) is mislinked in HetRec (to Seven Samurai): it must carry no
    # HetRec director at all rather than Kurosawa.
    if 47 in cat.index:
        assert cat.loc[47, "directors"] == []
    with_director = sum(1 for d in ds.catalog["directors"] if d)
    assert with_director == 4194  # of the 6,298 positive items; 6,050 trusted overall
    # HetRec's weight counts applications: "tumeys dvds", one user's filing tag, has
    # weight 2 on a film; the users file shows it is one person's
    assert ds.hetrec_taggers is not None and ds.hetrec_taggers["tumeys dvds"] == 1
    assert ds.hetrec_taggers["dark comedy"] >= 2
    vocab = build_vocabulary(ds.catalog, ds.tag_events, hetrec_taggers=ds.hetrec_taggers)
    assert "tumeys dvds" not in vocab.names and "watched 2007" not in vocab.names
    assert "dark comedy" in vocab.names and len(vocab.names) == 365
    assert "tumeys dvds" in build_vocabulary(ds.catalog, ds.tag_events).names
