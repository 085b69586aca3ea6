"""Goodreads shelves -> content concepts (goodbooks-10k).

Goodreads tags are the names of users' shelves. The most widespread say what a reader did
with a book, not what it is: "to-read" is on 9,983 of the 10,000 books, then
"favorites", "owned", "books-i-own", "currently-reading", "library", "kindle". This module
decides, for every shelf name, its canonical concept name and whether it is content.

1. **Normalise** (`canonical`): lowercase; '-', '_', '.' and '/' become spaces; '&' is
   'and'; Goodreads' escaped apostrophes come back ("children-s" -> "children's",
   "didn-t" -> "didn't"); then `SYNONYMS` merges spellings of one concept ("sci-fi",
   "scifi", "sf", "science-fiction" -> "science fiction"; "ya", "teen" -> "young adult").
2. **Drop what is not content** (`reason`), in this order, each rule a documented reason:
   - "stop-list": `STOP_LIST`, exact names that are no content (generic: "fiction",
     "books", "default", "series"; assigned reading: "school"; ambiguous: "love",
     "adult", "english");
   - "year": a four-digit year among the words ("read-in-2015", "2016-reading-challenge",
     "2006"); centuries ("20th-century") are content and stay;
   - "rating": a number, or a number of stars ("5-stars", "1");
   - "status", "format", "ownership", "opinion": any word of `STATUS_WORDS` ("to-read",
     "dnf", "book-club", "read-for-school"), `FORMAT_WORDS` ("kindle", "e-book",
     "audiobooks", "paperback"), `OWNERSHIP_WORDS` ("owned", "my-library",
     "shelfari-wishlist") or `OPINION_WORDS` ("favorites", "all-time-favourites",
     "5-star", "boring");
   - "short": under three characters after normalising; "script": a letter outside
     plain Latin once accents are dropped ("رواية", "novels روايات"), which the pages'
     readers could not read;
   - "author": the name of one of the catalogue's authors ("j-k-rowling",
     "clark-mary-higgins"), which the author concept already says.
3. **Merge spellings** found in the data (`spelling_merges`): "vampires" and "vampire",
   "mysteries" and "mystery", "romance contemporary" and "contemporary romance" are one
   concept, named by the spelling more books carry. A name made of words of the authors
   of most of its books ("king", "nora", "preston child": `author_shelves`) is the
   author concept's, reason "author".
4. **Per book** (`book_concepts`): counts of merged names are added up; a book carries a
   content concept when at least `MIN_SHELVERS` users shelved it so and at least
   `MIN_SHARE` as many as its most used content concept (Harry Potter #6 is on 37,174
   "fantasy" shelves and 334 "romance" ones: fantasy, not romance). The concept's
   strength on the book is that ratio (0..1].
5. **Kinds**: a concept in `GENRES` is a genre (kept in the catalog's `genres`, shown on
   pages); every other content concept is a tag (kept with its strength in `shelves`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MIN_SHELVERS = 2
"""A book carries a concept only if at least this many users shelved it so (the two-people
rule of the MovieLens tags, models.concepts.MIN_TAGGERS)."""

MIN_SHARE = 0.05
"""...and at least this share of the users who shelved it under its most used content
concept. 0.05 keeps "crime" (10%) and drops "romance" (4%) on a Mary Higgins Clark
thriller, drops "romance" (0.9%) and "mystery" (1.3%) on Harry Potter #6 and keeps
"romance" (8%) on The Hunger Games (reports/goodbooks-10k/vocabulary.md)."""

SYNONYMS: dict[str, str] = {
    alias: name
    for name, aliases in {
        "science fiction": ("sci fi", "scifi", "sf", "syfy", "science fiction fiction"),
        "science fiction and fantasy": (
            "sci fi fantasy", "scifi fantasy", "fantasy sci fi", "fantasy scifi", "sff",
            "sf fantasy", "science fiction fantasy", "sci fi and fantasy",
            "scifi and fantasy", "fantasy and sci fi", "fantasy and science fiction",
            "sf and fantasy", "fantasy science fiction", "fantasy sf"),
        "young adult": ("ya", "young adult fiction", "ya fiction", "ya books", "ya lit",
                        "ya literature", "ya novels", "teen", "teens", "teen fiction",
                        "teen lit", "young adults", "young adult lit"),
        "children's books": (
            "children", "childrens", "children's", "children's book", "childrens books",
            "children books", "kids", "kids books", "kid's books", "kid books",
            "children's literature", "childrens literature", "children's lit",
            "childrens lit", "children's fiction", "childrens fiction", "kid lit",
            "kidlit", "kids lit", "juvenile", "juvenile fiction", "childrensbooks"),
        "nonfiction": ("non fiction", "non fic", "nonfic"),
        "humor": ("humour", "funny", "humorous", "comedy", "humor and comedy"),
        "classics": ("classic", "classic literature", "classic lit", "classic fiction",
                     "the classics", "classic novels", "literary classics"),
        "historical fiction": ("historical", "historic fiction", "hist fic", "fiction historical",
                               "historical novels", "history fiction",
                               "historical fiction fiction"),
        "chick lit": ("chicklit", "chic lit"),
        "dystopia": ("dystopian", "distopia", "distopian", "dystopian fiction",
                     "dystopias"),
        "paranormal romance": ("pnr", "romance paranormal"),
        "graphic novels": ("graphic novel", "comics", "comic", "comic books",
                           "graphic novels comics", "comics graphic novels"),
        "poetry": ("poems", "poesie"),
        "short stories": ("short story", "anthology", "anthologies"),
        "mystery and thriller": (
            "mystery thriller", "thriller mystery", "mystery thrillers", "mystery suspense",
            "suspense mystery", "mystery suspense thriller", "mystery thriller suspense",
            "mystery and suspense", "mysteries and thrillers", "thriller suspense",
            "suspense thriller", "thrillers mysteries", "mystery crime", "crime mystery",
            "crime thriller", "thriller crime", "mystery suspense thrillers"),
        "crime": ("crime fiction",),
        "1001 books": ("1001", "1001 import", "1001 books to read before you die",
                       "1001 books you must read before you die"),
        "lgbt": ("lgbtq", "glbt", "queer", "lgbtqia", "lgbt fiction"),
        "romance": ("romantic",),
        "contemporary": ("contemporary fiction", "modern fiction", "contemporary literature"),
        "literary fiction": ("literary", "lit fic", "litfic"),
        "world war ii": ("wwii", "ww2", "world war 2", "world war two", "wwii fiction"),
        "fairy tales": ("fairytales", "fairy tale", "fairytale"),
        "picture books": ("picture book",),
        "erotica": ("erotic", "smut"),
        "suspense": ("suspence",),
        "self help": ("self improvement", "personal development"),
        "biography and memoir": ("biography memoir", "memoir biography", "bio memoir",
                                 "biographies memoirs", "memoirs biographies"),
        "biography": ("biographies", "bio"),
        "plays": ("play", "theatre", "theater", "drama plays"),
        "post apocalyptic": ("post apocalypse", "apocalyptic", "apocalypse"),
        "spirituality": ("spiritual",),
        "religion": ("religious",),
        "christian": ("christianity",),
        "women's fiction": ("womens fiction", "women fiction"),
        "american": ("american lit", "american literature"),
        "british": ("british literature", "british lit", "brit lit", "english literature"),
        "vampires": ("vamps", "vampire"),
        "shifters": ("shapeshifters", "shape shifters", "shifter", "shapeshifter"),
        "espionage": ("spy", "spy thriller", "spies", "spy fiction"),
        "translated": ("translation", "translations", "in translation",
                       "translated fiction"),
        "faeries": ("fae", "fairies", "fairy", "faerie"),
        "adventure": ("action adventure", "action and adventure", "adventure action"),
        "magical realism": ("magic realism", "magic realist", "magical realist"),
        "cookbooks": ("cookbook", "cooking", "cook books", "cook book"),
        "autobiography": ("auto biography",),
        "newbery medal": ("newbery", "newberry", "newbery award", "newberry award",
                          "newbery winners", "newbery winner", "newbery honor",
                          "newbery medal winners", "newberry medal"),
        "canadian": ("canlit", "can lit", "canadian lit", "canadian literature"),
        "contemporary romance": ("romance contemporary",),
        "historical romance": ("romance historical",),
    }.items()
    for alias in aliases
}
"""Alias -> concept name, applied after the spelling is normalised."""

GENRES: frozenset[str] = frozenset({
    "fantasy", "science fiction", "science fiction and fantasy", "romance", "mystery",
    "thriller", "mystery and thriller", "horror", "historical fiction", "young adult",
    "children's books", "middle grade", "picture books", "new adult", "classics",
    "nonfiction", "biography", "memoir", "autobiography", "biography and memoir", "poetry",
    "graphic novels", "manga", "humor", "paranormal", "dystopia", "post apocalyptic",
    "contemporary", "literary fiction", "crime", "true crime", "suspense", "adventure",
    "self help", "philosophy", "history", "science", "religion", "christian",
    "christian fiction", "spirituality", "business", "psychology", "politics", "economics",
    "short stories", "essays", "plays", "chick lit", "urban fantasy", "epic fantasy",
    "high fantasy", "paranormal romance", "contemporary romance", "historical romance",
    "erotica", "mythology", "fairy tales", "western", "travel", "cookbooks", "art", "music",
    "sports", "steampunk", "magical realism", "speculative fiction", "lgbt", "feminism",
    "war", "espionage", "dark fantasy", "cozy mystery", "detective", "gothic",
})
"""Content concepts shown as genres (the catalog's `genres`); every other content concept
is a tag."""

STOP_LIST: frozenset[str] = frozenset({
    "fiction", "books", "book", "novel", "novels", "default", "general", "other", "misc",
    "miscellaneous", "series", "part of a series", "first in series", "stand alone",
    "standalone", "trilogy", "english", "literature", "lit", "adult", "adult fiction",
    "general fiction", "fiction general", "all", "all books", "novella", "novellas",
    "love", "fun", "movies", "movie", "book to movie", "books to movies", "tv", "others",
    "re", "stuff", "random", "e", "adult books", "fiction novels", "modern", "new",
    "roman", "romans", "p", "c", "school", "for school",
    "school books", "school reads", "school book", "high school reads",
    "done", "botm", "saw the movie", "scanned", "sub", "short", "graphic", "hist", "psych",
    "paused", "deutsch", "espanol", "francais", "fantasia", "krimi", "m f", "and",
    "summer", "beach", "obc",
    # the same shelves in other languages (Spanish, Portuguese, Italian, Malay, ...)
    "biblioteca", "favoritos", "favoritas", "punya", "series", "literatura", "narrativa",
    "novela", "novelas", "romanzi", "romanzo", "libros", "livros", "leidos", "lidos",
})
"""Exact names that say nothing about content: generic labels ("fiction" is on 9,097
books), structure ("series", "trilogy"), language ("english"), ambiguous ones ("love":
the theme or the reader's verdict; "adult": the audience or the content; "short",
"graphic"), and the common shelf names of other languages ("biblioteca",
"favoritos", "literatura")."""

STATUS_WORDS = frozenset({
    "read", "reads", "reading", "reread", "rereads", "rereading", "tbr", "dnf", "finish",
    "finished", "unfinished", "abandoned", "listened", "unread", "started", "hold", "queue",
    "pending", "want", "wanted", "wishlist", "wish", "buy", "get", "next", "someday", "maybe",
    "later", "soon", "challenge", "gave", "dropped", "stopped", "currently", "club",
    "bookclub", "group", "reviewed", "review", "reviews", "arc", "arcs", "netgalley",
    "required", "assigned", "course", "university",
    "didn't", "couldn't", "did", "not", "never", "waiting", "again", "wip",
    "considering", "interested", "upcoming", "ongoing", "incomplete", "sampled", "skimmed",
    "dnfed", "giveaway", "giveaways", "won", "received", "freebie", "freebies", "free",
})
FORMAT_WORDS = frozenset({
    "kindle", "ebook", "ebooks", "audiobook", "audiobooks", "audio", "audible", "paperback",
    "paperbacks", "hardcover", "hardcovers", "hardback", "nook", "calibre", "overdrive",
    "epub", "pdf", "mobi", "ibooks", "kobo", "scribd", "digital", "print", "ereader",
    "audiofile", "cd", "mp3", "format", "edition", "editions", "hardbacks", "paper", "e",
})
OWNERSHIP_WORDS = frozenset({
    "own", "owned", "owns", "mine", "my", "have", "having", "has", "library", "libraries",
    "bookshelf", "bookshelves", "shelf", "shelves", "borrowed", "bought", "purchased",
    "donated", "away", "shelfari", "goodreads", "home", "lent", "loaned", "sold",
    "swap", "bookcrossing", "kept", "keep", "gift", "gifts", "signed", "our",
    "collection", "box", "storage", "sell", "boxed", "physical", "copy", "copies",
})
OPINION_WORDS = frozenset({
    "favorites", "favourites", "favorite", "favourite", "faves", "fave", "favs", "fav",
    "loved", "liked", "like", "dislike", "disliked", "hated", "hate", "best", "top",
    "recommended", "recommend", "recommendations", "must", "meh", "ok", "okay", "boring",
    "overrated", "disappointing", "disappointment", "awesome", "amazing", "great", "good",
    "excellent", "pleasures", "pleasure", "rated", "rating",
    "worst", "wonderful", "perfect", "enjoyed", "memorable",
})
NOT_CONCEPTS: tuple[str, ...] = (
    "to-read", "favorites", "owned", "currently-reading", "books-i-own", "kindle", "ebook",
    "library", "default", "read-in-2015", "biblioteca", "مكتبتي", "favoritos", "punya",
    "done", "saw-the-movie", "botm", "scanned", "séries", "literatura", "narrativa",
    "novela", "king", "patterson", "koontz", "nora", "preston-child", "3.5-stars",
    "4.5-stars", "5-star-books", "2.5", "j-k-rowling", "e-books", "did-not-finish",
)
"""Shelves that must never become concepts, as written on Goodreads: issue 24's list and
those a review of the first vocabulary found. The vocabulary report and the real-data
test check that none of them (normalised) is a concept."""
_WORD_RULES = (("status", STATUS_WORDS), ("format", FORMAT_WORDS),
               ("ownership", OWNERSHIP_WORDS), ("opinion", OPINION_WORDS))
REASONS: tuple[str, ...] = ("stop-list", "year", "rating", "status", "format", "ownership",
                            "opinion", "short", "script", "author")
"""Why a shelf is not content, in the order the rules are tried."""

_SEPARATORS = re.compile(r"[-_./]+")
_SPACE = re.compile(r"\s+")
_YEAR = re.compile(r"^(1[5-9]|20)\d\d$")
_NUMBER = re.compile(r"^\d+( \d+)?$")        # "1", and "2 5" from "2.5" once '.' is a space
_STARS = re.compile(r"^(\d+( \d+)?|one|two|three|four|five|half)( and( a half| \d+))? ?"
                    r"stars?( books?| reads?)?$")    # "4 5 stars", "4 and 5 star books"
_LATIN = re.compile(r"^[\x00-\x7f]*[a-z][\x00-\x7f]*$")   # Latin letters only, after NFKD
_KEY = re.compile(r"[^a-z0-9]+")


def canonical(shelf: str) -> str:
    """The concept name of a shelf: "Science-Fiction" -> "science fiction",
    "children-s-books" -> "children's books", "YA" -> "young adult", "Cómics" ->
    "comics" (accents dropped)."""
    s = unicodedata.normalize("NFKD", str(shelf).lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = _SEPARATORS.sub(" ", s)
    s = s.replace("&", " and ")
    s = _SPACE.sub(" ", s).strip()
    s = re.sub(r"\b(\w+) s\b", r"\1's", s)          # Goodreads writes ' as -
    s = re.sub(r"\b(\w+)n t\b", r"\1n't", s)
    return SYNONYMS.get(s, s)


def person_key(name: str) -> str:
    """A name with case and punctuation removed, for matching shelves to authors:
    "J.K. Rowling" and "j-k-rowling" both give "jkrowling" (empty for a name without
    Latin letters or digits)."""
    return _KEY.sub("", name.lower())


def author_keys(authors: Iterable[Iterable[str]]) -> set[str]:
    """The `person_key`s of every author name, also surname first ("clark mary higgins"
    for "Mary Higgins Clark"); keys under four characters are left out, so that a
    shelf in a script without Latin letters never matches."""
    keys: set[str] = set()
    for names in authors:
        for name in names:
            words = name.split()
            for form in (name, " ".join(words[-1:] + words[:-1])):
                key = person_key(form)
                if len(key) >= 4:
                    keys.add(key)
    return keys


def reason(name: str, authors: frozenset[str] | set[str] = frozenset()) -> str | None:
    """Why the canonical shelf `name` is not a content concept (one of REASONS), or None
    when it is content. `authors`: `author_keys` of the catalogue."""
    if name in STOP_LIST:
        return "stop-list"
    words = name.split(" ")
    if any(_YEAR.match(w) for w in words):
        return "year"
    if _NUMBER.match(name) or _STARS.match(name):
        return "rating"
    for why, vocabulary in _WORD_RULES:
        if any(w in vocabulary for w in words):
            return why
    if len(name) < 3:
        return "short"
    if not _LATIN.search(name):
        return "script"
    if person_key(name) in authors:
        return "author"
    return None


def _singular(word: str, names: Mapping[str, int] | None = None) -> str:
    """A word's singular as far as spelling tells: witches -> witch, werewolves ->
    werewolf, vampires -> vampire; -ies is -y (mysteries -> mystery) unless `names`
    (name -> books) has more books for the -ie form (faeries -> faerie); -ss, -us and
    -is words stay."""
    if len(word) <= 4 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        ie, y = word[:-1], word[:-3] + "y"
        counts = names or {}
        return ie if counts.get(ie, 0) > counts.get(y, 0) else y
    if word.endswith("ves"):
        return word[:-3] + "f"
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


_TRAILING = frozenset({"series", "books", "book", "lit", "literature", "novels", "winners",
                       "winner", "prize"})
"""Last words that name no new concept: "anita blake series" is "anita blake", "japanese
literature" is "japanese", "booker prize winners" is "booker"."""


def spelling_merges(names: Mapping[str, int]) -> dict[str, str]:
    """{spelling: kept spelling} for names that differ only in plurals, word order, an
    "and", or a last word of `_TRAILING` ("vampires" and "vampire", "mysteries" and
    "mystery", "romance contemporary" and "contemporary romance", "alex cross series" and
    "alex cross"; name -> books carrying it): each group keeps the spelling most books
    carry."""
    groups: dict[str, list[str]] = {}
    for name in names:
        words = [w for w in name.split(" ") if w != "and"]
        while len(words) > 1 and words[-1] in _TRAILING:     # "alex cross series"
            words.pop()
        key = " ".join(sorted(_singular(w, names) for w in words))
        groups.setdefault(key, []).append(name)
    merges: dict[str, str] = {}
    for members in groups.values():
        keep = max(members, key=lambda n: (names[n], n))
        merges.update({n: keep for n in members if n != keep})
    return merges


def author_shelves(content: pd.DataFrame, authors: pd.Series, share: float = 0.5
                   ) -> set[str]:
    """Content names made only of words of the authors' names of at least `share` of the
    books carrying them: "king" (Stephen King), "nora" (Nora Roberts), "preston child"
    (Douglas Preston and Lincoln Child). `content`: item, name rows; `authors`: item ->
    list of names. "child" stays: most of its books are not Lee Child's."""
    words = {item: {person_key(w) for a in names for w in a.split()}
             for item, names in authors.items()}
    keys = {name: {person_key(w) for w in name.split(" ") if w != "and"} - {""}
            for name in content["name"].unique()}
    hits = [bool(keys[name]) and keys[name] <= words.get(item, set())
            for item, name in zip(content["item"], content["name"], strict=True)]
    by_name = pd.Series(hits, index=content.index, dtype=bool).groupby(content["name"]).mean()
    return set(by_name.index[by_name >= share])


@dataclass(frozen=True)
class BookConcepts:
    """carried: item, name, count (users, merged spellings added up), strength (count /
    the book's largest content count), kind ('genre' or 'tag'), one row per concept a
    book carries; shelves: one row per distinct shelf name: tag (verbatim), name
    (canonical), reason (None: content), books, count (its rows and users, all books)."""

    carried: pd.DataFrame
    shelves: pd.DataFrame

    def summary(self, top: int = 15) -> dict[str, Any]:
        """What the filter kept and dropped, by reason: distinct shelf names, (book,
        shelf) rows and shelvings (users x books); the most used names of each reason."""
        sh = self.shelves
        total_rows, total_count = float(sh["books"].sum()), float(sh["count"].sum())
        out: dict[str, Any] = {"shelf_names": len(sh), "rows": int(total_rows),
                               "shelvings": int(total_count), "by_reason": {}}
        for why in (*REASONS, None):
            part = sh.loc[sh["reason"].isna()] if why is None else sh.loc[sh["reason"] == why]
            out["by_reason"]["content" if why is None else why] = {
                "names": len(part), "rows_share": float(part["books"].sum()) / total_rows,
                "shelvings_share": float(part["count"].sum()) / total_count,
                "examples": part.sort_values("books", ascending=False)["tag"].head(top)
                .tolist(),
            }
        content = sh.loc[sh["reason"].isna()]
        out["content_concepts"] = int(content["name"].nunique())
        merged = content.groupby("name")["tag"].nunique()
        out["merged_spellings"] = int((merged > 1).sum())
        out["merge_examples"] = {
            name: sorted(content.loc[content["name"] == name, "tag"].tolist())[:8]
            for name in merged.sort_values(ascending=False).index[:top]}
        out["carried_pairs"] = len(self.carried)
        return out


def book_concepts(book_tags: pd.DataFrame, books: pd.DataFrame) -> BookConcepts:
    """Apply the filter to `book_tags` (item, tag, count; models.data.goodbooks
    .load_book_tags). `books`: item, authors (list of names) of every book: no shelf
    named after an author becomes a concept."""
    authors = books.set_index("item")["authors"]
    keys = author_keys(authors)
    names = pd.DataFrame({"tag": pd.unique(book_tags["tag"])})
    names["name"] = names["tag"].map(canonical)
    names["reason"] = names["name"].map(lambda n: reason(n, keys))
    content = book_tags.merge(names, on="tag").loc[lambda r: r["reason"].isna()]
    by_author = author_shelves(content, authors)
    names.loc[names["name"].isin(by_author) & names["reason"].isna(), "reason"] = "author"
    content = content.loc[~content["name"].isin(by_author)]
    books_per_name = content.groupby("name")["item"].nunique()
    merges = spelling_merges({str(n): int(c) for n, c in books_per_name.items()})
    names.loc[names["reason"].isna(), "name"] = names.loc[names["reason"].isna(), "name"].map(
        lambda n: merges.get(n, n))
    rows = book_tags.merge(names, on="tag")
    shelves = rows.groupby(["tag", "name"], dropna=False).agg(
        books=("item", "nunique"), count=("count", "sum")).reset_index()
    shelves = shelves.merge(names[["tag", "reason"]], on="tag")
    per_book = (rows.loc[rows["reason"].isna()].groupby(["item", "name"], as_index=False)[
        "count"].sum())
    top = per_book.groupby("item")["count"].transform("max")
    strength = per_book["count"] / top
    carried = per_book.loc[(per_book["count"] >= MIN_SHELVERS) & (strength >= MIN_SHARE)]
    carried = carried.assign(strength=strength[carried.index].astype(np.float64).round(4))
    carried = carried.assign(kind=np.where(carried["name"].isin(GENRES), "genre", "tag"))
    carried = carried.sort_values(["item", "strength", "name"], ascending=[True, False, True])
    return BookConcepts(carried.reset_index(drop=True), shelves)
