"""The one canonical form every loader converts to: a binary user x item CSR matrix plus
id vocabularies, and the seeded splits of method.md §1.

Protocol (method.md §1):
- a rating >= 4.0 is a positive, everything else is dropped; X is binary;
- users with >= 5 positives are kept; no item filter on MovieLens
  (MSD: items with >= 200 users first, then users with >= 20);
- strong generalisation: users, not ratings, are split; for each validation/test user
  ceil(0.2 n) of their items, drawn at random, are the targets, the rest the input.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


class Vocabulary:
    """A bijection between external ids (MovieLens movieId, MSD song id, ...) and dense
    indices 0..n-1, in the order the ids were given.

    >>> v = Vocabulary(np.array([30, 10, 20]))
    >>> v.index([10, 30]).tolist(), v.ids[[1, 0]].tolist()
    ([1, 0], [10, 30])
    """

    def __init__(self, ids: np.ndarray | Sequence[object]) -> None:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"vocabulary ids must be one-dimensional, got shape {arr.shape}")
        self.ids: np.ndarray = arr
        self._index = pd.Index(arr)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise ValueError(f"vocabulary ids must be unique; {dup!r} appears twice")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def index(self, ids: np.ndarray | Sequence[object]) -> np.ndarray:
        """Dense indices of `ids`; raises KeyError naming the first unknown id."""
        idx = np.asarray(self._index.get_indexer(np.asarray(ids)))
        if (idx < 0).any():
            unknown = np.asarray(ids)[idx < 0][0]
            raise KeyError(f"unknown id {unknown!r}")
        return idx.astype(np.int64)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self.ids, other.ids)

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return hash(self.ids.tobytes())


@dataclass(frozen=True)
class Interactions:
    """Binary implicit feedback.

    matrix: [users, items] CSR, float32, entries 1.0; row i is user `users.ids[i]`.
    """

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def fingerprint(self) -> str:
        """sha256 over the vocabularies and the sparsity pattern: two datasets with the
        same fingerprint train the same model."""
        h = hashlib.sha256()
        for arr in (
            self.users.ids.astype(str).astype("U"),
            self.items.ids.astype(str).astype("U"),
        ):
            h.update("\x1f".join(arr.tolist()).encode())
            h.update(b"\x1e")
        h.update(np.ascontiguousarray(self.matrix.indptr, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.matrix.indices, dtype=np.int64).tobytes())
        return h.hexdigest()


def positives_from_ratings(
    ratings: pd.DataFrame,
    *,
    threshold: float | None = 4.0,
    min_user_positives: int = 5,
    min_item_users: int = 0,
) -> Interactions:
    """Turn a `user, item[, rating]` frame into binary `Interactions` (method.md §1).

    threshold: ratings >= threshold are positives; None keeps every row (MSD play counts).
    min_item_users: applied first (MSD: 200), then min_user_positives (5; MSD: 20).
    Users are ordered by id, items by id, so the result does not depend on row order.
    """
    missing = {"user", "item"} - set(ratings.columns)
    if missing:
        raise ValueError(f"ratings frame lacks column(s) {sorted(missing)}")
    df = ratings
    if threshold is not None:
        if "rating" not in df.columns:
            raise ValueError("a rating threshold needs a 'rating' column")
        df = df.loc[df["rating"] >= threshold]
    df = df[["user", "item"]].drop_duplicates()
    if min_item_users > 0:
        counts = df["item"].map(df["item"].value_counts())
        df = df.loc[counts >= min_item_users]
    counts = df["user"].map(df["user"].value_counts())
    df = df.loc[counts >= min_user_positives]
    if df.empty:
        raise ValueError(
            f"no user has >= {min_user_positives} positives"
            + (f" (rating >= {threshold})" if threshold is not None else "")
        )
    user_ids = np.sort(df["user"].unique())
    item_ids = np.sort(df["item"].unique())
    users, items = Vocabulary(user_ids), Vocabulary(item_ids)
    rows = users.index(df["user"].to_numpy())
    cols = items.index(df["item"].to_numpy())
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(users), len(items)))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return Interactions(matrix=matrix, users=users, items=items)


@dataclass(frozen=True)
class HeldOut:
    """Fold-in evaluation users: `input` is what the model sees, `target` what it must find.

    users: [n] row indices into the full matrix; input, target: [n, items] CSR.
    """

    users: np.ndarray
    input: sp.csr_matrix
    target: sp.csr_matrix


@dataclass(frozen=True)
class Split:
    """train: [n_train, items] CSR of training users (all their items); val/test: held out."""

    train_users: np.ndarray
    train: sp.csr_matrix
    val: HeldOut
    test: HeldOut


def hold_out(matrix: sp.csr_matrix, users: np.ndarray, rng: np.random.Generator,
             fraction: float = 0.2) -> HeldOut:
    """For each user, ceil(fraction * n) of their items drawn at random become targets."""
    sub = matrix[users].tocsr()
    sub.sort_indices()
    in_rows: list[np.ndarray] = []
    in_cols: list[np.ndarray] = []
    t_rows: list[np.ndarray] = []
    t_cols: list[np.ndarray] = []
    for r in range(sub.shape[0]):
        items = sub.indices[sub.indptr[r] : sub.indptr[r + 1]]
        n_t = math.ceil(fraction * len(items))
        perm = rng.permutation(len(items))
        tgt = np.sort(items[perm[:n_t]])
        inp = np.sort(items[perm[n_t:]])
        t_rows.append(np.full(len(tgt), r))
        t_cols.append(tgt)
        in_rows.append(np.full(len(inp), r))
        in_cols.append(inp)
    shape = sub.shape

    def build(rows: list[np.ndarray], cols: list[np.ndarray]) -> sp.csr_matrix:
        rr = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        cc = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        m = sp.csr_matrix((np.ones(len(rr), dtype=np.float32), (rr, cc)), shape=shape)
        m.sort_indices()
        return m

    return HeldOut(users=np.asarray(users), input=build(in_rows, in_cols),
                   target=build(t_rows, t_cols))


def split_users(n_users: int, seed: int,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded 80/10/10 partition of user indices into train / validation / test."""
    if not math.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n_users)
    n_val = round(fractions[1] * n_users)
    n_test = round(fractions[2] * n_users)
    n_train = n_users - n_val - n_test
    return (np.sort(perm[:n_train]), np.sort(perm[n_train : n_train + n_val]),
            np.sort(perm[n_train + n_val :]))


def make_split(data: Interactions, train_users: np.ndarray, val_users: np.ndarray,
               test_users: np.ndarray, seed: int) -> Split:
    """Hold out targets for validation and test users with a generator seeded by `seed`."""
    rng = np.random.default_rng([seed, 1])
    train = data.matrix[train_users].tocsr()
    return Split(train_users=train_users, train=train,
                 val=hold_out(data.matrix, val_users, rng),
                 test=hold_out(data.matrix, test_users, rng))


def holdout_split(data: Interactions, seed: int) -> Split:
    """method.md §1: one seeded 80/10/10 user split."""
    tr, va, te = split_users(data.n_users, seed)
    return make_split(data, tr, va, te, seed)


def kfold_splits(data: Interactions, k: int, seed: int,
                 val_fraction: float = 0.1) -> Iterator[Split]:
    """Knobs (method.md §1): K folds over users, every user a test user exactly once.

    In fold f the f-th user block is the test set; from the other users a seeded
    `val_fraction` of *all* users is the validation set (for early stopping), the rest train.
    """
    if k < 2:
        raise ValueError(f"--folds must be at least 2, got {k}")
    if data.n_users < 2 * k:
        raise ValueError(f"{data.n_users} users are too few for {k} folds")
    perm = np.random.default_rng(seed).permutation(data.n_users)
    blocks = np.array_split(perm, k)
    n_val = round(val_fraction * data.n_users)
    for f in range(k):
        test = np.sort(blocks[f])
        rest = np.concatenate([blocks[g] for g in range(k) if g != f])
        rest = np.random.default_rng([seed, f]).permutation(rest)
        yield make_split(data, np.sort(rest[n_val:]), np.sort(rest[:n_val]), test, seed + f)
