"""One entry point from a dataset name to the canonical form: positives (CSR +
vocabularies, method.md §1) and an item catalog aligned with the item vocabulary.

Catalog columns (one row per item of the vocabulary, in its order):
  item: external id; title: str; year: Int64; genres: list[str];
  tags: list[str] user tags (MovieLens tags.csv; one entry per application);
  hetrec_tags: list[tuple[str, int]]; directors, countries: list[str] (HetRec, trusted only);
  authors: list[str] (books); shelves: list[tuple[str, float]] content shelves other than
  genres, with their strength on the book (books; models.data.shelves).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.data import goodbooks, hetrec, movielens, msd, shelves
from models.data.download import DataUnavailableError
from models.data.interactions import Interactions, positives_from_ratings
from models.data.synthetic import make_synthetic

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = (*movielens.DATASETS, goodbooks.NAME, "msd", "synthetic")
_LIST_COLUMNS = ("genres", "tags", "hetrec_tags", "directors", "countries", "authors",
                 "shelves")


@dataclass(frozen=True)
class Dataset:
    """name: registry name; interactions: binary positives; catalog: see module doc;
    tag_events: user, item, tag rows (MovieLens user tags), for counting concepts on
    training users only (method.md §5); metadata_sources: which files fed the catalog;
    hetrec_taggers: normalised HetRec tag name -> how many HetRec users applied it
    (hetrec.tagger_counts; empty if HetRec lacks its users file), None without HetRec."""

    name: str
    interactions: Interactions
    catalog: pd.DataFrame
    tag_events: pd.DataFrame
    metadata_sources: tuple[str, ...]
    hetrec_taggers: dict[str, int] | None = None


def _empty_lists(n: int) -> pd.Series:
    return pd.Series([[] for _ in range(n)], dtype=object)


def build_catalog(item_ids: np.ndarray, movies: pd.DataFrame, tags: pd.DataFrame,
                  meta: pd.DataFrame | None) -> pd.DataFrame:
    """Align movies, user tags and HetRec metadata with the item vocabulary."""
    cat = pd.DataFrame({"item": item_ids})
    cat = cat.merge(movies[["item", "title", "year", "genres"]], on="item", how="left")
    missing = cat["title"].isna()
    if missing.any():
        log.warning("%d rated items are missing from the movie list; titled by id",
                    int(missing.sum()))
        cat.loc[missing, "title"] = [f"item {i}" for i in cat.loc[missing, "item"]]
    grouped = tags.groupby("item")["tag"].agg(list) if len(tags) else pd.Series(dtype=object)
    cat["tags"] = [grouped.get(i, []) for i in cat["item"]]
    if meta is not None:
        m = meta.set_index("item")
        for col, src in (("hetrec_tags", "tags"), ("directors", "directors"),
                         ("countries", "countries")):
            cat[col] = [m[src].get(i, []) for i in cat["item"]]
    else:
        for col in ("hetrec_tags", "directors", "countries"):
            cat[col] = _empty_lists(len(cat))
    cat["genres"] = [g if isinstance(g, list) else [] for g in cat["genres"]]
    for col in ("authors", "shelves"):
        cat[col] = _empty_lists(len(cat))
    return cat


def book_catalog(item_ids: np.ndarray, books: pd.DataFrame,
                 concepts: shelves.BookConcepts) -> pd.DataFrame:
    """goodbooks-10k's catalog: titles, years and authors from books.csv; the genres a
    book carries (strongest first) and its other content shelves with their strength."""
    empty = pd.DataFrame({"user": [], "item": [], "tag": []})
    cat = build_catalog(item_ids, books.assign(genres=_empty_lists(len(books)).to_numpy()),
                        empty, None)
    cat["authors"] = books.set_index("item")["authors"].reindex(cat["item"]).tolist()
    carried = concepts.carried
    genres = carried.loc[carried["kind"] == "genre"].groupby("item")["name"].agg(list)
    tags = carried.loc[carried["kind"] == "tag"]
    pairs = pd.Series(list(zip(tags["name"], tags["strength"], strict=True)),
                      index=tags.index).groupby(tags["item"]).agg(list)
    cat["genres"] = [genres.get(i, []) for i in cat["item"]]
    cat["shelves"] = [pairs.get(i, []) for i in cat["item"]]
    cat["authors"] = [a if isinstance(a, list) else [] for a in cat["authors"]]
    return cat


def load_dataset(name: str, data_dir: str | Path | None = None, *,
                 hetrec_metadata: bool = True, seed: int = 0,
                 to_read: bool = False) -> Dataset:
    """Load `name` (one of DATASETS) into the canonical form.

    hetrec_metadata: enrich MovieLens catalogs that have links.csv with HetRec directors,
    countries and tags. If HetRec cannot be found or downloaded, a warning says so and
    the catalog carries MovieLens genres and tags only (metadata_sources tells).
    to_read: goodbooks-10k only; count "to read" marks as positives too
    (models.data.goodbooks.load_ratings). Off by default.
    """
    if to_read and name != goodbooks.NAME:
        raise ValueError(f"'to read' marks exist only in {goodbooks.NAME}, not in {name}")
    if name == goodbooks.NAME:
        data = positives_from_ratings(goodbooks.load_ratings(data_dir, to_read=to_read))
        books = goodbooks.load_books(data_dir)
        concepts = shelves.book_concepts(goodbooks.load_book_tags(books, data_dir), books)
        empty = pd.DataFrame({"user": pd.Series(dtype="int64"),
                              "item": pd.Series(dtype="int64"), "tag": pd.Series(dtype=str)})
        sources = [f"{name} books", f"{name} shelves"]
        if to_read:
            sources.append(f"{name} to_read as positives")
        log.info("%s: %d users, %d books, %d positives", name, data.n_users, data.n_items,
                 data.nnz)
        return Dataset(name, data, book_catalog(data.items.ids, books, concepts), empty,
                       tuple(sources))
    if name == "synthetic":
        syn = make_synthetic(seed=seed)
        data = positives_from_ratings(syn.ratings)
        cat = build_catalog(data.items.ids, syn.movies, syn.tags, None)
        return Dataset(name, data, cat, syn.tags, ("synthetic",))
    if name == "msd":
        frame, vocab = msd.load_with_vocab(data_dir)
        data = positives_from_ratings(frame.rename(columns={"plays": "rating"}),
                                      threshold=None, min_item_users=200,
                                      min_user_positives=20)
        songs = pd.DataFrame({"item": data.items.ids,
                              "title": vocab.songs[data.items.ids],
                              "year": pd.array([pd.NA] * data.n_items, dtype="Int64"),
                              "genres": _empty_lists(data.n_items)})
        empty = pd.DataFrame({"user": [], "item": [], "tag": []})
        return Dataset(name, data, build_catalog(data.items.ids, songs, empty, None), empty,
                       ("msd train_triplets",))
    if name not in movielens.DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    ratings = movielens.load_ratings(name, data_dir)
    data = positives_from_ratings(ratings)
    movies = movielens.load_movies(name, data_dir)
    tags = movielens.load_tags(name, data_dir)
    sources = [f"{name} movies", f"{name} tags"]
    meta = None
    taggers = None
    if hetrec_metadata and name in ("ml-latest-small", "ml-20m", "ml-25m"):
        try:
            meta = hetrec.load_metadata(movielens.load_links(name, data_dir), data_dir)
            taggers = hetrec.tagger_counts(data_dir)
            sources.append(hetrec.NAME)
        except DataUnavailableError as exc:
            log.warning("HetRec metadata unavailable, catalog has MovieLens genres and tags "
                        "only: %s", exc)
    catalog = build_catalog(data.items.ids, movies, tags, meta)
    log.info("%s: %d users, %d items, %d positives", name, data.n_users, data.n_items,
             data.nnz)
    return Dataset(name, data, catalog, tags, tuple(sources), taggers)
