"""goodbooks-10k: the loader on small written files (both releases, zips and plain CSVs,
duplicates, bad rows) and on the real copy in ../shared/datasets."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.concepts import build_vocabulary
from models.data import goodbooks
from models.data.datasets import load_dataset
from models.data.download import DataUnavailableError, resolve
from models.data.parsing import MalformedFileError
from models.data.shelves import NOT_CONCEPTS, REASONS, canonical, reason
from models.data.synthetic import make_synthetic, write_goodbooks
from models.pipeline import MIN_CONCEPT_ITEMS

BOOKS_HEADER = ("book_id,goodreads_book_id,best_book_id,work_id,books_count,isbn,isbn13,"
                "authors,original_publication_year,original_title,title,language_code,"
                "average_rating,ratings_count,work_ratings_count,work_text_reviews_count,"
                "ratings_1,ratings_2,ratings_3,ratings_4,ratings_5,image_url,small_image_url")


def book(book_id: int, authors: str, year: str, title: str) -> str:
    return (f"{book_id},{100 + book_id},1,1,1,,,{authors},{year},,{title},eng,4.0,1,1,1,"
            "0,0,0,0,1,,")


def write(root: Path, files: dict[str, str], zipped: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if name in zipped:
            with zipfile.ZipFile(root / f"{name}.zip", "w") as zf:
                zf.writestr(name, text)
        else:
            (root / name).write_text(text, encoding="utf-8")
    return root


def small_files() -> dict[str, str]:
    return {
        "books.csv": "\n".join([
            BOOKS_HEADER,
            book(1, '"J.K. Rowling, Mary GrandPré"', "1997.0",
                 '"Harry Potter and the Sorcerer\'s Stone (Harry Potter, #1)"'),
            book(2, "Homer", "-750.0", "The Odyssey"),
            book(3, "Anon", "", "Untitled"),
        ]) + "\n",
        # user 7 rated book 1 twice: the first row (5) wins; (3, 7) is low
        "ratings.csv": "book_id,user_id,rating\n1,7,5\n2,7,4\n1,7,2\n3,7,3\n1,8,4\n",
        "to_read.csv": "user_id,book_id\n7,3\n8,2\n8,2\n",
        "tags.csv": "tag_id,tag_name\n0,to-read\n1,fantasy\n2,j-k-rowling\n3,sci-fi\n",
        # a duplicated row keeps its larger count; count -1 is dropped
        "book_tags.csv": ("goodreads_book_id,tag_id,count\n101,0,900\n101,1,400\n101,1,399\n"
                          "101,2,50\n102,3,-1\n102,3,8\n103,1,3\n"),
    }


def test_older_release_from_zips(tmp_path: Path) -> None:
    root = write(tmp_path / "goodbooks-10k", small_files(),
                 zipped=("ratings.csv", "book_tags.csv", "to_read.csv"))
    r = goodbooks.load_ratings(tmp_path)
    assert r.sort_values(["user", "item"])[["user", "item", "rating"]].values.tolist() == [
        [7, 1, 5.0], [7, 2, 4.0], [7, 3, 3.0], [8, 1, 4.0]]
    books = goodbooks.load_books(tmp_path)
    assert books["authors"].tolist() == [["J.K. Rowling", "Mary GrandPré"], ["Homer"],
                                         ["Anon"]]
    assert books["year"].tolist()[:2] == [1997, -750] and books["year"].isna().tolist()[2]
    assert books["title"][0] == "Harry Potter and the Sorcerer's Stone (Harry Potter, #1)"
    tags = goodbooks.load_book_tags(books, tmp_path).sort_values(["item", "tag"])
    assert tags.values.tolist() == [[1, "fantasy", 400], [1, "j-k-rowling", 50],
                                    [1, "to-read", 900], [2, "sci-fi", 8], [3, "fantasy", 3]]
    files = resolve("goodbooks-10k", tmp_path)
    assert files.path_for_messages("ratings.csv") == f"{root / 'ratings.csv.zip'}:ratings.csv"


def test_later_release_is_told_by_its_header(tmp_path: Path) -> None:
    files = small_files() | {"ratings.csv": "user_id,book_id,rating\n7,1,5\n7,2,4\n8,3,1\n"}
    write(tmp_path / "goodbooks-10k", files)
    r = goodbooks.load_ratings(tmp_path)
    assert r[["user", "item"]].values.tolist() == [[7, 1], [7, 2], [8, 3]]


def test_plain_csv_wins_over_its_zip(tmp_path: Path) -> None:
    root = write(tmp_path / "goodbooks-10k", small_files())
    with zipfile.ZipFile(root / "ratings.csv.zip", "w") as zf:
        zf.writestr("ratings.csv", "book_id,user_id,rating\n1,99,5\n")
    assert 99 not in goodbooks.load_ratings(tmp_path)["user"].tolist()


def test_to_read_marks_count_only_when_asked(tmp_path: Path) -> None:
    write(tmp_path / "goodbooks-10k", small_files())
    plain = goodbooks.load_ratings(tmp_path)
    marked = goodbooks.load_ratings(tmp_path, to_read=True)
    # (7, 3) was rated 3: the rating stands; (8, 2) is new, once
    assert len(marked) == len(plain) + 1
    assert marked.loc[(marked["user"] == 8) & (marked["item"] == 2), "rating"].tolist() == [5]
    assert marked.loc[(marked["user"] == 7) & (marked["item"] == 3), "rating"].tolist() == [3]


def test_to_read_without_its_file_is_said(tmp_path: Path) -> None:
    files = small_files()
    del files["to_read.csv"]
    write(tmp_path / "goodbooks-10k", files)
    with pytest.raises(DataUnavailableError, match="to_read.csv"):
        goodbooks.load_ratings(tmp_path, to_read=True)


def test_to_read_only_for_books(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only in goodbooks-10k"):
        load_dataset("synthetic", to_read=True)


@pytest.mark.parametrize(("member", "text", "line", "problem"), [
    ("ratings.csv", "book_id,user_id,rating\n1,7,5\n1,8,six\n", 3, "rating 'six'"),
    ("ratings.csv", "book_id,user_id,rating\n1,7,5\n1,8,9\n", 3, "out of range"),
    ("ratings.csv", "book_id;user_id;rating\n1;7;5\n", 1, "or 'user_id,book_id,rating'"),
    ("book_tags.csv", "goodreads_book_id,tag_id,count\n101,1,4\n\n\n101,77,3\n", 5,
     "tag_id 77 is not in tags.csv"),
    ("books.csv", BOOKS_HEADER + "\n" + book(1, "A", "1997", '"Two\nlines"') + "\n"
     + book(2, "A", "19x7", "T") + "\n", 4, "not a whole year"),
])
def test_malformed_files_name_file_line_and_problem(tmp_path: Path, member: str, text: str,
                                                     line: int, problem: str) -> None:
    write(tmp_path / "goodbooks-10k", small_files() | {member: text}, zipped=(member,))
    with pytest.raises(MalformedFileError) as err:
        books = goodbooks.load_books(tmp_path)
        goodbooks.load_ratings(tmp_path)
        goodbooks.load_book_tags(books, tmp_path)
    assert err.value.line == line and problem in err.value.problem
    assert err.value.path.endswith(f"{member}.zip:{member}")


def test_synthetic_books_load_end_to_end(tmp_path: Path) -> None:
    syn = make_synthetic(n_users=120, n_items=60, n_concepts=4, seed=3)
    write_goodbooks(tmp_path / "goodbooks-10k", syn, release="new")
    ds = load_dataset("goodbooks-10k", tmp_path)
    assert ds.interactions.n_users == syn.ratings.loc[syn.ratings["rating"] >= 4,
                                                      "user"].nunique()
    cat = ds.catalog.set_index("item")
    assert cat.loc[1, "authors"] and cat.loc[1, "authors"][0].startswith("Author ")
    # the noise shelves ("to-read", "kindle", "5-stars", ...) never reach the catalog
    shown = {g for gs in ds.catalog["genres"] for g in gs} | {
        n for pairs in ds.catalog["shelves"] for n, _ in pairs}
    assert shown == {"fantasy", "romance", "mystery", "horror"}
    vocab = build_vocabulary(ds.catalog, ds.tag_events, min_items=5)
    kinds = dict(zip(vocab.names, vocab.kinds, strict=True))
    assert kinds["fantasy"] == "genre" and kinds["author 0-1"] == "author"


REAL_SHELF_NAMES = ("to-read", "favorites", "owned", "currently-reading", "books-i-own",
                    "kindle", "ebook", "library", "default", "read-in-2015")


@pytest.mark.realdata
def test_real_goodbooks_counts_and_vocabulary(real_data_dir: Path) -> None:
    if not (real_data_dir / "goodbooks-10k").is_dir():
        pytest.skip(f"goodbooks-10k missing in {real_data_dir}")
    r = goodbooks.load_ratings(real_data_dir)
    # SOURCES.md: 981,756 rows by 53,424 users on 10,000 books, 2,209 pairs rated twice
    # or more (2,278 extra rows); ratings >= 4 give 648,688 distinct pairs
    assert len(r) == 981_756 - 2_278
    assert (r["user"].nunique(), r["item"].nunique()) == (53_424, 10_000)
    positives = r.loc[r["rating"] >= 4]
    assert len(positives) == 648_688
    per_user = positives.groupby("user").size()
    assert int((per_user >= 5).sum()) == 28_971 and per_user[per_user >= 5].median() == 13
    ds = load_dataset("goodbooks-10k", real_data_dir)
    assert (ds.interactions.n_users, ds.interactions.n_items) == (28_971, 9_999)
    assert ds.interactions.nnz == int(per_user[per_user >= 5].sum())
    cat = ds.catalog.set_index("item")
    assert cat.loc[2, "authors"] == ["J.K. Rowling", "Mary GrandPré"]
    assert cat.loc[1, "title"] == "The Hunger Games (The Hunger Games, #1)"
    assert cat.loc[1, "year"] == 2008 and "young adult" in cat.loc[1, "genres"]
    # Harry Potter #6 is on 37,174 fantasy shelves and 334 romance ones
    assert "fantasy" in cat.loc[27, "genres"] and "romance" not in cat.loc[27, "genres"]
    marks = goodbooks.load_ratings(real_data_dir, to_read=True)
    assert len(marks) > len(r) + 800_000
    vocab = build_vocabulary(ds.catalog, ds.tag_events, min_items=MIN_CONCEPT_ITEMS)
    names = set(vocab.names)
    for shelf in REAL_SHELF_NAMES:
        assert canonical(shelf) not in names and reason(canonical(shelf)) in REASONS
    assert {canonical(n) for n in NOT_CONCEPTS} & names == set()
    # one spelling of a concept: plurals, word order and synonyms merged
    for pair in (("magical realism", "magic realism"), ("witches", "witch"),
                 ("werewolves", "werewolf"), ("contemporary romance", "romance contemporary"),
                 ("cookbooks", "cook books")):
        assert len(names & set(pair)) <= 1, pair
    kinds = dict(zip(vocab.names, vocab.kinds, strict=True))
    assert kinds["stephen king"] == "author" and kinds["fantasy"] == "genre"
    assert kinds["science fiction"] == "genre" and "sci fi" not in names
    assert kinds["2000s"] == "decade" and kinds["vampires"] == "tag"
    assert np.isin(["j k rowling", "stephen king"], vocab.names).tolist() == [False, True]
