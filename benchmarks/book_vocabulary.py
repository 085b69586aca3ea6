"""What the Goodreads shelf filter keeps: the concept vocabulary of goodbooks-10k.
Writes reports/goodbooks-10k/vocabulary.{json,md}.

    .venv/bin/python -m benchmarks.book_vocabulary

For every shelf name the filter (models.data.shelves) gives a reason it is not content
(stop-list, year, rating, status, format, ownership, opinion, short, author) or keeps it
as a content concept, merged with its other spellings. The report counts each reason's
distinct names, its share of the (book, shelf) rows and of the shelvings (users x books),
then what a book carries after the per-book threshold, and the vocabulary the labels are
chosen from (concepts on >= MIN_CONCEPT_ITEMS books), with the top concepts of each kind.
It fails if any name of models.data.shelves.NOT_CONCEPTS is a concept of that vocabulary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_reports
from models.concepts import build_vocabulary
from models.data import goodbooks
from models.data.shelves import (
    MIN_SHARE,
    MIN_SHELVERS,
    NOT_CONCEPTS,
    REASONS,
    book_concepts,
    canonical,
)
from models.pipeline import MIN_CONCEPT_ITEMS

TOP = 15


def measure(data_dir: str | None) -> dict[str, Any]:
    books = goodbooks.load_books(data_dir)
    concepts = book_concepts(goodbooks.load_book_tags(books, data_dir), books)
    summary = concepts.summary(TOP)
    from models.data.datasets import load_dataset

    ds = load_dataset(goodbooks.NAME, data_dir)
    vocab = build_vocabulary(ds.catalog, ds.tag_events, min_items=MIN_CONCEPT_ITEMS)
    items = np.asarray((vocab.counts > 0).sum(axis=1)).ravel()
    kinds: dict[str, Any] = {}
    for kind in sorted(set(vocab.kinds)):
        rows = [i for i, k in enumerate(vocab.kinds) if k == kind]
        rows.sort(key=lambda i: (-items[i], vocab.names[i]))
        kinds[kind] = {"concepts": len(rows),
                       "top": [[vocab.names[i], int(items[i])] for i in rows[:TOP]]}
    leaked = sorted({canonical(n) for n in NOT_CONCEPTS} & set(vocab.names))
    if leaked:
        raise SystemExit(f"shelf names in the vocabulary: {leaked}")
    carried = concepts.carried
    per_book = carried.groupby("item").size()
    genres = carried.loc[carried["kind"] == "genre"].groupby("item").size()
    return {
        "dataset": goodbooks.NAME,
        "settings": {"min_shelvers": MIN_SHELVERS, "min_share": MIN_SHARE,
                     "min_concept_items": MIN_CONCEPT_ITEMS},
        "filter": summary,
        "books": {"books": len(books), "with_a_concept": int(per_book.size),
                  "with_a_genre": int(genres.size),
                  "concepts_per_book_median": float(per_book.median()),
                  "genres_per_book_median": float(genres.median())},
        "vocabulary": {"concepts": len(vocab), "kinds": kinds,
                       "not_concepts_checked": len(NOT_CONCEPTS), "leaked": leaked},
    }


def markdown(r: dict[str, Any]) -> list[str]:
    f, s, b, v = r["filter"], r["settings"], r["books"], r["vocabulary"]
    lines = [
        "# goodbooks-10k: what the shelf filter keeps", "",
        "`python -m benchmarks.book_vocabulary` (models.data.shelves). Goodreads tags are "
        f"shelf names: {f['shelf_names']:,} names on {f['rows']:,} (book, shelf) rows, "
        f"{f['shelvings']:,} shelvings (users x books).", "",
        "## Shelf names by the rule that decides them", "",
        "| rule | names | share of rows | share of shelvings | most used |",
        "|---|---|---|---|---|",
    ]
    for why in (*REASONS, "content"):
        part = f["by_reason"][why]
        ex = ", ".join(f"`{e}`" for e in part["examples"][:8])
        lines.append(f"| {why} | {part['names']:,} | {100 * part['rows_share']:.1f}% | "
                     f"{100 * part['shelvings_share']:.1f}% | {ex} |")
    lines += [
        "", f"Content shelves make {f['content_concepts']:,} concept names; "
        f"{f['merged_spellings']:,} of them merge several spellings:", "",
        "| concept | spellings (up to 8) |", "|---|---|",
        *(f"| {name} | {', '.join(f'`{t}`' for t in tags)} |"
          for name, tags in f["merge_examples"].items()),
        "", "## What a book carries", "",
        f"A book carries a content concept when >= {s['min_shelvers']} users shelved it so "
        f"and >= {s['min_share']:.0%} as many as its most used content concept "
        f"({f['carried_pairs']:,} (book, concept) pairs). {b['with_a_concept']:,} of "
        f"{b['books']:,} books carry a concept and {b['with_a_genre']:,} a genre; median "
        f"{b['concepts_per_book_median']:g} concepts and {b['genres_per_book_median']:g} "
        "genres a book.", "",
        "## The vocabulary labels are chosen from", "",
        f"Concepts on >= {s['min_concept_items']} of the dataset's books: "
        f"{v['concepts']:,}. None of the {v['not_concepts_checked']} shelf names that must "
        "never be concepts (models.data.shelves.NOT_CONCEPTS: issue 24's list and those a "
        "review of the first vocabulary found) is one.", "",
        "| kind | concepts | top concepts (books) |", "|---|---|---|",
    ]
    for kind, part in v["kinds"].items():
        top = ", ".join(f"{n} ({c})" for n, c in part["top"])
        lines.append(f"| {kind} | {part['concepts']} | {top} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None,
                        help="Folder holding goodbooks-10k/ (default: KNOBS_DATA_DIR).")
    parser.add_argument("--out", type=Path, default=Path("reports/goodbooks-10k/vocabulary"))
    args = parser.parse_args()
    report = measure(args.data_dir)
    write_reports(args.out, report, markdown(report))


if __name__ == "__main__":
    main()
