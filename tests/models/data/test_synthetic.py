"""Synthetic data with planted concepts: seeded, and users really concentrate on theirs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.data.interactions import Interactions, positives_from_ratings
from models.data.synthetic import Synthetic, make_synthetic


def test_users_items_concentrate_on_their_concepts(synthetic: Synthetic,
                                                   interactions: Interactions) -> None:
    m = interactions.matrix
    on, total = 0, 0
    for u in range(interactions.n_users):
        user_row = int(interactions.users.ids[u]) - 1          # ids start at 1
        items = interactions.items.ids[m.indices[m.indptr[u]:m.indptr[u + 1]]] - 1
        liked = synthetic.user_concepts[user_row]
        on += int(synthetic.item_concepts[items][:, liked].any(axis=1).sum())
        total += len(items)
    assert on / total > 0.6
    # and far above chance: the share of the catalog on a user's own concepts
    chance = np.mean([synthetic.item_concepts[:, row].any(axis=1).mean()
                      for row in synthetic.user_concepts])
    assert on / total > 1.5 * float(chance)


def test_same_seed_same_data_other_seed_other_data() -> None:
    kw = {"n_users": 50, "n_items": 40, "n_concepts": 4}
    a, b, c = make_synthetic(**kw, seed=1), make_synthetic(**kw, seed=1), make_synthetic(
        **kw, seed=2)
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    assert np.array_equal(a.item_concepts, b.item_concepts)
    assert not a.ratings.equals(c.ratings)


def test_shapes_and_ids(synthetic: Synthetic) -> None:
    n_items, n_concepts = synthetic.item_concepts.shape
    assert len(synthetic.concepts) == n_concepts
    assert synthetic.item_concepts.any(axis=1).all()            # every item has a concept
    assert synthetic.user_concepts.sum(axis=1).min() >= 1
    assert synthetic.ratings["item"].between(1, n_items).all()
    assert synthetic.ratings["user"].min() == 1
    assert synthetic.movies["item"].tolist() == list(range(1, n_items + 1))
    genres = synthetic.movies["genres"]
    for i in range(n_items):
        expected = [synthetic.concepts[c] for c in np.flatnonzero(synthetic.item_concepts[i])]
        assert genres[i] == expected
    assert set(synthetic.tags["tag"]) <= set(synthetic.concepts)


def test_low_ratings_are_noise_the_loader_drops(synthetic: Synthetic) -> None:
    low = synthetic.ratings["rating"] < 4
    assert low.any()
    data = positives_from_ratings(synthetic.ratings)
    assert data.nnz == int((~low).sum())


def test_rejects_too_few_concepts() -> None:
    with pytest.raises(ValueError, match="concepts"):
        make_synthetic(n_concepts=1)
