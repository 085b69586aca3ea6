"""Million Song Dataset taste-profile triplets: codes, vocabularies, malformed lines."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.data import msd, parsing
from models.data.interactions import positives_from_ratings
from models.data.parsing import MalformedFileError

U1 = "b80344d063b5ccb3212f76538f3d9e43d87dca9e"
U2 = "85c1f87fea955d09b4bec2e36aee110927aedf9a"
TRIPLETS = (
    f"{U1}\tSOAKIMP12A8C130995\t1\n"
    f"{U1}\tSOAPDEY12A81C210A9\t5\n"
    f"{U2}\tSOAKIMP12A8C130995\t2\n"
    f"{U2}\tSOZZZZZ12A8C000000\t10\n"
)


def zipped(tmp_path: Path, text: str) -> Path:
    archive = tmp_path / "train_triplets.txt.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train_triplets.txt", text)
    return archive


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_codes_index_sorted_vocabularies(tmp_path: Path, chunk_rows: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "CATEGORY_CHUNK_ROWS", chunk_rows)
    frame, vocab = msd.load_with_vocab(zipped(tmp_path, TRIPLETS))
    assert list(frame.columns) == ["user", "item", "plays"]
    assert all(str(t) == "int64" for t in frame.dtypes)
    assert vocab.users.tolist() == sorted([U1, U2])
    assert vocab.songs.tolist() == sorted({"SOAKIMP12A8C130995", "SOAPDEY12A81C210A9",
                                           "SOZZZZZ12A8C000000"})
    # the codes round-trip to the file's strings, row by row
    assert vocab.users[frame["user"]].tolist() == [U1, U1, U2, U2]
    assert vocab.songs[frame["item"]].tolist() == [
        "SOAKIMP12A8C130995", "SOAPDEY12A81C210A9", "SOAKIMP12A8C130995", "SOZZZZZ12A8C000000"]
    assert frame["plays"].tolist() == [1, 5, 2, 10]


def test_triplets_feed_positives_from_ratings(tmp_path: Path) -> None:
    frame = msd.load_triplets(zipped(tmp_path, TRIPLETS))
    data = positives_from_ratings(frame, threshold=None, min_item_users=2,
                                  min_user_positives=1)
    assert data.n_users == 2 and data.n_items == 1 and data.nnz == 2


def test_plain_text_file_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "train_triplets.txt").write_text(TRIPLETS)
    assert len(msd.load_triplets(tmp_path)) == 4


def test_empty_file_gives_an_empty_frame(tmp_path: Path) -> None:
    frame, vocab = msd.load_with_vocab(zipped(tmp_path, ""))
    assert frame.empty and list(frame.columns) == ["user", "item", "plays"]
    assert len(vocab.users) == 0 and len(vocab.songs) == 0


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        (f"{U2}\tSOAKIMP12A8C130995", "expected 3 tab-separated fields"),
        (f"{U2}\tSOAKIMP12A8C130995\tmany", "plays 'many' is not an integer"),
        (f"{U2}\tSOAKIMP12A8C130995\t0", "plays 0 is out of range 1..inf"),
        ("\tSOAKIMP12A8C130995\t3", "empty user"),
    ],
)
@pytest.mark.parametrize("chunk_rows", [2, 1000])
def test_malformed_line_is_named(tmp_path: Path, bad_line: str, problem: str, chunk_rows: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "CATEGORY_CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(parsing, "LOCATE_CHUNK_ROWS", chunk_rows)
    archive = zipped(tmp_path, TRIPLETS + bad_line + "\n" + TRIPLETS)
    with pytest.raises(MalformedFileError) as info:
        msd.load_triplets(archive)
    assert info.value.path == f"{archive}:train_triplets.txt" and info.value.line == 5
    assert problem in info.value.problem


@pytest.mark.realdata
@pytest.mark.slow
def test_real_msd_triplets(real_data_dir: Path) -> None:
    if not any((real_data_dir / n).exists()
               for n in ("train_triplets.txt.zip", "train_triplets.txt")):
        pytest.skip(f"no MSD train_triplets in {real_data_dir}")
    frame, vocab = msd.load_with_vocab(real_data_dir)
    assert len(frame) == 48_373_586
    assert (len(vocab.users), len(vocab.songs)) == (1_019_318, 384_546)
    assert np.all(frame["plays"].to_numpy() >= 1)
