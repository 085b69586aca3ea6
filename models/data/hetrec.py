"""HetRec 2011 MovieLens-2k (v2) metadata: directors, countries, genres and weighted tags of
MovieLens movies, restricted to the movies whose IMDb link we can trust.

HetRec `movieID` is the MovieLens movieId, but about 9% of HetRec movies are linked to the
wrong film (movieID 47 "Seven (Se7en)" carries Kurosawa's Seven Samurai imdbID, hence
director akira_kurosawa). A movie is *trusted* only where its HetRec imdbID equals the
MovieLens links.csv imdbId, compared as integers (HetRec pads to 7 digits, links.csv not
always). On ml-latest-small: 6,620 shared ids, 6,050 trusted.

File quirks handled here: movie_directors.dat has the header
`movieID directorID<TAB>directorName` (a space, not a tab); encodings are mixed (movies.dat
latin-1, movie_directors.dat UTF-8 with U+FFFD where the original lost accents, tags.dat
latin-1 and UTF-8 lines side by side), so every file is decoded per line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.data.download import DatasetFiles, resolve
from models.data.parsing import Column, TableSpec, normalize_name, read_table

log = logging.getLogger(__name__)

NAME = "hetrec2011-movielens-2k-v2"

_MOVIE = Column("item", "int")
_MOVIES_HEADER = (
    "id title imdbID spanishTitle imdbPictureURL year rtID rtAllCriticsRating "
    "rtAllCriticsNumReviews rtAllCriticsNumFresh rtAllCriticsNumRotten rtAllCriticsScore "
    "rtTopCriticsRating rtTopCriticsNumReviews rtTopCriticsNumFresh rtTopCriticsNumRotten "
    "rtTopCriticsScore rtAudienceRating rtAudienceNumRatings rtAudienceScore rtPictureURL"
).split()
MOVIES = TableSpec(
    "\t",
    tuple(
        _MOVIE if h == "id" else Column("imdb_id", "int") if h == "imdbID"
        else Column(h, "str", allow_empty=True)
        for h in _MOVIES_HEADER
    ),
    headers=("\t".join(_MOVIES_HEADER),),
    encoding="auto",
)
DIRECTORS = TableSpec(
    "\t",
    (_MOVIE, Column("director_id", "str"), Column("director", "str")),
    headers=("movieID directorID\tdirectorName", "movieID\tdirectorID\tdirectorName"),
    encoding="auto",
)
COUNTRIES = TableSpec("\t", (_MOVIE, Column("country", "str", allow_empty=True)),
                      headers=("movieID\tcountry",), encoding="auto")
GENRES = TableSpec("\t", (_MOVIE, Column("genre", "str")),
                   headers=("movieID\tgenre",), encoding="auto")
MOVIE_TAGS = TableSpec(
    "\t", (_MOVIE, Column("tag_id", "int"), Column("weight", "int", low=0)),
    headers=("movieID\ttagID\ttagWeight",), encoding="auto",
)
TAGS = TableSpec("\t", (Column("tag_id", "int"), Column("tag", "str", allow_empty=True)),
                 headers=("id\tvalue",), encoding="auto")
_USER_TAGS_HEADER = ("userID movieID tagID date_day date_month date_year date_hour "
                     "date_minute date_second").split()
USER_TAGS = TableSpec(
    "\t",
    (Column("user", "int"), _MOVIE, Column("tag_id", "int"),
     *(Column(h, "int") for h in _USER_TAGS_HEADER[3:])),
    headers=("\t".join(_USER_TAGS_HEADER),), encoding="auto",
)
TAGGERS_FILE = "user_taggedmovies.dat"
"""Who applied which tag, for HetRec's 2,113 users (those who both rated and tagged).
movie_tags.dat's weights count the applications of every MovieLens-10M tagger, so they
say how often a film got a tag, not how many people use it (`tagger_counts`)."""


@dataclass(frozen=True)
class TrustReport:
    """How HetRec movies line up with a MovieLens links table."""

    hetrec_movies: int
    """Movies in HetRec movies.dat."""
    shared: int
    """HetRec movie ids that are also in the links table."""
    trusted: int
    """Shared ids whose HetRec imdbID equals the links imdbId."""
    mismatched: tuple[int, ...]
    """Shared ids whose imdb ids differ (untrusted), ascending."""


def _read(files: DatasetFiles, member: str, spec: TableSpec) -> pd.DataFrame:
    return read_table(lambda: files.open(member), spec, files.path_for_messages(member))


def _check_links(links: pd.DataFrame) -> None:
    missing = {"item", "imdb_id"} - set(links.columns)
    if missing:
        raise ValueError(
            f"links frame lacks column(s) {sorted(missing)}; pass movielens.load_links(...)"
        )


def _trust(links: pd.DataFrame, movies: pd.DataFrame) -> tuple[TrustReport, pd.Index]:
    _check_links(links)
    ml_imdb = links.drop_duplicates("item").set_index("item")["imdb_id"].astype("int64")
    het = movies.drop_duplicates("item").set_index("item")["imdb_id"].astype("int64")
    shared = het.index.intersection(ml_imdb.index)
    equal = het.loc[shared].to_numpy() == ml_imdb.loc[shared].to_numpy()
    trusted = shared[equal].sort_values()
    report = TrustReport(
        hetrec_movies=len(het),
        shared=len(shared),
        trusted=len(trusted),
        mismatched=tuple(int(i) for i in sorted(shared[~equal])),
    )
    log.info(
        "HetRec: %d movies, %d shared with the links table, %d trusted (equal imdb id), "
        "%d dropped as mislinked", report.hetrec_movies, report.shared, report.trusted,
        len(report.mismatched),
    )
    return report, trusted


def trust_report(links: pd.DataFrame, data_dir: str | Path | None = None) -> TrustReport:
    """Count HetRec movies shared with `links` (movielens.load_links) and trusted among
    them (equal imdb ids)."""
    files = resolve(NAME, data_dir)
    return _trust(links, _read(files, "movies.dat", MOVIES))[0]


def _tag_text(files: DatasetFiles) -> pd.DataFrame:
    """tags.dat: each tag id's text (column tag), indexed by unique tag_id."""
    return _read(files, "tags.dat", TAGS).drop_duplicates("tag_id").set_index("tag_id")


def count_taggers(user_tags: pd.DataFrame, tag_text: pd.DataFrame) -> dict[str, int]:
    """Normalised tag name -> how many distinct users applied it in `user_tags` (rows of
    user_taggedmovies.dat), `tag_text` giving each tag id's text (tags.dat, unique ids).
    Tag ids tags.dat does not name are left out; names nobody applied are absent."""
    names = tag_text["tag"].map(normalize_name)
    applied = user_tags.assign(name=names.reindex(user_tags["tag_id"]).to_numpy())
    taggers = applied.dropna(subset=["name"]).groupby("name")["user"].nunique()
    return {str(n): int(c) for n, c in taggers.items()}


def tagger_counts(data_dir: str | Path | None = None) -> dict[str, int]:
    """How many HetRec users applied each tag name (`count_taggers` over TAGGERS_FILE);
    empty, with a warning naming the file, where the HetRec copy lacks it (then no HetRec
    tag shows two people, rather than every weight passing for two)."""
    files = resolve(NAME, data_dir)
    if not files.exists(TAGGERS_FILE):
        log.warning("HetRec: %s is missing, so no HetRec tag shows that two people use "
                    "it; HetRec tags become concepts only with other evidence (two "
                    "MovieLens users, or another kind)", files.path_for_messages(TAGGERS_FILE))
        return {}
    return count_taggers(_read(files, TAGGERS_FILE, USER_TAGS), _tag_text(files))


def _lists(frame: pd.DataFrame, column: str, items: pd.Index) -> pd.Series:
    """item -> list of `column` values in file order, [] for items without any."""
    grouped = frame.groupby("item", sort=False)[column].agg(list)
    out = grouped.reindex(items)
    return pd.Series([v if isinstance(v, list) else [] for v in out.tolist()],
                     index=items, dtype=object)


def load_metadata(links: pd.DataFrame, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Metadata of every trusted movie (see the module docstring), one row each.

    links: a MovieLens links frame with columns item, imdb_id (movielens.load_links).
    Returns columns, sorted by item:
      item: int64 (MovieLens movieId);
      directors: list[str] display names ('John Lasseter');
      countries: list[str] ([] where HetRec leaves it blank);
      genres: list[str] (HetRec's genre labels);
      tags: list[tuple[str, int]] (tag text, movie_tags.dat weight: how often it was
        applied to the movie), heaviest first, ties by text.
    """
    files = resolve(NAME, data_dir)
    _, trusted = _trust(links, _read(files, "movies.dat", MOVIES))
    directors = _read(files, "movie_directors.dat", DIRECTORS)
    countries = _read(files, "movie_countries.dat", COUNTRIES)
    countries = countries.loc[countries["country"].str.strip() != ""]
    genres = _read(files, "movie_genres.dat", GENRES)
    movie_tags = _read(files, "movie_tags.dat", MOVIE_TAGS)
    tag_text = _tag_text(files)
    unknown = ~movie_tags["tag_id"].isin(tag_text.index)
    if unknown.any():
        log.warning("HetRec movie_tags.dat: %d rows name tag ids missing from tags.dat; "
                    "dropped (first: %d)", int(unknown.sum()),
                    int(movie_tags.loc[unknown, "tag_id"].iloc[0]))
        movie_tags = movie_tags.loc[~unknown]
    movie_tags = movie_tags.assign(tag=tag_text["tag"].reindex(movie_tags["tag_id"]).to_numpy())
    movie_tags = movie_tags.sort_values(["item", "weight", "tag"], ascending=[True, False, True],
                                        kind="stable")
    pairs = list(zip(movie_tags["tag"].tolist(), movie_tags["weight"].tolist(), strict=True))
    movie_tags = movie_tags.assign(pair=pd.Series(pairs, index=movie_tags.index, dtype=object))
    items = pd.Index(trusted.to_numpy(dtype="int64"), name="item")
    out = pd.DataFrame({
        "item": items.to_numpy(),
        "directors": _lists(directors, "director", items).to_numpy(),
        "countries": _lists(countries, "country", items).to_numpy(),
        "genres": _lists(genres, "genre", items).to_numpy(),
        "tags": _lists(movie_tags, "pair", items).to_numpy(),
    })
    return out
