"""Find a dataset on disk, or download it once, and hand out its member files.

Resolution order for a dataset name (see `resolve`):
1. `data_dir` if given, else `KNOBS_DATA_DIR` if set; it may be a folder holding the
   dataset folder (`ml-25m/`) or archive (`ml-25m.zip`), the dataset folder itself, or the
   archive itself;
2. the cache directory, `KNOBS_CACHE_DIR` or `data/` under the current directory;
3. a download from the official URL into the cache, written atomically and checked
   against the sha256 pinned in `SOURCES`.

Archives are never unpacked: members are read straight out of the zip.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

log = logging.getLogger(__name__)

DATA_DIR_ENV = "KNOBS_DATA_DIR"
CACHE_DIR_ENV = "KNOBS_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20

# Pinned sha256 of each official archive. None: not pinned yet; the download is then
# accepted unchecked and a warning says so.
# Pinned from tensorflow_datasets url_checksums/movielens.txt (2018-09-26 release; GroupLens
# regenerates ml-latest-small, so a newer release will be refused, not silently used).
ML_LATEST_SMALL_SHA256: str | None = (
    "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"
)
ML_1M_SHA256: str | None = (
    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
)
ML_10M_SHA256: str | None = (
    "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862"
)
ML_20M_SHA256: str | None = (
    "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"
)
ML_25M_SHA256: str | None = (
    "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"
)
# No published checksum could be found for these two; downloads are accepted with a
# logged warning and their sha256 is logged so that it can be pinned here.
HETREC_MOVIELENS_2K_SHA256: str | None = None
MSD_TRAIN_TRIPLETS_SHA256: str | None = None
# goodbooks-10k's v1.0 release zip on GitHub (the 6M-rating release; its ratings.csv has the
# columns user_id,book_id,rating). The author publishes no checksum; this one is the
# pin of Ludwig's dataset config for the same URL (ludwig/datasets/configs/goodbooks_books).
GOODBOOKS_10K_SHA256: str | None = (
    "261b97b56db61f3fb2ce5aadbb13704d30179fcc986c17ace665a0af9ed00731"
)


class DataUnavailableError(RuntimeError):
    """The dataset is neither on disk nor downloadable (offline, HTTP error)."""


class ChecksumMismatchError(RuntimeError):
    """A download's sha256 differs from the pinned value; nothing was kept."""


@dataclass(frozen=True)
class Source:
    """Where one dataset comes from and what it must contain."""

    name: str
    """Our name for it: 'ml-25m', 'msd', ..."""
    url: str
    """The official download URL of the zip archive."""
    sha256: str | None
    """Pinned sha256 of the archive (lower-case hex); None: not pinned."""
    size: int | None
    """Archive size in bytes, if known; checked before the hash."""
    folder: str | None
    """The folder the archive unpacks to ('ml-10M100K'); None: members at the top."""
    members: tuple[str, ...]
    """Files that must be present for the dataset to count as found."""

    @property
    def archive_name(self) -> str:
        """File name of the archive: the last segment of the URL."""
        return Path(urllib.parse.urlparse(self.url).path).name


_GROUPLENS = "https://files.grouplens.org/datasets"
_ML_CSV = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("ml-latest-small", f"{_GROUPLENS}/movielens/ml-latest-small.zip",
               ML_LATEST_SMALL_SHA256, 978_202, "ml-latest-small", _ML_CSV),
        Source("ml-1m", f"{_GROUPLENS}/movielens/ml-1m.zip",
               ML_1M_SHA256, 5_917_549, "ml-1m", ("ratings.dat", "movies.dat")),
        Source("ml-10m", f"{_GROUPLENS}/movielens/ml-10m.zip",
               ML_10M_SHA256, 65_566_137, "ml-10M100K", ("ratings.dat", "movies.dat", "tags.dat")),
        Source("ml-20m", f"{_GROUPLENS}/movielens/ml-20m.zip",
               ML_20M_SHA256, 198_702_078, "ml-20m", _ML_CSV),
        Source("ml-25m", f"{_GROUPLENS}/movielens/ml-25m.zip",
               ML_25M_SHA256, 261_978_986, "ml-25m", _ML_CSV),
        Source("hetrec2011-movielens-2k-v2",
               f"{_GROUPLENS}/hetrec2011/hetrec2011-movielens-2k-v2.zip",
               HETREC_MOVIELENS_2K_SHA256, None, "hetrec2011-movielens-2k-v2",
               ("movies.dat", "movie_directors.dat", "movie_countries.dat",
                "movie_genres.dat", "movie_tags.dat", "tags.dat")),
        Source("goodbooks-10k",
               "https://github.com/zygmuntz/goodbooks-10k/releases/download/v1.0/"
               "goodbooks-10k.zip",
               GOODBOOKS_10K_SHA256, None, "goodbooks-10k",
               ("books.csv", "ratings.csv", "tags.csv", "book_tags.csv")),
        Source("msd",
               "http://millionsongdataset.com/sites/default/files/challenge/"
               "train_triplets.txt.zip",
               MSD_TRAIN_TRIPLETS_SHA256, None, None, ("train_triplets.txt",)),
    )
}


class DatasetFiles(ABC):
    """The member files of one dataset, wherever they are (a folder or a zip archive)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    @abstractmethod
    def open(self, member: str) -> IO[bytes]:
        """A binary stream of `member` ('ratings.csv'); FileNotFoundError if absent."""

    @abstractmethod
    def exists(self, member: str) -> bool:
        """Whether `member` is present."""

    @abstractmethod
    def path_for_messages(self, member: str) -> str:
        """How to name `member` to a person: a path, or `archive.zip:folder/member`."""

    def missing(self) -> list[str]:
        """Required members (Source.members) that are absent."""
        return [m for m in self.source.members if not self.exists(m)]


class FolderFiles(DatasetFiles):
    """Members are plain files in `root`, or each alone in a zip of its own beside them
    (`ratings.csv.zip` holding `ratings.csv`, as goodbooks-10k's large tables are
    shipped); a plain file wins over its zip."""

    def __init__(self, source: Source, root: Path) -> None:
        super().__init__(source)
        self.root = root

    def _zipped(self, member: str) -> Path | None:
        """`root/member.zip` when there is no plain `root/member` and that zip holds it."""
        if (self.root / member).is_file():
            return None
        archive = self.root / f"{member}.zip"
        if not archive.is_file():
            return None
        try:
            with zipfile.ZipFile(archive) as zf:
                return archive if Path(member).name in zf.namelist() else None
        except zipfile.BadZipFile:
            log.warning("%s is not a valid zip archive; ignoring it", archive)
            return None

    def open(self, member: str) -> IO[bytes]:
        archive = self._zipped(member)
        if archive is None:
            return (self.root / member).open("rb")
        zf = zipfile.ZipFile(archive)
        try:
            return zf.open(Path(member).name)
        finally:
            zf.close()

    def exists(self, member: str) -> bool:
        return (self.root / member).is_file() or self._zipped(member) is not None

    def path_for_messages(self, member: str) -> str:
        archive = self._zipped(member)
        return f"{archive}:{Path(member).name}" if archive else str(self.root / member)

    def __repr__(self) -> str:
        return f"FolderFiles({self.source.name!r}, {str(self.root)!r})"


class ZipFiles(DatasetFiles):
    """Members are entries of a zip archive, under `prefix` ('ml-25m/' or '')."""

    def __init__(self, source: Source, archive: Path) -> None:
        super().__init__(source)
        self.archive = archive
        with zipfile.ZipFile(archive) as zf:
            self._names = set(zf.namelist())
        self.prefix = self._choose_prefix()

    def _choose_prefix(self) -> str:
        """The folder inside the archive that holds the members: the official folder,
        else the top level, else any top-level folder that holds them all."""
        candidates = [f"{self.source.folder}/"] if self.source.folder else []
        candidates.append("")
        candidates += sorted({n.split("/", 1)[0] + "/" for n in self._names if "/" in n})
        for prefix in candidates:
            if all(prefix + m in self._names for m in self.source.members):
                return prefix
        return candidates[0]

    def open(self, member: str) -> IO[bytes]:
        name = self.prefix + member
        if name not in self._names:
            raise FileNotFoundError(f"{self.archive} has no member {name!r}")
        zf = zipfile.ZipFile(self.archive)
        try:
            # The member stream keeps the archive's file open until it is closed itself.
            return zf.open(name)
        finally:
            zf.close()

    def exists(self, member: str) -> bool:
        return self.prefix + member in self._names

    def path_for_messages(self, member: str) -> str:
        return f"{self.archive}:{self.prefix}{member}"

    def __repr__(self) -> str:
        return f"ZipFiles({self.source.name!r}, {str(self.archive)!r}, prefix={self.prefix!r})"


def source(name: str) -> Source:
    """The `SOURCES` entry for `name`; ValueError listing the known names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(SOURCES)}"
        ) from None


def cache_dir() -> Path:
    """`KNOBS_CACHE_DIR`, or `data/` under the current working directory."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.cwd() / "data"


def _folder_names(src: Source) -> list[str]:
    names = [src.folder] if src.folder else []
    return [*names, src.name] if src.name not in names else names


def _archive_names(src: Source) -> list[str]:
    names = [src.archive_name]
    return [*names, f"{src.name}.zip"] if f"{src.name}.zip" not in names else names


def _try_zip(src: Source, path: Path) -> DatasetFiles | None:
    try:
        files = ZipFiles(src, path)
    except zipfile.BadZipFile:
        log.warning("%s is not a valid zip archive; ignoring it", path)
        return None
    missing = files.missing()
    if missing:
        log.warning("%s lacks %s; ignoring it", path, ", ".join(missing))
        return None
    return files


def _try_folder(src: Source, path: Path, quiet: bool = False) -> DatasetFiles | None:
    files = FolderFiles(src, path)
    missing = files.missing()
    if missing:
        if not quiet:
            log.warning("%s lacks %s; ignoring it", path, ", ".join(missing))
        return None
    return files


def find_in(src: Source, base: Path) -> DatasetFiles | None:
    """The dataset at or under `base` (see the module docstring), or None."""
    if base.is_file():
        if zipfile.is_zipfile(base):
            return _try_zip(src, base)
        if base.name in src.members and len(src.members) == 1:
            return FolderFiles(src, base.parent)
        return None
    if not base.is_dir():
        return None
    for folder in _folder_names(src):
        if (base / folder).is_dir():
            found = _try_folder(src, base / folder)
            if found:
                return found
    for archive in _archive_names(src):
        if (base / archive).is_file():
            found = _try_zip(src, base / archive)
            if found:
                return found
    return _try_folder(src, base, quiet=True)


def unavailable_hint(src: Source) -> str:
    """What to do instead of downloading, for the end of an error message."""
    folder = f"{src.folder}/ or " if src.folder else ""
    return (
        f"download it elsewhere and set {DATA_DIR_ENV} to the folder that holds "
        f"{folder}{src.archive_name} (or to that folder or zip itself)"
    )


def resolve(name: str, data_dir: str | Path | None = None) -> DatasetFiles:
    """The files of dataset `name`: from `data_dir` (default: `KNOBS_DATA_DIR`), else the
    cache, else downloaded into the cache. Raises DataUnavailableError when offline."""
    src = source(name)
    given = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if given:
        found = find_in(src, Path(given).expanduser())
        if found:
            log.debug("%s: using %r", name, found)
            return found
        log.info("%s not found in %s; trying the cache", name, given)
    cache = cache_dir()
    found = find_in(src, cache)
    if found:
        log.debug("%s: using cached %r", name, found)
        return found
    try:
        archive = download(src, cache)
    except DataUnavailableError as exc:
        if given:
            raise DataUnavailableError(f"{name} is not in {given}; {exc}") from exc
        raise
    found = _try_zip(src, archive)
    if found is None:
        raise DataUnavailableError(
            f"{archive} (downloaded from {src.url}) lacks {', '.join(src.members)}; "
            f"delete it and {unavailable_hint(src)}"
        )
    return found


_NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)


def download(src: Source, dest_dir: Path) -> Path:
    """Download `src.url` to `dest_dir / src.archive_name` atomically: a temporary file in
    the same folder, fsync, sha256 check, then os.replace. Returns the final path.

    Raises DataUnavailableError when the URL cannot be fetched and ChecksumMismatchError
    when the pinned sha256 (or size) does not match; either way no file is left behind.
    """
    scheme = urllib.parse.urlparse(src.url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"refusing to download {src.name} from non-HTTP URL {src.url}")
    if src.sha256 is None:
        log.warning(
            "the sha256 of %s is not pinned in models.data.download; %s will not be verified",
            src.archive_name, src.url,
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / src.archive_name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{src.archive_name}.", suffix=".part",
                                    dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        digest, size = _fetch(src, fd)
        if src.size is not None and size != src.size:
            raise ChecksumMismatchError(
                f"downloaded {src.name} from {src.url} has {size} bytes, expected "
                f"{src.size}; the file was discarded; retry, or {unavailable_hint(src)}"
            )
        if src.sha256 is not None and digest != src.sha256.lower():
            raise ChecksumMismatchError(
                f"downloaded {src.name} from {src.url} has sha256 {digest}, expected "
                f"{src.sha256}; the file was discarded; retry, or {unavailable_hint(src)}"
            )
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dest_dir)
    log.info("downloaded %s (%d bytes, sha256 %s) to %s", src.name, size, digest, final)
    return final


def _fetch(src: Source, fd: int) -> tuple[str, int]:
    """Stream the URL into the open file descriptor `fd` (closed on return) and fsync.
    Returns (sha256 hex, byte count)."""
    h = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        try:
            # The scheme was checked to be http(s) by the caller.
            with urllib.request.urlopen(src.url, timeout=DOWNLOAD_TIMEOUT_S) as resp:  # noqa: S310
                total = resp.headers.get("Content-Length")
                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                          desc=src.archive_name, disable=None) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
        except _NETWORK_ERRORS as exc:
            reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
            raise DataUnavailableError(
                f"cannot download {src.name} from {src.url} ({reason}); {unavailable_hint(src)}"
            ) from exc
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
