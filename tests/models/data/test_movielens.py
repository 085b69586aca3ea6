"""MovieLens loaders on small hand-written files (CSV and `::` layouts, folder and zip),
malformed files, and the real ml-latest-small."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data import movielens, parsing
from models.data.download import DataUnavailableError
from models.data.interactions import positives_from_ratings
from models.data.parsing import MalformedFileError

RATINGS = (
    "userId,movieId,rating,timestamp\r\n"
    "1,1,4.0,964982703\r\n"
    "1,3,0.5,964981247\r\n"
    "2,1,5.0,964982224\r\n"
)
MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children\n"
    '3,"American President, The (1995) ",Comedy|Drama|Romance\n'
    "5,Babylon 5,Sci-Fi\n"
    "7,Death Note: Desu nôto (2006–2007),(no genres listed)\n"
)
TAGS = (
    "userId,movieId,tag,timestamp\n"
    "2,1,funny,1445714994\n"
    '2,1,"Highly quotable, really",1445714996\n'
    "3,1,NA,1445714997\n"
    "3,3,null,1445714998\n"
    "4,3,,1445714999\n"
)
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n3,0112346,\n5,0105946,70\n"

ML1M_MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Misérables, Les (1995)::Drama\n"
ML1M_RATINGS = "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n"


def csv_dataset(root: Path, **override: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"ratings.csv": RATINGS, "movies.csv": MOVIES, "tags.csv": TAGS, "links.csv": LINKS}
    files.update(override)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8", newline="")
    return root


def dat_dataset(root: Path, **override: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"ratings.dat": ML1M_RATINGS, "movies.dat": ML1M_MOVIES}
    files.update(override)
    for name, text in files.items():
        (root / name).write_bytes(text.encode("latin-1"))
    return root


def zipped(folder: Path, archive: Path, inner: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{inner}/{f.name}")
    return archive


# --- happy paths ----------------------------------------------------------------------


def test_csv_ratings_columns_and_dtypes(tmp_path: Path) -> None:
    df = movielens.load_ratings("ml-latest-small", csv_dataset(tmp_path / "ml-latest-small"))
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert [str(t) for t in df.dtypes] == ["int64", "int64", "float32", "int64"]
    assert df["rating"].tolist() == [4.0, 0.5, 5.0]
    assert df["timestamp"].iloc[0] == 964982703


def test_zip_and_folder_give_the_same_frames(tmp_path: Path) -> None:
    folder = csv_dataset(tmp_path / "ml-25m")
    archive = zipped(folder, tmp_path / "ml-25m.zip", "ml-25m")
    for loader in (movielens.load_ratings, movielens.load_movies, movielens.load_tags,
                   movielens.load_links):
        pd.testing.assert_frame_equal(loader("ml-25m", folder), loader("ml-25m", archive))


def test_movies_title_year_and_genres(tmp_path: Path) -> None:
    df = movielens.load_movies("ml-20m", csv_dataset(tmp_path / "x"))
    assert df["item"].dtype == np.int64 and str(df["year"].dtype) == "Int64"
    assert df["title"].tolist() == ["Toy Story", "American President, The", "Babylon 5",
                                    "Death Note: Desu nôto"]
    assert df["year"].tolist()[:2] == [1995, 1995] and df["year"].isna().tolist()[2]
    assert df["year"].iloc[3] == 2006
    assert df["genres"].tolist() == [["Adventure", "Animation", "Children"],
                                     ["Comedy", "Drama", "Romance"], ["Sci-Fi"], []]


def test_tags_keep_na_like_words_and_empty_text(tmp_path: Path) -> None:
    df = movielens.load_tags("ml-25m", csv_dataset(tmp_path / "x"))
    assert df["tag"].tolist() == ["funny", "Highly quotable, really", "NA", "null", ""]
    assert df["user"].dtype == np.int64 and df["timestamp"].dtype == np.int64


def test_links_parse_padded_imdb_and_missing_tmdb(tmp_path: Path) -> None:
    df = movielens.load_links("ml-latest-small", csv_dataset(tmp_path / "x"))
    assert df["imdb_id"].tolist() == [114709, 112346, 105946]
    assert df["imdb_id"].dtype == np.int64 and str(df["tmdb_id"].dtype) == "Int64"
    assert df["tmdb_id"].isna().tolist() == [False, True, False]


def test_dat_files_are_latin1_and_double_colon(tmp_path: Path) -> None:
    root = dat_dataset(tmp_path / "ml-1m")
    ratings = movielens.load_ratings("ml-1m", root)
    assert ratings.to_dict("list") == {"user": [1, 1, 2], "item": [1, 2, 1],
                                       "rating": [5.0, 3.0, 4.0],
                                       "timestamp": [978300760, 978302109, 978301968]}
    assert ratings["rating"].dtype == np.float32
    movies = movielens.load_movies("ml-1m", root)
    assert movies["title"].tolist() == ["Toy Story", "Misérables, Les"]
    assert movies["genres"].tolist()[0] == ["Animation", "Children's", "Comedy"]


def test_ml10m_zip_with_tags_holding_the_separator(tmp_path: Path) -> None:
    folder = dat_dataset(tmp_path / "ml-10M100K",
                         **{"tags.dat": "15::4973::excellent!::1215184630\n"
                                        "20::1::c++::templates::1188263867\n"})
    archive = zipped(folder, tmp_path / "ml-10m.zip", "ml-10M100K")
    tags = movielens.load_tags("ml-10m", archive)
    assert tags["tag"].tolist() == ["excellent!", "c++::templates"]
    assert tags["timestamp"].tolist() == [1215184630, 1188263867]


def test_ml1m_has_no_tags_and_no_links(tmp_path: Path) -> None:
    tags = movielens.load_tags("ml-1m", dat_dataset(tmp_path / "ml-1m"))
    assert tags.empty and list(tags.columns) == ["user", "item", "tag", "timestamp"]
    assert tags["user"].dtype == np.int64
    with pytest.raises(ValueError, match="ml-1m has no links.csv"):
        movielens.load_links("ml-1m", tmp_path / "ml-1m")


def test_unknown_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="choose one of ml-latest-small"):
        movielens.load_ratings("ml-100k")


def test_missing_dataset_offline_says_how_to_fix_it() -> None:
    with pytest.raises(DataUnavailableError, match="set KNOBS_DATA_DIR"):
        movielens.load_ratings("ml-25m")


# --- malformed files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("2,1,4.0", "expected 4 ','-separated fields"),
        ("2,1,4.0,5,9", "expected 4 ','-separated fields"),
        ("2,1,good,964982224", "rating 'good' is not a number"),
        ("2,1,6.0,964982224", "rating 6.0 is out of range 0.5..5"),
        ("2,1,0,964982224", "rating 0 is out of range 0.5..5"),
        ("2,1,nan,964982224", "rating 'nan' is not a finite number"),
        ("2,x1,4.0,964982224", "item 'x1' is not an integer"),
        (",1,4.0,964982224", "user '' is not an integer"),
    ],
)
def test_malformed_rating_names_file_and_line(tmp_path: Path, bad_line: str, problem: str
                                              ) -> None:
    text = RATINGS + "3,1,4.0,964982224\r\n" + bad_line + "\r\n" + "4,1,4.0,964982224\r\n"
    root = csv_dataset(tmp_path / "ml-25m", **{"ratings.csv": text})
    with pytest.raises(MalformedFileError) as info:
        movielens.load_ratings("ml-25m", root)
    err = info.value
    assert err.path == str(root / "ratings.csv") and err.line == 6
    assert problem in err.problem
    assert str(err).startswith(f"{root / 'ratings.csv'}, line 6: ")


def test_too_many_fields_on_the_first_row_is_caught(tmp_path: Path) -> None:
    text = "userId,movieId,rating,timestamp\n9,1,2,4.0,964982224\n1,1,4.0,964982224\n"
    root = csv_dataset(tmp_path / "x", **{"ratings.csv": text})
    with pytest.raises(MalformedFileError, match="line 2: expected 4"):
        movielens.load_ratings("ml-25m", root)


def test_missing_header_is_reported_on_line_1(tmp_path: Path) -> None:
    root = csv_dataset(tmp_path / "x", **{"ratings.csv": "1,1,4.0,964982703\n"})
    with pytest.raises(MalformedFileError, match=r"line 1: expected header "
                                                 r"'userId,movieId,rating,timestamp'"):
        movielens.load_ratings("ml-latest-small", root)


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    root = csv_dataset(tmp_path / "x", **{"ratings.csv": ""})
    with pytest.raises(MalformedFileError, match="file is empty"):
        movielens.load_ratings("ml-latest-small", root)
    root = csv_dataset(tmp_path / "y", **{"ratings.csv": "userId,movieId,rating,timestamp\n"})
    df = movielens.load_ratings("ml-latest-small", root)
    assert df.empty and df["rating"].dtype == np.float32


def test_malformed_dat_line_in_zip_names_the_member(tmp_path: Path) -> None:
    folder = dat_dataset(tmp_path / "ml-1m",
                         **{"ratings.dat": ML1M_RATINGS + "3::1::5\n"})
    archive = zipped(folder, tmp_path / "ml-1m.zip", "ml-1m")
    with pytest.raises(MalformedFileError) as info:
        movielens.load_ratings("ml-1m", archive)
    assert str(info.value) == (f"{archive}:ml-1m/ratings.dat, line 4: expected 4 '::'-separated "
                               "fields (user, item, rating, timestamp), found 3")


def test_invalid_utf8_in_csv_names_the_line(tmp_path: Path) -> None:
    root = csv_dataset(tmp_path / "x")
    (root / "movies.csv").write_bytes(b"movieId,title,genres\n1,Caf\xe9 (1990),Drama\n")
    with pytest.raises(MalformedFileError, match="line 2: not valid UTF-8"):
        movielens.load_movies("ml-25m", root)


def test_missing_title_field_in_dat_movies(tmp_path: Path) -> None:
    root = dat_dataset(tmp_path / "ml-1m", **{"movies.dat": "1::Toy Story (1995)\n"})
    with pytest.raises(MalformedFileError, match="line 1: expected 3"):
        movielens.load_movies("ml-1m", root)


# --- real data ------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_ml_latest_small(real_data_dir: Path) -> None:
    if not (real_data_dir / "ml-latest-small").is_dir():
        pytest.skip(f"no ml-latest-small in {real_data_dir}")
    ratings = movielens.load_ratings("ml-latest-small", real_data_dir)
    assert len(ratings) == 100_836
    assert ratings["user"].nunique() == 610 and ratings["item"].nunique() == 9_724
    assert ratings["rating"].min() == 0.5 and ratings["rating"].max() == 5.0
    movies = movielens.load_movies("ml-latest-small", real_data_dir)
    assert len(movies) == 9_742 and movies["item"].is_unique
    assert movies.loc[movies["item"] == 1, "title"].item() == "Toy Story"
    assert int(movies["year"].isna().sum()) == 12
    assert len(movielens.load_tags("ml-latest-small", real_data_dir)) == 3_683
    links = movielens.load_links("ml-latest-small", real_data_dir)
    assert len(links) == 9_742 and int(links["tmdb_id"].isna().sum()) == 8
    data = positives_from_ratings(ratings)
    # rating >= 4, users with >= 5 positives (method.md §1)
    assert (data.n_users, data.n_items, data.nnz) == (603, 6_298, 48_562)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_large_file_narrowing_reports_the_same_line(tmp_path: Path, chunk_rows: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "LOCATE_CHUNK_ROWS", chunk_rows)
    good = [f"{u},1,4.0,964982703" for u in range(1, 8)]
    lines = ["userId,movieId,rating,timestamp", *good[:3], "", *good[3:], "8,1,4.5,x", *good]
    root = csv_dataset(tmp_path / "x", **{"ratings.csv": "\n".join(lines) + "\n"})
    with pytest.raises(MalformedFileError) as info:
        movielens.load_ratings("ml-25m", root)
    assert info.value.line == 10 and info.value.problem == "timestamp 'x' is not an integer"
