"""Finding datasets on disk, and downloading them atomically with a checked sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import logging
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.data import download
from models.data.download import (
    ChecksumMismatchError,
    DataUnavailableError,
    FolderFiles,
    ZipFiles,
    resolve,
)

ML_FILES = {
    "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,100\n",
    "movies.csv": "movieId,title,genres\n1,Toy Story (1995),Animation\n",
    "tags.csv": "userId,movieId,tag,timestamp\n",
    "links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n",
}


def write_folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def zip_bytes(files: dict[str, str], folder: str | None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(f"{folder}/{name}" if folder else name, text)
    return buf.getvalue()


def write_zip(path: Path, files: dict[str, str], folder: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(files, folder))
    return path


@pytest.fixture
def serve() -> Iterator[dict[str, bytes]]:
    """A tiny HTTP server on 127.0.0.1: put bytes under a path in the returned dict; the
    dict's '__base__' key is filled with the server's base URL."""
    routes: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    routes["__base__"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    try:
        yield routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def point_source(monkeypatch: pytest.MonkeyPatch, name: str, **changes: object) -> None:
    src = download.SOURCES[name]
    monkeypatch.setitem(download.SOURCES, name, dataclasses.replace(src, **changes))  # type: ignore[arg-type]


def read(files: download.DatasetFiles, member: str) -> str:
    with files.open(member) as f:
        return f.read().decode()


# --- finding a local copy -------------------------------------------------------------


def test_data_dir_holding_the_dataset_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    write_folder(tmp_path / "datasets" / "ml-25m", ML_FILES)
    monkeypatch.setenv("KNOBS_DATA_DIR", str(tmp_path / "datasets"))
    files = resolve("ml-25m")
    assert isinstance(files, FolderFiles)
    assert read(files, "ratings.csv") == ML_FILES["ratings.csv"]
    assert files.path_for_messages("ratings.csv") == str(
        tmp_path / "datasets" / "ml-25m" / "ratings.csv")


def test_data_dir_is_the_dataset_folder_itself(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_folder(tmp_path / "anything", ML_FILES)
    monkeypatch.setenv("KNOBS_DATA_DIR", str(tmp_path / "anything"))
    assert read(resolve("ml-20m"), "links.csv") == ML_FILES["links.csv"]


def test_data_dir_holding_the_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_zip(tmp_path / "d" / "ml-25m.zip", ML_FILES, "ml-25m")
    monkeypatch.setenv("KNOBS_DATA_DIR", str(tmp_path / "d"))
    files = resolve("ml-25m")
    assert isinstance(files, ZipFiles)
    assert read(files, "movies.csv") == ML_FILES["movies.csv"]
    archive = tmp_path / "d" / "ml-25m.zip"
    assert files.path_for_messages("movies.csv") == f"{archive}:ml-25m/movies.csv"


def test_data_dir_is_the_zip_itself_with_members_at_the_top(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "copy.zip", ML_FILES, None)
    files = resolve("ml-latest-small", data_dir=archive)
    assert isinstance(files, ZipFiles) and files.prefix == ""
    assert read(files, "tags.csv") == ML_FILES["tags.csv"]


def test_ml10m_folder_is_named_ml_10M100K(tmp_path: Path) -> None:
    dat = {"ratings.dat": "1::1::5::1\n", "movies.dat": "1::A (1990)::Drama\n",
           "tags.dat": ""}
    write_zip(tmp_path / "ml-10m.zip", dat, "ml-10M100K")
    files = resolve("ml-10m", data_dir=tmp_path)
    assert isinstance(files, ZipFiles) and files.prefix == "ml-10M100K/"
    write_folder(tmp_path / "unzipped" / "ml-10M100K", dat)
    assert isinstance(resolve("ml-10m", data_dir=tmp_path / "unzipped"), FolderFiles)


def test_msd_data_dir_may_name_the_text_file(tmp_path: Path) -> None:
    (tmp_path / "train_triplets.txt").write_text("u\ts\t1\n")
    files = resolve("msd", data_dir=tmp_path / "train_triplets.txt")
    assert read(files, "train_triplets.txt") == "u\ts\t1\n"


def test_incomplete_copy_is_skipped_for_the_cache(tmp_path: Path, isolated: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    write_folder(tmp_path / "d" / "ml-25m", {"ratings.csv": ML_FILES["ratings.csv"]})
    write_zip(isolated / "ml-25m.zip", ML_FILES, "ml-25m")
    with caplog.at_level(logging.WARNING):
        files = resolve("ml-25m", data_dir=tmp_path / "d")
    assert isinstance(files, ZipFiles) and files.archive == isolated / "ml-25m.zip"
    assert "lacks movies.csv" in caplog.text


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known datasets: ml-latest-small"):
        resolve("ml-100k")


# --- downloading ----------------------------------------------------------------------


def test_offline_raises_one_line_error_pointing_at_knobs_data_dir(isolated: Path) -> None:
    with pytest.raises(DataUnavailableError) as info:
        resolve("ml-25m")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("cannot download ml-25m from http://127.0.0.1:")
    assert "set KNOBS_DATA_DIR to the folder that holds ml-25m/ or ml-25m.zip" in msg
    assert isinstance(info.value, RuntimeError)
    assert not isolated.exists() or list(isolated.iterdir()) == []


def test_offline_with_a_data_dir_that_lacks_it_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError) as info:
        resolve("hetrec2011-movielens-2k-v2", data_dir=tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"hetrec2011-movielens-2k-v2 is not in {tmp_path}; cannot download")
    assert "\n" not in msg and "KNOBS_DATA_DIR" in msg


def test_http_error_is_unavailable_too(serve: dict[str, bytes],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    point_source(monkeypatch, "ml-1m", url=serve["__base__"].decode() + "/ml-1m.zip")
    with pytest.raises(DataUnavailableError, match=r"cannot download ml-1m .*Not Found"):
        resolve("ml-1m")


def test_download_into_cache_then_reuse(serve: dict[str, bytes], isolated: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    body = zip_bytes(ML_FILES, "ml-latest-small")
    serve["/ml-latest-small.zip"] = body
    point_source(monkeypatch, "ml-latest-small",
                 url=serve["__base__"].decode() + "/ml-latest-small.zip",
                 sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    with caplog.at_level(logging.WARNING):
        files = resolve("ml-latest-small")
    assert "not pinned" not in caplog.text
    assert isinstance(files, ZipFiles)
    assert [p.name for p in isolated.iterdir()] == ["ml-latest-small.zip"]
    assert (isolated / "ml-latest-small.zip").read_bytes() == body
    del serve["/ml-latest-small.zip"]  # a second resolve must not download again
    assert read(resolve("ml-latest-small"), "ratings.csv") == ML_FILES["ratings.csv"]


def test_unpinned_checksum_warns(serve: dict[str, bytes], isolated: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    serve["/ml-20m.zip"] = zip_bytes(ML_FILES, "ml-20m")
    point_source(monkeypatch, "ml-20m", url=serve["__base__"].decode() + "/ml-20m.zip",
                 sha256=None, size=None)
    with caplog.at_level(logging.WARNING):
        resolve("ml-20m")
    assert "sha256 of ml-20m.zip is not pinned" in caplog.text


def test_checksum_mismatch_leaves_nothing_behind(serve: dict[str, bytes], isolated: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    body = zip_bytes(ML_FILES, "ml-25m")
    serve["/ml-25m.zip"] = body
    point_source(monkeypatch, "ml-25m", url=serve["__base__"].decode() + "/ml-25m.zip",
                 sha256="0" * 64, size=len(body))
    with pytest.raises(ChecksumMismatchError) as info:
        resolve("ml-25m")
    msg = str(info.value)
    assert hashlib.sha256(body).hexdigest() in msg and "0" * 64 in msg
    assert "\n" not in msg
    assert list(isolated.iterdir()) == []


def test_size_mismatch_is_rejected(serve: dict[str, bytes], isolated: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    serve["/ml-25m.zip"] = zip_bytes(ML_FILES, "ml-25m")
    point_source(monkeypatch, "ml-25m", url=serve["__base__"].decode() + "/ml-25m.zip",
                 size=1)
    with pytest.raises(ChecksumMismatchError, match="expected 1"):
        resolve("ml-25m")
    assert list(isolated.iterdir()) == []


def test_sources_table_is_complete() -> None:
    assert set(download.SOURCES) >= {"ml-latest-small", "ml-1m", "ml-10m", "ml-20m", "ml-25m",
                                     "hetrec2011-movielens-2k-v2", "msd"}
    for src in download.SOURCES.values():
        assert src.sha256 is None or len(src.sha256) == 64
        assert src.members


# --- goodbooks-10k: a release zip, or a folder with a zip per table ---------------------

GOODBOOKS_FILES = {
    "books.csv": "book_id,goodreads_book_id\n",
    "ratings.csv": "user_id,book_id,rating\n1,1,5\n",
    "tags.csv": "tag_id,tag_name\n",
    "book_tags.csv": "goodreads_book_id,tag_id,count\n",
}


def test_goodbooks_offline_names_the_folder_to_point_at(isolated: Path) -> None:
    with pytest.raises(DataUnavailableError) as info:
        resolve("goodbooks-10k")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("cannot download goodbooks-10k from")
    assert ("set KNOBS_DATA_DIR to the folder that holds goodbooks-10k/ or "
            "goodbooks-10k.zip") in msg


def test_goodbooks_release_zip_is_downloaded_and_checked(serve: dict[str, bytes],
                                                         isolated: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    body = zip_bytes(GOODBOOKS_FILES, None)
    serve["/goodbooks-10k.zip"] = body
    assert len(download.SOURCES["goodbooks-10k"].sha256 or "") == 64   # pinned
    point_source(monkeypatch, "goodbooks-10k",
                 url=serve["__base__"].decode() + "/goodbooks-10k.zip",
                 sha256=hashlib.sha256(body).hexdigest())
    files = resolve("goodbooks-10k")
    assert isinstance(files, ZipFiles) and files.prefix == ""
    assert read(files, "ratings.csv") == GOODBOOKS_FILES["ratings.csv"]


def test_a_folder_may_keep_each_table_in_its_own_zip(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "goodbooks-10k",
                        {k: v for k, v in GOODBOOKS_FILES.items() if k != "ratings.csv"})
    assert download.find_in(download.SOURCES["goodbooks-10k"], tmp_path) is None
    write_zip(root / "ratings.csv.zip", {"ratings.csv": GOODBOOKS_FILES["ratings.csv"]}, None)
    files = resolve("goodbooks-10k", data_dir=tmp_path)
    assert isinstance(files, FolderFiles)
    assert read(files, "ratings.csv") == GOODBOOKS_FILES["ratings.csv"]
    assert files.path_for_messages("ratings.csv") == f"{root}/ratings.csv.zip:ratings.csv"
    (root / "ratings.csv.zip").write_bytes(b"not a zip")
    assert not files.exists("ratings.csv")
