"""The Goodreads shelf filter: spellings merge, non-content shelves are dropped with a
reason, a book carries only the concepts enough of its readers shelved it under."""

from __future__ import annotations

import pandas as pd
import pytest

from models.data.shelves import (
    GENRES,
    MIN_SHARE,
    author_keys,
    author_shelves,
    book_concepts,
    canonical,
    spelling_merges,
    reason,
)


@pytest.mark.parametrize(("shelf", "name"), [
    ("sci-fi", "science fiction"), ("scifi", "science fiction"),
    ("Science-Fiction", "science fiction"), ("SF", "science fiction"),
    ("children-s-books", "children's books"), ("kids", "children's books"),
    ("ya", "young adult"), ("teen-fiction", "young adult"), ("non-fiction", "nonfiction"),
    ("humour", "humor"), ("sci_fi_&_fantasy", "science fiction and fantasy"),
    ("didn-t-finish", "didn't finish"), ("horror", "horror"),
])
def test_spellings_of_one_concept_merge(shelf: str, name: str) -> None:
    assert canonical(shelf) == name


@pytest.mark.parametrize(("shelf", "why"), [
    ("to-read", "status"), ("currently-reading", "status"), ("dnf", "status"),
    ("book-club", "status"), ("didn-t-finish", "status"), ("wish-list", "status"),
    ("kindle", "format"), ("e-book", "format"), ("audiobooks", "format"),
    ("paperback", "format"), ("owned", "ownership"), ("books-i-own", "ownership"),
    ("my-library", "ownership"), ("library", "ownership"), ("favorites", "opinion"),
    ("all-time-favourites", "opinion"), ("read-in-2015", "year"), ("2006", "year"),
    ("2016-reading-challenge", "year"), ("5-stars", "rating"), ("1", "rating"),
    ("default", "stop-list"), ("fiction", "stop-list"), ("series", "stop-list"),
    ("uk", "short"), ("3.5-stars", "rating"), ("4-and-5-star-books", "rating"),
    ("2.5", "rating"), ("biblioteca", "stop-list"), ("favoritos", "stop-list"),
    ("مكتبتي", "script"), ("done", "stop-list"),
])
def test_non_content_shelves_are_dropped_with_their_reason(shelf: str, why: str) -> None:
    assert reason(canonical(shelf)) == why


@pytest.mark.parametrize("shelf", ["fantasy", "20th-century", "made-me-cry", "star-wars",
                                   "high-school", "vampires", "1001-books-to-read-before-you-die",
                                   "world-war-ii", "world-war-i", "love-triangle", "bad-boys",
                                   "personal-growth", "college-romance"])
def test_content_shelves_stay(shelf: str) -> None:
    assert reason(canonical(shelf)) is None


def test_shelves_named_after_most_of_their_books_authors_are_theirs() -> None:
    content = pd.DataFrame({"item": [1, 2, 3, 1, 3, 4, 2],
                            "name": ["king", "king", "king", "child", "child", "child",
                                     "preston child"]})
    authors = pd.Series({1: ["Stephen King"], 2: ["Douglas Preston", "Lincoln Child"],
                         3: ["Stephen King"], 4: ["Jo Walton"]})
    # "king": 2 of 3 books are King's; "child": 0 of 3 books by a Child alone... and the
    # co-written one is not among them; "preston child": its one book is theirs
    assert author_shelves(content, authors) == {"king", "preston child"}


def test_author_shelves_are_the_author_concept() -> None:
    keys = author_keys([["J.K. Rowling", "Mary GrandPré"], ["Mary Higgins Clark"],
                        ["نجيب محفوظ"]])
    assert reason(canonical("j-k-rowling"), keys) == "author"
    assert reason(canonical("clark-mary-higgins"), keys) == "author"
    assert reason(canonical("رواية"), keys) == "script"   # and no empty key matched it


def test_spellings_merge_into_the_one_more_books_carry() -> None:
    merges = spelling_merges({"vampires": 538, "vampire": 200, "mysteries": 90,
                              "mystery": 2000, "news": 3, "classics": 10, "witch": 5,
                              "witches": 9, "werewolf": 3, "werewolves": 7, "faerie": 2,
                              "faeries": 4, "princess": 50, "princes": 3, "prince": 8,
                              "romance contemporary": 4, "contemporary romance": 60,
                              "mysterie": 1})
    assert merges == {"vampire": "vampires", "mysteries": "mystery", "witch": "witches",
                      "werewolf": "werewolves", "faerie": "faeries", "princes": "prince",
                      "romance contemporary": "contemporary romance"}


def test_a_book_carries_what_enough_of_its_readers_shelved() -> None:
    tags = pd.DataFrame({
        "item": [1, 1, 1, 1, 1, 1, 2, 2],
        "tag": ["to-read", "fantasy", "ya", "young-adult", "romance", "magic", "horror",
                "kindle"],
        "count": [90_000, 1000, 300, 500, 1000 * MIN_SHARE - 1, 60, 1, 5],
    })
    bc = book_concepts(tags, pd.DataFrame({"item": [1, 2], "authors": [["A"], ["B"]]}))
    got = {(r.item, r.name): (r.strength, r.kind) for r in bc.carried.itertuples()}
    # ya + young-adult add up; romance falls under MIN_SHARE; horror has one shelver
    assert got == {(1, "fantasy"): (1.0, "genre"), (1, "young adult"): (0.8, "genre"),
                   (1, "magic"): (0.06, "tag")}
    summary = bc.summary()
    assert summary["by_reason"]["status"]["names"] == 1
    assert summary["by_reason"]["format"]["examples"] == ["kindle"]
    assert summary["merge_examples"]["young adult"] == ["ya", "young-adult"]


def test_genres_are_canonical_names() -> None:
    assert all(canonical(g) == g for g in GENRES)
