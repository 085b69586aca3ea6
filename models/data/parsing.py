"""Read one delimited table from a dataset file, fast when it is well formed and precise
when it is not.

The happy path is one vectorised `pandas.read_csv` (C engine). Only when pandas raises, or
the parsed columns fail validation (NaN where a value is required, a value out of range,
the wrong number of columns), the file is scanned again line by line to find the first bad
line, and `MalformedFileError` names the file, the 1-based line and the problem. For tables
with a free-text column (titles, tags) the scan is also a parser: a text field may hold the
separator itself, and then the scan's result is used instead of pandas'.

Formats seen in the wild:
- MovieLens CSV (ml-latest-small, ml-20m, ml-25m): UTF-8, header line, RFC-4180 quoting.
- MovieLens `::` files (ml-1m, ml-10m): no header; `::` is replaced by a tab before pandas.
- HetRec / MSD tab files: no quoting. HetRec mixes encodings *within* files (tags.dat has
  latin-1 lines and UTF-8 lines), so "auto" decodes each line as UTF-8 and falls back to
  latin-1 for lines that are not valid UTF-8.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Literal, cast

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

Kind = Literal["int", "float", "str", "category"]
Encoding = Literal["utf-8", "auto"]
Opener = Callable[[], IO[bytes]]


_SPACE = re.compile(r"\s+")


def normalize_name(text: str) -> str:
    """A tag's or concept's name as the project compares them: lowercase, stripped, inner
    whitespace collapsed (' Sci-Fi ' -> 'sci-fi')."""
    return _SPACE.sub(" ", str(text)).strip().lower()


class MalformedFileError(ValueError):
    """A data file that does not have the expected shape.

    path: the file (for zip members `archive.zip:folder/member`); line: 1-based line
    number, or None when the problem could not be pinned to a line; problem: what is wrong.
    """

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Column:
    """One column of a table.

    name: the name in the returned frame.
    kind: int -> int64, float -> float32, str -> pandas str, category -> pandas category
        (for millions of repeated string ids, e.g. MSD user and song ids).
    low, high: inclusive bounds a numeric value must lie in (None: unbounded).
    nullable: an empty int field becomes <NA> (the column is pandas Int64) instead of
        being an error.
    allow_empty: an empty str field is a value ("") rather than an error.
    absorbs_separator: a str field that may itself contain the separator (MovieLens
        titles and tags in `::` files); at most one column per table may say so.
    """

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    allow_empty: bool = False
    absorbs_separator: bool = False


@dataclass(frozen=True)
class TableSpec:
    """How a table is laid out in its file.

    sep: "," (CSV with quoting), "\\t" or "::" (no quoting).
    headers: the accepted header lines, verbatim (empty: the file has no header line).
    columns: every field of a row, in file order.
    encoding: "utf-8", or "auto" (per line: UTF-8 where valid, latin-1 otherwise).
    """

    sep: Literal[",", "\t", "::"]
    columns: tuple[Column, ...]
    headers: tuple[str, ...] = ()
    encoding: Encoding = "utf-8"
    _absorbing: int | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        idx = [i for i, c in enumerate(self.columns) if c.absorbs_separator]
        if len(idx) > 1:
            raise ValueError("at most one column may absorb the separator")
        object.__setattr__(self, "_absorbing", idx[0] if idx else None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def decode_auto(raw: bytes) -> str:
    """UTF-8 when the whole text is valid UTF-8, else line by line with a latin-1
    fallback (latin-1 decodes any byte, so this never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    parts = []
    for line in raw.splitlines(keepends=True):
        try:
            parts.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            parts.append(line.decode("latin-1"))
    return "".join(parts)


def _decoded_lines(stream: IO[bytes], encoding: Encoding, where: str) -> Iterator[str]:
    """The lines of `stream` as text, line endings kept (as csv.reader wants them)."""
    for n, line in enumerate(stream, start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            if encoding == "auto":
                yield line.decode("latin-1")
            else:
                raise MalformedFileError(
                    where, n, f"not valid UTF-8 (byte {exc.start + 1}: {exc.reason})"
                ) from None


def _pandas_dtypes(spec: TableSpec) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, c in enumerate(spec.columns):
        if c.kind == "int":
            out[i] = "Int64" if c.nullable else "int64"
        elif c.kind == "float":
            out[i] = "float32"
        elif c.kind == "category":
            out[i] = "category"
        else:
            out[i] = "str"
    return out


def _na_values(spec: TableSpec) -> dict[int, list[str]]:
    # Only an empty field is NA: "NA", "null" and "nan" are legitimate tags and titles.
    # A missing trailing field reads as NA too, which `_check_frame` relies on.
    return {i: [""] for i in range(len(spec.columns))}


def _check_frame(df: pd.DataFrame, spec: TableSpec) -> str | None:
    """None if `df` passes every per-column check, else a short reason (for the log).

    A missing trailing field reads as NA just like an empty one. So NA is accepted in a
    column that may be empty only when the last column may not: a short row then shows up
    as NA in that last column. Where the last column may itself be empty, the line-by-line
    scan tells the two apart.
    """
    if df.shape[1] != len(spec.columns):
        return f"{df.shape[1]} columns instead of {len(spec.columns)}"
    last = spec.columns[-1]
    for c in spec.columns:
        col = df[c.name]
        if c.kind == "float":
            if not np.isfinite(col.to_numpy()).all():
                return f"empty, missing or non-finite {c.name}"
        elif col.isna().any():
            if not (c.nullable or c.allow_empty):
                return f"empty or missing {c.name}"
            if c is last:
                return f"empty or missing last field {c.name}"
        if c.kind in ("int", "float") and (c.low is not None or c.high is not None):
            values = col.dropna().to_numpy() if c.nullable else col.to_numpy()
            if c.low is not None and (values < c.low).any():
                return f"{c.name} below {c.low:g}"
            if c.high is not None and (values > c.high).any():
                return f"{c.name} above {c.high:g}"
    return None


def _fields(
    text_lines: Iterator[str], spec: TableSpec
) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, fields) for each non-blank row after the header."""
    if spec.sep == ",":
        reader = csv.reader(text_lines)
        for row in reader:
            if reader.line_num == 1 and spec.headers:
                continue
            if not row:  # an empty line, which pandas skips too
                continue
            yield reader.line_num, row
        return
    for n, line in enumerate(text_lines, start=1):
        if n == 1 and spec.headers:
            continue
        line = line.rstrip("\r\n")
        if not line:
            continue
        yield n, line.split(spec.sep)


def _join_absorbed(row: list[str], spec: TableSpec) -> list[str]:
    """Give the extra fields of an over-long row back to the free-text column."""
    k = spec._absorbing
    n = len(spec.columns)
    if k is None or len(row) <= n:
        return row
    extra = len(row) - n
    return [*row[:k], spec.sep.join(row[k : k + extra + 1]), *row[k + extra + 1 :]]


def _convert(value: str, c: Column) -> object:
    """The parsed value, or raise ValueError with a message for the error."""
    if c.kind in ("str", "category"):
        if value == "" and not c.allow_empty:
            raise ValueError(f"empty {c.name}")
        return value
    if value.strip() == "" and c.nullable:
        return None
    number: float
    if c.kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{c.name} {value!r} is not an integer") from None
    else:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{c.name} {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{c.name} {value!r} is not a finite number")
    if (c.low is not None and number < c.low) or (c.high is not None and number > c.high):
        lo = "-inf" if c.low is None else f"{c.low:g}"
        hi = "inf" if c.high is None else f"{c.high:g}"
        raise ValueError(f"{c.name} {value} is out of range {lo}..{hi}")
    return number


def _scan(
    text_lines: Iterator[str], spec: TableSpec, where: str, collect: bool, skip: int = 0
) -> list[list[object]] | None:
    """Check every row after the first `skip` (known good); raise MalformedFileError at
    the first bad one. Returns the rows (column-major) when `collect`, else None."""
    cols: list[list[object]] = [[] for _ in spec.columns]
    n = len(spec.columns)
    for row_index, (line_no, raw_row) in enumerate(_fields(text_lines, spec)):
        if row_index < skip:
            continue
        row = _join_absorbed(raw_row, spec)
        if len(row) != n:
            sep = "tab" if spec.sep == "\t" else repr(spec.sep)
            raise MalformedFileError(
                where, line_no,
                f"expected {n} {sep}-separated fields ({', '.join(spec.names)}), "
                f"found {len(row)}",
            )
        for i, (value, c) in enumerate(zip(row, spec.columns, strict=True)):
            try:
                parsed = _convert(value, c)
            except ValueError as exc:
                raise MalformedFileError(where, line_no, str(exc)) from None
            if collect:
                cols[i].append(parsed)
    return cols if collect else None


def _frame_from_columns(cols: list[list[object]], spec: TableSpec) -> pd.DataFrame:
    data: dict[str, pd.Series] = {}
    dtypes = _pandas_dtypes(spec)
    for i, c in enumerate(spec.columns):
        data[c.name] = pd.Series(cols[i], dtype=dtypes[i])
    return pd.DataFrame(data)


def _empty_frame(spec: TableSpec) -> pd.DataFrame:
    return _frame_from_columns([[] for _ in spec.columns], spec)


def _check_header(first: str, spec: TableSpec, where: str) -> None:
    line = first.lstrip("\ufeff").rstrip("\r\n")
    if line in spec.headers:
        return
    expected = spec.headers[0].replace("\t", "<TAB>")
    found = line.replace("\t", "<TAB>")
    if len(found) > 80:
        found = found[:77] + "..."
    problem = "file is empty" if not first else f"found {found!r}"
    raise MalformedFileError(where, 1, f"expected header {expected!r}, {problem}")


def _read_options(sep: str, spec: TableSpec) -> dict[str, Any]:
    # Column keys are positions (header=None, no names): with `names`, pandas would
    # silently turn the extra leading fields of an over-long first row into an index.
    return {
        "sep": sep,
        "header": None,
        "dtype": _pandas_dtypes(spec),
        "keep_default_na": False,
        "na_values": _na_values(spec),
        "quoting": csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
        "engine": "c",
        "encoding": "utf-8",
        "skip_blank_lines": True,
    }


_PANDAS_ERRORS = (ValueError, TypeError, OverflowError)  # ParserError is a ValueError


def _fast(stream: IO[bytes], sep: str, spec: TableSpec) -> tuple[pd.DataFrame, str | None]:
    """One vectorised parse; returns (frame, None) or (anything, why it was rejected)."""
    if any(c.kind == "category" for c in spec.columns):
        return _fast_categorical(stream, sep, spec)
    try:
        df = cast(pd.DataFrame, pd.read_csv(stream, **_read_options(sep, spec)))
    except pd.errors.EmptyDataError:
        return _empty_frame(spec), None
    except _PANDAS_ERRORS as exc:
        return pd.DataFrame(), f"{type(exc).__name__}: {str(exc).strip()}"
    if df.shape[1] == len(spec.columns):
        df.columns = pd.Index(spec.names)
    problem = _check_frame(df, spec)
    if problem is None:
        for c in spec.columns:
            if c.allow_empty and c.kind == "str":
                df[c.name] = df[c.name].fillna("")
    return df, problem


CATEGORY_CHUNK_ROWS = 4_000_000
"""Rows per chunk when parsing tables with category columns (bounds the string memory)."""


def _fast_categorical(stream: IO[bytes], sep: str, spec: TableSpec
                      ) -> tuple[pd.DataFrame, str | None]:
    """Like `_fast` for tables with category columns (MSD: 48M rows of 40-character ids).

    pandas' own dtype="category" parsing is several times slower than reading Python
    strings and factorising them, but 48M rows of strings would take ~8 GB; so the file is
    read in chunks, each chunk's strings are factorised and dropped, and the codes are
    remapped to the sorted union of all chunks' values at the end.
    """
    options = _read_options(sep, spec)
    cats = [c.name for c in spec.columns if c.kind == "category"]
    for i, c in enumerate(spec.columns):
        if c.kind == "category":
            options["dtype"][i] = object
    parts: list[pd.DataFrame] = []
    uniques: dict[str, list[np.ndarray]] = {name: [] for name in cats}
    try:
        with pd.read_csv(stream, chunksize=CATEGORY_CHUNK_ROWS, **options) as reader:
            for chunk in reader:
                if chunk.shape[1] == len(spec.columns):
                    chunk.columns = pd.Index(spec.names)
                problem = _check_frame(chunk, spec)
                if problem is not None:
                    return pd.DataFrame(), problem
                for name in cats:
                    codes, values = pd.factorize(chunk[name])
                    chunk[name] = codes
                    uniques[name].append(np.asarray(values, dtype=object))
                parts.append(chunk)
    except pd.errors.EmptyDataError:
        return _empty_frame(spec), None
    except _PANDAS_ERRORS as exc:
        return pd.DataFrame(), f"{type(exc).__name__}: {str(exc).strip()}"
    if not parts:
        return _empty_frame(spec), None
    categories: dict[str, pd.Index] = {}
    for name in cats:
        categories[name] = pd.Index(np.unique(np.concatenate(uniques[name])))
        for part, chunk_values in zip(parts, uniques[name], strict=True):
            part[name] = categories[name].get_indexer(pd.Index(chunk_values))[part[name].to_numpy()]
    df = pd.concat(parts, ignore_index=True)
    for name in cats:
        df[name] = pd.Categorical.from_codes(df[name].to_numpy(dtype=np.int64),
                                             categories=categories[name])
    return df, None


def _first_bad_chunk(body: Callable[[], AbstractContextManager[IO[bytes]]], sep: str,
                     spec: TableSpec) -> int:
    """Index of the first row of the first LOCATE_CHUNK_ROWS-row chunk that pandas or the
    column checks reject (0 if none is): rows before it need not be checked one by one."""
    start = 0
    with body() as stream:
        try:
            with pd.read_csv(stream, chunksize=LOCATE_CHUNK_ROWS,
                             **_read_options(sep, spec)) as reader:
                for chunk in reader:
                    if chunk.shape[1] == len(spec.columns):
                        chunk.columns = pd.Index(spec.names)
                    if _check_frame(chunk, spec) is not None:
                        return start
                    start += len(chunk)
        except _PANDAS_ERRORS:
            return start
    return 0


LOCATE_CHUNK_ROWS = 1_000_000
"""Rows per chunk when narrowing down where a large malformed file goes wrong."""


def read_table(open_member: Opener, spec: TableSpec, where: str) -> pd.DataFrame:
    """Parse a whole table into a frame with the column names and dtypes of `spec`.

    open_member: returns a fresh binary stream of the file each time it is called (it is
        called again only when the file is malformed).
    where: how to name the file in error messages.
    Raises MalformedFileError naming the file, 1-based line and problem.
    """
    sep: str = spec.sep
    if spec.sep == "::" or spec.encoding == "auto":
        with open_member() as stream:
            raw = stream.read()
        if spec.encoding == "auto":
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raw = decode_auto(raw).encode("utf-8")
        body_bytes = raw
        if spec.headers:
            first, _, body_bytes = raw.partition(b"\n")
            _check_header(first.decode("utf-8"), spec, where)
        if sep == "::":
            body_bytes = body_bytes.replace(b"::", b"\t")
            sep = "\t"

        @contextlib.contextmanager
        def body() -> Iterator[IO[bytes]]:
            yield io.BytesIO(body_bytes)

        with body() as stream:
            df, problem = _fast(stream, sep, spec)
    else:

        @contextlib.contextmanager
        def body() -> Iterator[IO[bytes]]:
            with open_member() as stream:
                if spec.headers:
                    stream.readline()
                yield stream

        with open_member() as stream:
            if spec.headers:
                _check_header(stream.readline().decode("utf-8", errors="replace"), spec, where)
            df, problem = _fast(stream, sep, spec)
    if problem is None:
        return df
    return _slow(body, sep, spec, where, open_member, problem)


def _slow(body: Callable[[], AbstractContextManager[IO[bytes]]], sep: str, spec: TableSpec,
          where: str, reopen: Opener, problem: str) -> pd.DataFrame:
    """After the fast parse failed: find the first bad line and raise, or (for tables with
    free text) return what the line-by-line parser makes of the file."""
    log.debug("%s: fast parse rejected (%s); scanning line by line", where, problem)
    collect = spec._absorbing is not None or any(
        c.allow_empty or c.nullable for c in spec.columns
    )
    skip = 0 if collect else _first_bad_chunk(body, sep, spec)
    with reopen() as stream:
        cols = _scan(_decoded_lines(stream, spec.encoding, where), spec, where, collect, skip)
    if cols is None:
        raise MalformedFileError(where, None, f"could not be parsed: {problem}")
    return _frame_from_columns(cols, spec)
