"""Synthetic data with planted concepts, for fast unit tests.

Every item carries one main concept (and sometimes a second); every user prefers a few
concepts and picks most of their items from them, the rest by popularity. So a model
that works must find the concepts, and a test can check that it did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Synthetic:
    """ratings: user, item, rating, timestamp (ratings < 4 are noise the loader drops);
    movies: item, title, year, genres (the item's concept names, as a catalog has them);
    tags: user, item, tag, timestamp (one tag row per item concept);
    item_concepts: [items, concepts] bool; user_concepts: [users, concepts] bool."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    tags: pd.DataFrame
    concepts: list[str]
    item_concepts: np.ndarray
    user_concepts: np.ndarray


def make_synthetic(n_users: int = 400, n_items: int = 300, n_concepts: int = 8,
                   concepts_per_user: tuple[int, int] = (1, 2),
                   items_per_user: tuple[int, int] = (8, 30), on_concept: float = 0.85,
                   seed: int = 0) -> Synthetic:
    """Seeded generator; item ids start at 1 (like MovieLens), user ids too."""
    if n_concepts < 2 or n_items < n_concepts:
        raise ValueError("need at least 2 concepts and one item per concept")
    rng = np.random.default_rng(seed)
    concepts = [f"concept-{c}" for c in range(n_concepts)]
    main = np.arange(n_items) % n_concepts
    rng.shuffle(main)
    item_concepts = np.zeros((n_items, n_concepts), dtype=bool)
    item_concepts[np.arange(n_items), main] = True
    second = rng.random(n_items) < 0.2
    item_concepts[np.where(second)[0], rng.integers(0, n_concepts, second.sum())] = True
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.6
    popularity = popularity[rng.permutation(n_items)]

    user_concepts = np.zeros((n_users, n_concepts), dtype=bool)
    rows: list[tuple[int, int, float, int]] = []
    for u in range(n_users):
        liked = rng.choice(n_concepts, rng.integers(concepts_per_user[0],
                                                    concepts_per_user[1] + 1), replace=False)
        user_concepts[u, liked] = True
        on = item_concepts[:, liked].any(axis=1)
        w_on = popularity * on
        w_off = popularity * ~on
        n = int(rng.integers(items_per_user[0], items_per_user[1] + 1))
        n_on = min(int(rng.binomial(n, on_concept)), int(on.sum()))
        n_off = min(n - n_on, int((~on).sum()))
        picked = np.concatenate([
            rng.choice(n_items, n_on, replace=False, p=w_on / w_on.sum()),
            rng.choice(n_items, n_off, replace=False, p=w_off / w_off.sum()),
        ])
        for i in picked:
            rows.append((u + 1, int(i) + 1, float(rng.choice([4.0, 4.5, 5.0])), 1_000_000 + u))
        for i in rng.choice(n_items, 2, replace=False):  # low ratings: dropped as negatives
            if int(i) not in set(picked.tolist()):
                rows.append((u + 1, int(i) + 1, 2.0, 1_000_000 + u))
    ratings = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).astype(
        {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"})
    names = [[concepts[c] for c in np.where(item_concepts[i])[0]] for i in range(n_items)]
    movies = pd.DataFrame({
        "item": np.arange(1, n_items + 1, dtype=np.int64),
        "title": [f"Item {i + 1} ({'/'.join(n)})" for i, n in enumerate(names)],
        "year": pd.array(1950 + rng.integers(0, 70, n_items), dtype="Int64"),
        "genres": names,
    })
    tag_rows = [(1, i + 1, c, 0) for i, n in enumerate(names) for c in n]
    tags = pd.DataFrame(tag_rows, columns=["user", "item", "tag", "timestamp"])
    return Synthetic(ratings, movies, tags, concepts, item_concepts, user_concepts)
