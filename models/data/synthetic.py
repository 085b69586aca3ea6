"""Synthetic data with planted concepts, for fast unit tests.

Every item carries one main concept (and sometimes a second); every user prefers a few
concepts and picks most of their items from them, the rest by popularity. So a model
that works must find the concepts, and a test can check that it did.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

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


BOOK_GENRES = ("fantasy", "romance", "mystery", "horror", "science-fiction",
               "historical-fiction", "poetry", "young-adult", "classics", "humor")
"""Shelf names the books version of the synthetic data gives its concepts, in order."""
NOISE_SHELVES = ("to-read", "currently-reading", "favorites", "owned", "kindle",
                 "read-in-2015", "5-stars", "books-i-own")
"""Shelves every synthetic book is also on, as real Goodreads books are: no content."""


def write_goodbooks(root: Path, syn: Synthetic | None = None, *, zipped: bool = True,
                    release: str = "old") -> Path:
    """Write synthetic data in goodbooks-10k's file format under `root` (created), for
    tests and trials of the loader: books.csv and tags.csv, and ratings.csv,
    book_tags.csv and to_read.csv (two books each user has not rated), each in a zip
    of its own (`zipped`) or plain.

    Concepts become genre shelves (BOOK_GENRES; up to 10 concepts), each book is also on
    NOISE_SHELVES, and each concept's books are written by four authors of their own
    ("Author 0-1"). release: "old" (`book_id,user_id,rating`) or "new"
    (`user_id,book_id,rating`). goodreads_book_id is 1000 + book_id. Returns `root`.
    """
    syn = syn if syn is not None else make_synthetic()
    if len(syn.concepts) > len(BOOK_GENRES):
        raise ValueError(f"at most {len(BOOK_GENRES)} concepts have book genre names")
    if release not in ("old", "new"):
        raise ValueError(f"release must be 'old' or 'new', got {release!r}")
    root.mkdir(parents=True, exist_ok=True)
    n_items = len(syn.movies)
    main = syn.item_concepts.argmax(axis=1)
    books = pd.DataFrame({
        "book_id": syn.movies["item"], "goodreads_book_id": syn.movies["item"] + 1000,
        "authors": [f"Author {c}-{i % 4}" for i, c in enumerate(main)],
        "original_publication_year": syn.movies["year"].astype("float64"),
        "title": [f"Book {i}" for i in syn.movies["item"]],
    })
    header = ("book_id,goodreads_book_id,best_book_id,work_id,books_count,isbn,isbn13,"
              "authors,original_publication_year,original_title,title,language_code,"
              "average_rating,ratings_count,work_ratings_count,work_text_reviews_count,"
              "ratings_1,ratings_2,ratings_3,ratings_4,ratings_5,image_url,small_image_url")
    lines = [header]
    for book_id, gr_id, author, year, title in zip(
            books["book_id"].tolist(), books["goodreads_book_id"].tolist(),
            books["authors"].tolist(), books["original_publication_year"].tolist(),
            books["title"].tolist(), strict=True):
        lines.append(f"{book_id},{gr_id},{gr_id},1,1,,,{author},{year},{title},{title},eng,"
                     "4.0,10,10,1,0,0,0,5,5,,")
    (root / "books.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shelf_names = [*BOOK_GENRES[: len(syn.concepts)], *NOISE_SHELVES]
    (root / "tags.csv").write_text("tag_id,tag_name\n" + "".join(
        f"{i},{n}\n" for i, n in enumerate(shelf_names)), encoding="utf-8")
    tag_rows = ["goodreads_book_id,tag_id,count"]
    for i in range(n_items):
        for c in np.flatnonzero(syn.item_concepts[i]):
            tag_rows.append(f"{1001 + i},{c},{50 if c == main[i] else 20}")
        for j in range(len(NOISE_SHELVES)):
            tag_rows.append(f"{1001 + i},{len(syn.concepts) + j},{100 + j}")
    r = syn.ratings
    if release == "old":
        ratings = ["book_id,user_id,rating", *(f"{i},{u},{int(x)}" for u, i, x in
                                               zip(r["user"], r["item"], r["rating"],
                                                   strict=True))]
    else:
        ratings = ["user_id,book_id,rating", *(f"{u},{i},{int(x)}" for u, i, x in
                                               zip(r["user"], r["item"], r["rating"],
                                                   strict=True))]
    rated = set(zip(r["user"].tolist(), r["item"].tolist(), strict=True))
    marks = [(u, i) for u in sorted(set(r["user"].tolist()))       # two unrated books each
             for i in (1 + (u * 7) % n_items, 1 + (u * 13 + 5) % n_items)
             if (u, i) not in rated]
    to_read = ["user_id,book_id", *(f"{u},{i}" for u, i in dict.fromkeys(marks))]
    for name, rows in (("ratings.csv", ratings), ("book_tags.csv", tag_rows),
                       ("to_read.csv", to_read)):
        text = "\n".join(rows) + "\n"
        if zipped:
            with zipfile.ZipFile(root / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(name, text)
        else:
            (root / name).write_text(text, encoding="utf-8")
    return root
