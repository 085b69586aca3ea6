"""goodbooks-10k (Zygmunt Zając; books from Goodreads, CC BY-SA 4.0): ratings, "to read"
marks, book metadata and the shelves users put books on, converted to one column
convention.

Files (plain CSVs, or each CSV alone in a zip beside them, `ratings.csv.zip`; see
`models.data.download.FolderFiles`), UTF-8 with a header line:
- ratings.csv: two releases with the same name. The older (Kaggle-era) one has 981,756
  rows with the columns `book_id,user_id,rating`; the later 6M-row one (the v1.0 GitHub
  release) has `user_id,book_id,rating`. The header tells them apart.
- to_read.csv: `user_id,book_id` "want to read" marks (optional; see `load_ratings`).
- books.csv: `book_id` (1..10000, the id ratings use), `goodreads_book_id` (the id
  book_tags uses), authors ("J.K. Rowling, Mary GrandPré"), original publication year
  (blank for 21 books, negative for ancient works), title.
- tags.csv: `tag_id,tag_name`; book_tags.csv: `goodreads_book_id,tag_id,count`, the
  number of users who put the book on that shelf (the 100 most used per book).

Quirks handled here: 2,209 (book, user) pairs are rated more than once in the older
release, in 2,278 extra rows (a pair keeps its first row, in file order, which gives the
648,688 positive pairs SOURCES.md counts); book_tags has 8 duplicated
(book, tag) rows, which keep the larger count (they are re-reads of one shelf: 6,066 and
6,065), and 6 rows with count -1 (unknown), which are dropped.

Every loader takes `data_dir` (default: `KNOBS_DATA_DIR`, then the cache, then a download;
see `models.data.download.resolve`).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from models.data.download import DataUnavailableError, DatasetFiles, resolve
from models.data.parsing import Column, MalformedFileError, TableSpec, read_table

log = logging.getLogger(__name__)

NAME = "goodbooks-10k"

_BOOK = Column("item", "int", low=1)
_USER = Column("user", "int", low=1)
_RATING = Column("rating", "float", low=1, high=5)

RATINGS_OLD = TableSpec(",", (_BOOK, _USER, _RATING), headers=("book_id,user_id,rating",))
"""The older release (981,756 rows), the one in ../shared/datasets."""
RATINGS_NEW = TableSpec(",", (_USER, _BOOK, _RATING), headers=("user_id,book_id,rating",))
"""The later 6M-row release (GitHub v1.0)."""
TO_READ = TableSpec(",", (_USER, _BOOK), headers=("user_id,book_id",))
_TEXT = {"allow_empty": True}
BOOKS = TableSpec(",", (
    _BOOK, Column("goodreads_book_id", "int"), Column("best_book_id", "str", **_TEXT),
    Column("work_id", "str", **_TEXT), Column("books_count", "str", **_TEXT),
    Column("isbn", "str", **_TEXT), Column("isbn13", "str", **_TEXT),
    Column("authors", "str"), Column("year", "str", **_TEXT),
    Column("original_title", "str", **_TEXT), Column("title", "str"),
    *(Column(name, "str", **_TEXT) for name in (
        "language_code", "average_rating", "ratings_count", "work_ratings_count",
        "work_text_reviews_count", "ratings_1", "ratings_2", "ratings_3", "ratings_4",
        "ratings_5", "image_url", "small_image_url")),
), headers=(
    "book_id,goodreads_book_id,best_book_id,work_id,books_count,isbn,isbn13,authors,"
    "original_publication_year,original_title,title,language_code,average_rating,"
    "ratings_count,work_ratings_count,work_text_reviews_count,ratings_1,ratings_2,"
    "ratings_3,ratings_4,ratings_5,image_url,small_image_url",
))
TAGS = TableSpec(",", (Column("tag_id", "int", low=0), Column("tag", "str", allow_empty=True)),
                 headers=("tag_id,tag_name",))
BOOK_TAGS = TableSpec(",", (Column("goodreads_book_id", "int"), Column("tag_id", "int", low=0),
                            Column("count", "int", low=-1)),
                      headers=("goodreads_book_id,tag_id,count",))


def _read(files: DatasetFiles, member: str, spec: TableSpec) -> pd.DataFrame:
    return read_table(lambda: files.open(member), spec, files.path_for_messages(member))


def _header(files: DatasetFiles, member: str) -> str:
    with files.open(member) as stream:
        return stream.readline().decode("utf-8", errors="replace").lstrip("\ufeff").strip()


def _line_of_row(files: DatasetFiles, member: str, row: int) -> int:
    """The 1-based line on which data row `row` (0-based, after the header) of `member`
    starts, counting blank lines and quoted line breaks as a CSV reader does."""
    with files.open(member) as stream:
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
        next(reader, None)
        seen = -1
        start = reader.line_num + 1
        for fields in reader:
            if fields:
                seen += 1
                if seen == row:
                    return start
            start = reader.line_num + 1
    return start


def _bad_row(files: DatasetFiles, member: str, row: int, problem: str) -> MalformedFileError:
    return MalformedFileError(files.path_for_messages(member),
                              _line_of_row(files, member, row), problem)


def load_ratings(data_dir: str | Path | None = None, *, to_read: bool = False
                 ) -> pd.DataFrame:
    """Every distinct (user, book) rating: columns user, item (book_id): int64, rating:
    float32 in 1..5. A pair rated more than once keeps its first row in file order.

    to_read: also count each "to read" mark (to_read.csv) as a rating of 5, so as a
    positive, where the user has not rated that book (off by default: a mark says a user
    wants a book, not that they liked it; method.md §1 counts ratings >= 4 only).
    Raises MalformedFileError naming the file, line and problem.
    """
    files = resolve(NAME, data_dir)
    header = _header(files, "ratings.csv")
    specs = {spec.headers[0]: spec for spec in (RATINGS_OLD, RATINGS_NEW)}
    if header not in specs:
        raise MalformedFileError(files.path_for_messages("ratings.csv"), 1,
                                 f"expected header {RATINGS_OLD.headers[0]!r} (the older "
                                 f"release) or {RATINGS_NEW.headers[0]!r} (the 6M-row one), "
                                 f"found {header[:80]!r}")
    spec = specs[header]
    df = _read(files, "ratings.csv", spec)[["user", "item", "rating"]]
    rows = len(df)
    df = df.drop_duplicates(["user", "item"], keep="first").reset_index(drop=True)
    log.info("%s ratings.csv (%s release): %d rows, %d duplicate pairs dropped; %d users, "
             "%d books", NAME, "user_id first" if spec is RATINGS_NEW else "book_id first",
             rows, rows - len(df), df["user"].nunique(), df["item"].nunique())
    if to_read:
        if not files.exists("to_read.csv"):
            raise DataUnavailableError(f"{files.path_for_messages('to_read.csv')} is "
                                       "missing; counting 'to read' marks needs it")
        marks = _read(files, "to_read.csv", TO_READ).drop_duplicates()
        marks = marks.assign(rating=np.float32(5.0))
        rated = len(df)
        df = pd.concat([df, marks], ignore_index=True).drop_duplicates(
            ["user", "item"], keep="first").reset_index(drop=True)
        log.info("%s: %d 'to read' marks counted as positives", NAME, len(df) - rated)
    df["rating"] = df["rating"].astype(np.float32)
    return df


def load_books(data_dir: str | Path | None = None) -> pd.DataFrame:
    """The book catalogue: item (book_id), goodreads_book_id: int64, title: str (as
    Goodreads shows it, series included: "The Hunger Games (The Hunger Games, #1)"),
    year: Int64 (original publication; <NA> where blank, negative before the common
    era), authors: list[str] (every credited name, in order).
    Raises MalformedFileError for a bad row or a year that is not a whole number."""
    files = resolve(NAME, data_dir)
    raw = _read(files, "books.csv", BOOKS)
    years = pd.to_numeric(raw["year"].str.strip(), errors="coerce")
    bad = (raw["year"].str.strip() != "") & (years.isna() | (years % 1 != 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise _bad_row(files, "books.csv", row, f"original_publication_year "
                       f"{raw['year'].iloc[row]!r} is not a whole year")
    dup = raw["item"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise _bad_row(files, "books.csv", row, f"book_id {raw['item'].iloc[row]} appears "
                       "twice")
    authors = [[a.strip() for a in s.split(",") if a.strip()] for s in raw["authors"]]
    return pd.DataFrame({"item": raw["item"], "goodreads_book_id": raw["goodreads_book_id"],
                         "title": raw["title"].str.strip(),
                         "year": years.astype("Int64"),
                         "authors": pd.Series(authors, index=raw.index, dtype=object)})


def load_book_tags(books: pd.DataFrame, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Shelf counts per book: item (book_id), tag (the shelf name, verbatim), count (how
    many users shelved it: >= 1), joined through goodreads_book_id. Rows with count -1
    are dropped; a duplicated (book, tag) row keeps its larger count; a tag id missing
    from tags.csv is a MalformedFileError naming book_tags.csv and the line."""
    files = resolve(NAME, data_dir)
    names = _read(files, "tags.csv", TAGS)
    rows = _read(files, "book_tags.csv", BOOK_TAGS)
    unknown = ~rows["tag_id"].isin(names["tag_id"])
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise _bad_row(files, "book_tags.csv", row,
                       f"tag_id {rows['tag_id'].iloc[row]} is not in tags.csv")
    counted = rows.loc[rows["count"] > 0]
    dropped = len(rows) - len(counted)
    kept = counted.groupby(["goodreads_book_id", "tag_id"], as_index=False, sort=False)[
        "count"].max()
    joined = kept.merge(books[["item", "goodreads_book_id"]], on="goodreads_book_id",
                        how="inner").merge(names, on="tag_id", how="left")
    log.info("%s book_tags: %d rows, %d without a count, %d duplicates merged, %d joined "
             "to books", NAME, len(rows), dropped, len(rows) - dropped - len(kept),
             len(joined))
    return joined[["item", "tag", "count"]].astype({"count": np.int64}).reset_index(drop=True)
