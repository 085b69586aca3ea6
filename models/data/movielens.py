"""MovieLens loaders: ml-latest-small, ml-1m, ml-10m, ml-20m and ml-25m in their native
formats, converted to one column convention.

- ml-latest-small, ml-20m, ml-25m: UTF-8 CSV with a header (`ratings.csv`, `movies.csv`,
  `tags.csv`, `links.csv`).
- ml-1m, ml-10m (folder `ml-10M100K`): `::`-separated `.dat` files without a header, in
  latin-1 (decoded per line: UTF-8 where valid, latin-1 otherwise, which is exact for both).
  ml-1m has no tags; neither has links.

Every loader takes `data_dir` (default: `KNOBS_DATA_DIR`, then the cache, then a download;
see `models.data.download.resolve`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from models.data.download import DatasetFiles, resolve
from models.data.parsing import Column, TableSpec, read_table

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("ml-latest-small", "ml-1m", "ml-10m", "ml-20m", "ml-25m")
"""The MovieLens releases these loaders understand."""

_CSV = frozenset({"ml-latest-small", "ml-20m", "ml-25m"})
_NO_TAGS = frozenset({"ml-1m"})
NO_GENRES = "(no genres listed)"

_USER = Column("user", "int")
_ITEM = Column("item", "int")
_RATING = Column("rating", "float", low=0.5, high=5.0)
_TIMESTAMP = Column("timestamp", "int")

RATINGS_CSV = TableSpec(",", (_USER, _ITEM, _RATING, _TIMESTAMP),
                        headers=("userId,movieId,rating,timestamp",))
RATINGS_DAT = TableSpec("::", (_USER, _ITEM, _RATING, _TIMESTAMP), encoding="auto")
MOVIES_CSV = TableSpec(",", (_ITEM, Column("title", "str"), Column("genres", "str")),
                       headers=("movieId,title,genres",))
MOVIES_DAT = TableSpec(
    "::",
    (_ITEM, Column("title", "str", absorbs_separator=True), Column("genres", "str")),
    encoding="auto",
)
TAGS_CSV = TableSpec(",", (_USER, _ITEM, Column("tag", "str", allow_empty=True), _TIMESTAMP),
                     headers=("userId,movieId,tag,timestamp",))
TAGS_DAT = TableSpec(
    "::",
    (_USER, _ITEM, Column("tag", "str", allow_empty=True, absorbs_separator=True), _TIMESTAMP),
    encoding="auto",
)
LINKS_CSV = TableSpec(
    ",",
    (_ITEM, Column("imdb_id", "int"), Column("tmdb_id", "int", nullable=True)),
    headers=("movieId,imdbId,tmdbId",),
)

# "Toy Story (1995)", "Death Note: Desu nôto (2006–2007)", "Babylon 5" (no year); some
# titles carry a trailing space after the year.
_TITLE_YEAR = r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$"


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _read(files: DatasetFiles, member: str, spec: TableSpec) -> pd.DataFrame:
    return read_table(lambda: files.open(member), spec, files.path_for_messages(member))


def load_ratings(name: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """All ratings of `name`.

    Returns columns user: int64, item: int64 (movieId), rating: float32 in 0.5..5,
    timestamp: int64 (Unix seconds), in file order.
    Raises MalformedFileError naming the file and line of the first bad row.
    """
    _check_name(name)
    files = resolve(name, data_dir)
    if name in _CSV:
        df = _read(files, "ratings.csv", RATINGS_CSV)
    else:
        df = _read(files, "ratings.dat", RATINGS_DAT)
    log.info("%s: %d ratings by %d users on %d movies", name, len(df),
             df["user"].nunique(), df["item"].nunique())
    return df


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); a title without a year keeps its text
    and gets <NA>. Returns (title: str, year: Int64)."""
    parts = titles.str.extract(_TITLE_YEAR)
    title = parts["title"].fillna(titles.str.strip()).astype("str")
    year = pd.to_numeric(parts["year"]).astype("Int64")
    return title, year


def split_genres(genres: pd.Series) -> pd.Series:
    """'Adventure|Animation' -> ['Adventure', 'Animation']; '(no genres listed)' -> []."""
    lists = [[] if g in ("", NO_GENRES) else g.split("|") for g in genres.tolist()]
    return pd.Series(lists, index=genres.index, dtype=object)


def load_movies(name: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The movie catalogue of `name`.

    Returns columns item: int64, title: str (without the trailing ' (year)'),
    year: Int64 (<NA> where the title has none), genres: list[str] ([] for
    '(no genres listed)').
    """
    _check_name(name)
    files = resolve(name, data_dir)
    if name in _CSV:
        raw = _read(files, "movies.csv", MOVIES_CSV)
    else:
        raw = _read(files, "movies.dat", MOVIES_DAT)
    title, year = split_title_year(raw["title"])
    return pd.DataFrame({"item": raw["item"], "title": title, "year": year,
                         "genres": split_genres(raw["genres"])})


def load_tags(name: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """User-applied free-text tags of `name`.

    Returns columns user: int64, item: int64, tag: str (verbatim, may be empty),
    timestamp: int64; an empty frame with those columns for ml-1m, which has no tags.
    """
    _check_name(name)
    if name in _NO_TAGS:
        return pd.DataFrame({"user": pd.Series(dtype="int64"), "item": pd.Series(dtype="int64"),
                             "tag": pd.Series(dtype="str"),
                             "timestamp": pd.Series(dtype="int64")})
    files = resolve(name, data_dir)
    if name in _CSV:
        return _read(files, "tags.csv", TAGS_CSV)
    return _read(files, "tags.dat", TAGS_DAT)


def load_links(name: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """IMDb and TMDb ids of the movies of `name` (ml-latest-small, ml-20m, ml-25m only).

    Returns columns item: int64, imdb_id: int64 (the number, without zero padding),
    tmdb_id: Int64 (<NA> where unknown).
    Raises ValueError for ml-1m and ml-10m, which have no links.csv.
    """
    _check_name(name)
    if name not in _CSV:
        raise ValueError(
            f"{name} has no links.csv; IMDb links exist only for "
            f"{', '.join(sorted(_CSV))}"
        )
    return _read(resolve(name, data_dir), "links.csv", LINKS_CSV)
