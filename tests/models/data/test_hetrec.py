"""HetRec 2011 MovieLens-2k metadata: file quirks, the imdb trust filter, real data."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from models.data import hetrec, movielens
from models.data.parsing import MalformedFileError

MOVIES_HEADER = "\t".join(hetrec._MOVIES_HEADER)


def movie_row(movie_id: int, title: str, imdb: str) -> str:
    rest = ["" for _ in range(len(hetrec._MOVIES_HEADER) - 3)]
    rest[0] = f"{title} (es)"
    rest[2] = "1995"
    return "\t".join([str(movie_id), title, imdb, *rest])


FILES: dict[str, bytes] = {
    "movies.dat": "\n".join([
        MOVIES_HEADER,
        movie_row(1, "Toy story", "0114709"),
        movie_row(2, "Jumanji", "0113497"),
        movie_row(47, "Seven (Se7en)", "0047478"),  # HetRec links it to Seven Samurai
        movie_row(99, "Grumpy Old Men", "0107050"),  # not in the MovieLens links
        movie_row(3, "Misérables", "0113828"),
    ]).encode("latin-1") + b"\n",
    "movie_directors.dat": (
        b"movieID directorID\tdirectorName\n1\tjohn_lasseter\tJohn Lasseter\n"
        b"47\takira_kurosawa\tAkira Kurosawa\n3\tclaude_lelouch\tClaude Lelouch\n"
    ),
    "movie_countries.dat": b"movieID\tcountry\n1\tUSA\n2\t\n3\tFrance\n47\tJapan\n",
    "movie_genres.dat": b"movieID\tgenre\n1\tAdventure\n1\tAnimation\n2\tFantasy\n",
    "movie_tags.dat": b"movieID\ttagID\ttagWeight\n1\t7\t1\n1\t13\t3\n1\t25\t3\n3\t7\t2\n",
    # mixed encodings inside one file, as in the real tags.dat
    "tags.dat": b"id\tvalue\n7\tearth\n13\tpixar\n" + "25\tmão\n".encode("latin-1"),
    "user_taggedmovies.dat": (
        "\t".join(hetrec._USER_TAGS_HEADER) + "\n"
        + "".join(f"{u}\t{m}\t{t}\t1\t1\t2008\t0\t0\t0\n"
                  for u, m, t in ((5, 1, 7), (6, 3, 7), (5, 1, 13), (6, 1, 13), (5, 1, 25),
                                  (8, 2, 25)))
    ).encode(),
}


def links_frame() -> pd.DataFrame:
    return pd.DataFrame({"item": [1, 2, 3, 47], "imdb_id": [114709, 113497, 113828, 114369],
                         "tmdb_id": pd.array([862, 8844, None, 807], dtype="Int64")})


def write(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_metadata_of_trusted_movies(tmp_path: Path) -> None:
    md = hetrec.load_metadata(links_frame(), write(tmp_path / hetrec.NAME, FILES))
    assert md["item"].tolist() == [1, 2, 3]  # 47 mislinked, 99 not in links
    assert md["item"].dtype == "int64"
    rows = md.set_index("item")
    assert rows.loc[1, "directors"] == ["John Lasseter"]
    assert rows.loc[2, "directors"] == [] and rows.loc[2, "countries"] == []
    assert rows.loc[3, "countries"] == ["France"]
    assert rows.loc[1, "genres"] == ["Adventure", "Animation"] and rows.loc[3, "genres"] == []
    assert rows.loc[1, "tags"] == [("mão", 3), ("pixar", 3), ("earth", 1)]
    assert rows.loc[3, "tags"] == [("earth", 2)]


def test_taggers_are_counted_by_name_and_person(tmp_path: Path) -> None:
    """movie_tags.dat's weight counts applications, so it cannot tell one person's
    filing tag from a shared one; user_taggedmovies.dat can. Users are counted per
    normalised name: two spellings by two users make one tag two people use."""
    files = dict(FILES)
    files["tags.dat"] = (b"id\tvalue\n7\tearth\n13\tpixar\n14\t Pixar \n31\ttumeys dvds\n"
                         b"40\tsf\n")
    rows = "".join(f"{u}\t{m}\t{t}\t1\t1\t2008\t0\t0\t0\n" for u, m, t in (
        (5, 1, 7), (6, 3, 7),            # earth: two users
        (5, 1, 13), (6, 3, 14),          # pixar / " Pixar ": two users, one name
        (9, 1, 31), (9, 3, 31),          # tumeys dvds: one user, two films
        (9, 1, 99)))                     # a tag id tags.dat does not name
    files["user_taggedmovies.dat"] = ("\t".join(hetrec._USER_TAGS_HEADER) + "\n" + rows).encode()
    files["movie_tags.dat"] = b"movieID\ttagID\ttagWeight\n1\t7\t1\n1\t13\t3\n1\t31\t2\n"
    root = write(tmp_path / "h", files)
    assert hetrec.tagger_counts(root) == {"earth": 2, "pixar": 2, "tumeys dvds": 1}
    # the metadata keeps every movie_tags row: the vocabulary decides (models.concepts)
    md = hetrec.load_metadata(links_frame(), root).set_index("item")
    assert md.loc[1, "tags"] == [("pixar", 3), ("tumeys dvds", 2), ("earth", 1)]


def test_taggers_file_missing_is_said_and_counts_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without the users file no HetRec tag shows two people (the vocabulary then needs
    other evidence), rather than every weight passing for two people."""
    files = {k: v for k, v in FILES.items() if k != hetrec.TAGGERS_FILE}
    root = write(tmp_path / "h", files)
    with caplog.at_level("WARNING"):
        assert hetrec.tagger_counts(root) == {}
    assert hetrec.TAGGERS_FILE in caplog.text
    assert hetrec.load_metadata(links_frame(), root)["item"].tolist() == [1, 2, 3]


def test_trust_report_counts(tmp_path: Path) -> None:
    report = hetrec.trust_report(links_frame(), write(tmp_path / "h", FILES))
    assert report == hetrec.TrustReport(hetrec_movies=5, shared=4, trusted=3, mismatched=(47,))


def test_reads_from_a_zip_without_a_folder(tmp_path: Path) -> None:
    archive = tmp_path / "hetrec2011-movielens-2k-v2.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    md = hetrec.load_metadata(links_frame(), tmp_path)
    assert md["item"].tolist() == [1, 2, 3]


def test_corrected_directors_header_is_accepted_too(tmp_path: Path) -> None:
    files = dict(FILES)
    files["movie_directors.dat"] = b"movieID\tdirectorID\tdirectorName\n1\tj\tJ\n"
    md = hetrec.load_metadata(links_frame(), write(tmp_path / "h", files))
    assert md.set_index("item").loc[1, "directors"] == ["J"]


def test_malformed_tag_weight_names_file_and_line(tmp_path: Path) -> None:
    files = dict(FILES)
    files["movie_tags.dat"] = b"movieID\ttagID\ttagWeight\n1\t7\t1\n1\t13\tmany\n"
    root = write(tmp_path / "h", files)
    with pytest.raises(MalformedFileError) as info:
        hetrec.load_metadata(links_frame(), root)
    assert str(info.value) == f"{root / 'movie_tags.dat'}, line 3: weight 'many' is not an integer"


def test_links_frame_must_have_imdb_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="load_links"):
        hetrec.load_metadata(pd.DataFrame({"item": [1]}), write(tmp_path / "h", FILES))


@pytest.mark.realdata
def test_real_hetrec_against_ml_latest_small(real_data_dir: Path) -> None:
    if not (real_data_dir / hetrec.NAME).is_dir() or not (
            real_data_dir / "ml-latest-small").is_dir():
        pytest.skip(f"HetRec or ml-latest-small missing in {real_data_dir}")
    links = movielens.load_links("ml-latest-small", real_data_dir)
    report = hetrec.trust_report(links, real_data_dir)
    assert (report.hetrec_movies, report.shared, report.trusted) == (10_197, 6_620, 6_050)
    assert 47 in report.mismatched
    md = hetrec.load_metadata(links, real_data_dir)
    assert len(md) == 6_050 and md["item"].is_monotonic_increasing
    rows = md.set_index("item")
    assert rows.loc[1, "directors"] == ["John Lasseter"]
    assert md["tags"].iloc[0][:2] == [("animation", 17), ("pixar", 10)]
    rated = movielens.load_ratings("ml-latest-small", real_data_dir)["item"].unique()
    with_director = md.loc[md["directors"].str.len() > 0, "item"]
    assert int(with_director.isin(rated).sum()) == 6_030
