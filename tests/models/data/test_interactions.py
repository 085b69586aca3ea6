"""Vocabulary, binary positives (method.md §1) and the seeded user splits."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.data.interactions import (
    Interactions,
    Vocabulary,
    hold_out,
    holdout_split,
    kfold_splits,
    positives_from_ratings,
    split_users,
)
from models.data.synthetic import Synthetic


def frame(rows: list[tuple[object, object, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def rows_of(data: Interactions) -> dict[object, set[object]]:
    """user id -> set of item ids, read back through the vocabularies."""
    m = data.matrix
    return {data.users.ids[u]: set(data.items.ids[m.indices[m.indptr[u]:m.indptr[u + 1]]]
                                   .tolist())
            for u in range(data.n_users)}


# --- Vocabulary ----------------------------------------------------------------------------

@pytest.mark.parametrize("ids", [[30, 10, 20, 7], ["tt3", "tt1", "tt2"]])
def test_vocabulary_round_trip(ids: list[object]) -> None:
    v = Vocabulary(np.array(ids))
    assert len(v) == len(ids)
    idx = v.index(ids)
    assert idx.tolist() == list(range(len(ids)))
    shuffled = list(reversed(ids))
    assert v.ids[v.index(shuffled)].tolist() == shuffled
    assert ids[0] in v and "nope" not in v


def test_vocabulary_unknown_id_is_a_key_error_naming_it() -> None:
    v = Vocabulary(np.array([1, 2, 3]))
    with pytest.raises(KeyError, match="4242"):
        v.index([1, 4242, 2])


def test_vocabulary_rejects_duplicates_naming_them() -> None:
    with pytest.raises(ValueError, match="17"):
        Vocabulary(np.array([5, 17, 3, 17]))


def test_vocabulary_rejects_two_dimensional_ids() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        Vocabulary(np.array([[1, 2], [3, 4]]))


def test_vocabulary_equality() -> None:
    assert Vocabulary([1, 2, 3]) == Vocabulary(np.array([1, 2, 3]))
    assert Vocabulary([1, 2, 3]) != Vocabulary([3, 2, 1])


# --- positives_from_ratings ----------------------------------------------------------------

def test_threshold_keeps_ratings_of_four_and_more_only() -> None:
    ratings = frame([(1, i, 4.0) for i in range(1, 6)]
                    + [(1, 10, 3.5), (1, 11, 3.99), (1, 12, 4.5), (1, 13, 5.0), (1, 14, 1.0)])
    data = positives_from_ratings(ratings)
    assert rows_of(data) == {1: {1, 2, 3, 4, 5, 12, 13}}
    assert data.matrix.dtype == np.float32
    assert set(data.matrix.data.tolist()) == {1.0}


def test_users_need_five_positives() -> None:
    ratings = frame([(1, i, 5.0) for i in range(5)]        # exactly 5: kept
                    + [(2, i, 5.0) for i in range(4)]      # 4: dropped
                    + [(3, i, 5.0) for i in range(4)]      # 4 positives + 2 negatives: dropped
                    + [(3, 8, 2.0), (3, 9, 3.0)])
    data = positives_from_ratings(ratings)
    assert data.users.ids.tolist() == [1]
    assert data.n_items == 5


def test_duplicate_rows_count_once() -> None:
    ratings = frame([(1, 1, 5.0)] * 5 + [(1, 2, 5.0), (1, 3, 4.0), (1, 4, 4.0)])
    with pytest.raises(ValueError, match="5 positives"):
        positives_from_ratings(ratings)  # 4 distinct items only


def test_item_filter_is_applied_before_the_user_filter() -> None:
    # User 1 has 5 items but one (item 99) is rated by nobody else. With the MSD order
    # (items >= 2 users first) user 1 falls to 4 positives and is dropped.
    common = [(u, i, 1.0) for u in (2, 3) for i in range(1, 6)]
    ratings = frame(common + [(1, i, 1.0) for i in (1, 2, 3, 4, 99)])
    data = positives_from_ratings(ratings, threshold=None, min_item_users=2,
                                  min_user_positives=5)
    assert data.users.ids.tolist() == [2, 3]
    assert 99 not in data.items
    # without the item filter user 1 stays
    data = positives_from_ratings(ratings, threshold=None)
    assert 1 in data.users and 99 in data.items


def test_threshold_none_keeps_every_row() -> None:
    ratings = frame([(1, i, 1.0) for i in range(5)])
    assert positives_from_ratings(ratings, threshold=None).nnz == 5


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="item"):
        positives_from_ratings(pd.DataFrame({"user": [1], "rating": [5.0]}))
    with pytest.raises(ValueError, match="rating"):
        positives_from_ratings(pd.DataFrame({"user": [1], "item": [1]}))


def test_result_does_not_depend_on_row_order(synthetic_ratings: pd.DataFrame) -> None:
    a = positives_from_ratings(synthetic_ratings)
    b = positives_from_ratings(synthetic_ratings.sample(frac=1.0, random_state=3))
    assert a.users == b.users and a.items == b.items
    assert (a.matrix != b.matrix).nnz == 0
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_is_stable_and_changes_with_the_data(
        synthetic_ratings: pd.DataFrame) -> None:
    a = positives_from_ratings(synthetic_ratings)
    assert a.fingerprint() == positives_from_ratings(synthetic_ratings.copy()).fingerprint()
    assert len(a.fingerprint()) == 64
    # drop one positive of a user with many, so the vocabularies stay the same
    counts = np.diff(a.matrix.indptr)
    u = int(np.argmax(counts))
    user, item = a.users.ids[u], a.items.ids[a.matrix.indices[a.matrix.indptr[u]]]
    fewer = synthetic_ratings.loc[~((synthetic_ratings["user"] == user)
                                    & (synthetic_ratings["item"] == item))]
    b = positives_from_ratings(fewer)
    assert b.users == a.users and b.nnz == a.nnz - 1
    assert b.fingerprint() != a.fingerprint()


@pytest.fixture
def synthetic_ratings(synthetic: Synthetic) -> pd.DataFrame:
    return synthetic.ratings


# --- splits ----------------------------------------------------------------------------------

def test_split_users_is_80_10_10_disjoint_and_covering() -> None:
    tr, va, te = split_users(1000, seed=0)
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    both = np.concatenate([tr, va, te])
    assert len(np.unique(both)) == 1000 and set(both.tolist()) == set(range(1000))


def test_split_users_is_seeded() -> None:
    a, b, c = split_users(200, seed=5), split_users(200, seed=5), split_users(200, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])


def test_split_users_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        split_users(10, 0, (0.5, 0.2, 0.2))


def test_hold_out_targets_are_ceil_fifth_and_partition_the_history() -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((30, 50)) < 0.3
    dense[0, :] = False
    dense[0, 7] = True                                    # one item: it becomes the target
    matrix = sp.csr_matrix(dense.astype(np.float32))
    users = np.array([0, 3, 5, 11, 29])
    ho = hold_out(matrix, users, np.random.default_rng(1))
    assert ho.input.shape == ho.target.shape == (5, 50)
    for r, u in enumerate(users):
        history = set(np.flatnonzero(dense[u]).tolist())
        inp = set(ho.input[r].indices.tolist())
        tgt = set(ho.target[r].indices.tolist())
        assert len(tgt) == math.ceil(0.2 * len(history))
        assert inp | tgt == history and not inp & tgt
    assert ho.target[0].indices.tolist() == [7] and ho.input[0].nnz == 0


def test_hold_out_is_seeded(interactions: Interactions) -> None:
    users = np.arange(20)
    a = hold_out(interactions.matrix, users, np.random.default_rng(3))
    b = hold_out(interactions.matrix, users, np.random.default_rng(3))
    c = hold_out(interactions.matrix, users, np.random.default_rng(4))
    assert (a.target != b.target).nnz == 0
    assert (a.target != c.target).nnz > 0


def test_holdout_split_shapes(interactions: Interactions) -> None:
    s = holdout_split(interactions, seed=0)
    n = interactions.n_users
    assert s.train.shape == (len(s.train_users), interactions.n_items)
    assert len(s.train_users) + len(s.val.users) + len(s.test.users) == n
    assert (s.train != interactions.matrix[s.train_users]).nnz == 0


def test_kfold_every_user_is_a_test_user_exactly_once(interactions: Interactions) -> None:
    k = 4
    folds = list(kfold_splits(interactions, k, seed=0))
    assert len(folds) == k
    tested = np.concatenate([f.test.users for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(interactions.n_users))
    for f in folds:
        tr, va, te = set(f.train_users.tolist()), set(f.val.users.tolist()), set(
            f.test.users.tolist())
        assert not tr & va and not tr & te and not va & te
        assert len(tr | va | te) == interactions.n_users
        assert len(va) == round(0.1 * interactions.n_users)


def test_kfold_rejects_too_few_folds_or_users(interactions: Interactions) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        next(kfold_splits(interactions, 1, seed=0))
    with pytest.raises(ValueError, match="too few"):
        next(kfold_splits(interactions, interactions.n_users, seed=0))
