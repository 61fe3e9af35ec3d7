"""Read an uploaded table into plain rows, or say in plain words why it cannot be read.

The person who reads a ParseError fixes their file in a spreadsheet or a text editor, so every
message names the physical line (1-based, as an editor counts it) or the column, and says what
to do. Nothing but ParseError ever leaves ``read_table``: a bad upload must become a 422, never
a 500.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# One check for every JSONL reader, the tagging files' too (training code cannot import app/).
from worker.training.tasks.tagged_formats import lone_surrogate

_UTF8_BOM = b"\xef\xbb\xbf"
_EXTENSIONS = {
    ext: fmt
    for fmt, exts in (
        ("csv", ".csv"),
        ("tsv", ".tsv .tab"),
        ("jsonl", ".jsonl .ndjson .json .jsonlines"),
        ("parquet", ".parquet .pq"),
    )
    for ext in exts.split()
}
_JSON_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}
_JSON_KINDS[type(None)] = "null"
PROGRESS_EVERY = 10_000  # rows between two progress reports
LONE_SURROGATE = (
    "a \\u escape of half a character (a lone surrogate such as \\ud800), which is not text; "
    "write the character itself"
)

# Told every PROGRESS_EVERY rows: rows read so far, and the share of the file read (0..1).
OnProgress = Callable[[int, float], None]


class DatasetFormat(StrEnum):
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    parquet = "parquet"


class ParseError(ValueError):
    """A file we cannot read; message says what to fix."""

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line}: {message}" if line is not None else message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep line and column across pickling
        return partial(ParseError, line=self.line, column=self.column), (self.message,)


@dataclass
class Table:
    columns: list[str]
    # Cell values: str, int, float, bool or None; a JSONL list of labels is its JSON text.
    rows: list[dict[str, Any]]
    lines: list[int]  # 1-based source line of each row; row index + 1 for Parquet


def detect_format(filename: str, head: bytes) -> DatasetFormat:
    """Trust the extension; sniff the first bytes only when it tells us nothing."""
    suffix = Path(filename).suffix.lower()
    stripped = head.removeprefix(_UTF8_BOM).lstrip()
    tabs, commas = (stripped.split(b"\n", 1)[0].count(sep) for sep in (b"\t", b","))
    if suffix in _EXTENSIONS:
        fmt = DatasetFormat(_EXTENSIONS[suffix])
        # Spreadsheets save tab-separated text under .csv (and the reverse) more than rarely.
        if fmt == DatasetFormat.csv and tabs and not commas:
            return DatasetFormat.tsv
        if fmt == DatasetFormat.tsv and commas and not tabs:
            return DatasetFormat.csv
        return fmt
    if head.startswith(b"PAR1"):
        return DatasetFormat.parquet
    if b"\x00" not in head:
        if stripped.startswith(b"{"):
            return DatasetFormat.jsonl
        if tabs and tabs >= commas:
            return DatasetFormat.tsv
        if commas:
            return DatasetFormat.csv
    shown = f"'{suffix}'" if suffix else "without an extension"
    raise ParseError(f"unsupported file type {shown}; upload CSV, TSV, JSONL or Parquet")


def read_table(
    path: Path,
    fmt: DatasetFormat,
    *,
    max_rows: int | None = None,
    row_cap: int | None = None,
    on_progress: OnProgress | None = None,
) -> Table:
    """Read the whole file (or its first ``max_rows`` rows, for a preview). A file with more
    than ``row_cap`` rows is refused at the first row past the cap, before the rest is read."""
    limit = None if max_rows is None else max(1, max_rows)
    rows = _Rows(row_cap, on_progress or (lambda _rows, _share: None))
    try:
        fmt = DatasetFormat(fmt)
        if fmt == DatasetFormat.parquet:
            return _read_parquet(path, limit, rows)
        text = _decode(path.read_bytes())
        if fmt == DatasetFormat.jsonl:
            return _read_jsonl(text, limit, rows)
        return _read_delimited(text, fmt, limit, rows)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("the file is nested too deeply to read") from None
    except OSError as exc:  # the message would show a server path, which is no help to anyone
        raise ParseError("the uploaded file could not be opened; upload it again") from exc
    except Exception as exc:  # whatever a reader library raises, the user gets a ParseError
        raise ParseError(f"could not read the file ({type(exc).__name__}: {exc})") from exc


@dataclass
class _Rows:
    """The row cap and the progress reports, one call per row read."""

    cap: int | None
    on_progress: OnProgress

    def count(self, n: int, share: Callable[[], float], line: int) -> None:
        if self.cap is not None and n > self.cap:
            raise ParseError(
                f"the file has more than {self.cap:,} rows, the most one dataset may have on "
                "this server; upload a sample of it (an admin can raise "
                "TUNEBOARD_MAX_DATASET_ROWS)",
                line=line,
            )
        if n % PROGRESS_EVERY == 0:
            self.on_progress(n, share())


def _line_of(data: bytes, pos: int) -> int:
    """The physical line holding byte ``pos``, counting \\n, \\r\\n and a lone \\r as csv does."""
    return data.count(b"\n", 0, pos) + data.count(b"\r", 0, pos) - data.count(b"\r\n", 0, pos) + 1


def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ParseError("the file is saved as UTF-16; save the file as UTF-8", line=1)
    data = data.removeprefix(_UTF8_BOM)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ParseError(
            "the line contains a NUL (zero) byte, so this is not a plain text file; "
            "remove it, or save the file as UTF-8 text",
            line=_line_of(data, nul),
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"byte 0x{data[exc.start]:02x} is not valid UTF-8; save the file as UTF-8 "
            "(in Excel: Save As, then 'CSV UTF-8')",
            line=_line_of(data, exc.start),
        ) from None


def _read_delimited(text: str, fmt: DatasetFormat, limit: int | None, counter: _Rows) -> Table:
    # TSV is read without quoting, as GLUE-style files are written: a quote is just a character.
    tsv = fmt == DatasetFormat.tsv
    source = io.StringIO(text, newline="")
    share = lambda: source.tell() / max(1, len(text))  # noqa: E731
    reader = csv.reader(
        source,
        delimiter="\t" if tsv else ",",
        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
    )
    header: list[str] | None = None
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    ragged: list[tuple[int, int]] = []
    line = start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(field.strip() for field in record):
                continue  # blank lines and rows of empty fields ("",,) carry nothing
            if header is None:
                header = _check_header(record, line)
                continue
            if len(record) > len(header) and not any(record[len(header) :]):
                record = record[: len(header)]  # trailing delimiters, as some exports write
            if len(record) != len(header):
                ragged.append((line, len(record)))
            elif not ragged:
                rows.append(dict(zip(header, record, strict=True)))
                lines.append(line)
                counter.count(len(rows), share, line)
                if limit is not None and len(rows) >= limit:
                    return Table(header, rows, lines)
    except csv.Error as exc:
        raise ParseError(f"could not split the line into fields ({exc})", line=start) from None
    if not tsv and reader.line_num > line:  # the last record spans lines: is its quote closed?
        _check_closed_quotes("".join(islice(io.StringIO(text, newline=""), line - 1, None)), line)
    if header is None:
        raise ParseError("the file is empty; it needs a header line and rows of data")
    if ragged:
        line, count = ragged[0]
        more = f" ({len(ragged)} rows in all are like this)" if len(ragged) > 1 else ""
        sep = "tab" if tsv else "comma"
        raise ParseError(
            f"found {count} fields but the header has {len(header)}{more}; check for a missing "
            f"value or a {sep} inside a value" + ("" if tsv else " that is not wrapped in quotes"),
            line=line,
        )
    if not rows:
        raise ParseError("the file has a header line but no rows of data")
    return Table(header, rows, lines)


def _check_closed_quotes(record_text: str, line: int) -> None:
    """The csv module quietly swallows the rest of the file after an unclosed quote."""
    try:
        list(csv.reader(io.StringIO(record_text, newline=""), strict=True))
    except csv.Error as exc:
        if "end of data" in str(exc):
            raise ParseError(
                'a value opened with a double quote (") is never closed; close it, and write a '
                'quote inside a quoted value as two ("")',
                line=line,
            ) from None


def _check_header(names: list[str], line: int) -> list[str]:
    header = [name.strip() for name in names]
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name:
            raise ParseError(
                f"column {position} of the header has no name; name every column "
                "(or delete a saved row-index column)",
                line=line,
            )
        if name in seen:
            raise ParseError(
                f"the header names column '{name}' twice; rename one of them",
                line=line,
                column=name,
            )
        seen.add(name)
    return header


def _read_jsonl(text: str, limit: int | None, counter: _Rows) -> Table:
    columns: dict[str, None] = {}  # an ordered set: keys in first-seen order
    objects: list[dict[str, Any]] = []
    lines: list[int] = []
    source = io.StringIO(text, newline="")
    share = lambda: source.tell() / max(1, len(text))  # noqa: E731
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw, parse_constant=lambda _: None)  # NaN, Infinity: empty
        except ValueError as exc:
            hint = "; the file looks like one JSON array: save one object per line (JSON Lines)"
            hint = hint if not objects and raw.lstrip().startswith("[") else ""
            raise ParseError(f"not valid JSON ({exc}){hint}", line=number) from None
        if lone_surrogate(raw, value):
            raise ParseError(LONE_SURROGATE, line=number)
        if not isinstance(value, dict):
            kind = _JSON_KINDS.get(type(value), "a value")
            raise ParseError(
                f'expected a JSON object like {{"text": "...", "label": "..."}}, found {kind}',
                line=number,
            )
        for key, cell in value.items():
            if _label_list(cell):  # several labels of a row: read as the JSON list it is
                value[key] = json.dumps(cell, ensure_ascii=False)
            elif isinstance(cell, list | dict):
                kind = "a list" if isinstance(cell, list) else "an object"
                raise ParseError(
                    f"the value of '{key}' is {kind}; each value must be text, a number, "
                    "true/false, null or a list of label names",
                    line=number,
                    column=key,
                )
            columns.setdefault(key)
        objects.append(value)
        lines.append(number)
        counter.count(len(objects), share, number)
        if limit is not None and len(objects) >= limit:
            break
    if not objects:
        raise ParseError("the file is empty; it needs one JSON object per line")
    if not columns:
        raise ParseError("the objects in the file have no keys; give each a text and a label")
    names = list(columns)
    return Table(names, [{c: obj.get(c) for c in names} for obj in objects], lines)


def _label_list(cell: Any) -> bool:
    """A flat list of names or numbers: a multi-label cell (worker/training/tasks/multi_label.py
    reads its JSON text); deeper structures are not a table's cells."""
    return isinstance(cell, list) and all(
        isinstance(i, str | int) and not isinstance(i, bool) for i in cell
    )


def _read_parquet(path: Path, limit: int | None, counter: _Rows) -> Table:
    with path.open("rb") as handle:
        try:
            file = pq.ParquetFile(handle)
            schema = file.schema_arrow
        except Exception as exc:
            raise ParseError(f"not a readable Parquet file: {exc}") from None
        # pandas stores its index as extra columns; they are not data.
        names = [n for n in schema.names if not n.startswith("__index_level_")]
        for name in names:
            if names.count(name) > 1:
                raise ParseError(f"the file has two columns named '{name}'", column=name)
            if pa.types.is_nested(kind := schema.field(name).type):
                raise ParseError(
                    f"column '{name}' holds nested values ({kind}); each cell must be text, "
                    "a number, true/false or empty",
                    column=name,
                )
        records = (r for b in file.iter_batches(columns=names) for r in b.to_pylist())
        total = max(1, file.metadata.num_rows)
        rows: list[dict[str, Any]] = []
        try:
            for r in islice(records, limit):
                rows.append({n: _plain(r[n], n) for n in names})
                counter.count(len(rows), lambda: len(rows) / total, len(rows))
        except ParseError:
            raise
        except Exception as exc:
            raise ParseError(f"not a readable Parquet file: {exc}") from None
    if not names or not rows:
        raise ParseError("the Parquet file has no rows of data")
    return Table(names, rows, list(range(1, len(rows) + 1)))


def _plain(value: Any, column: str) -> Any:
    """Cells become str, int, float, bool or None; dates and decimals become text."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(
                f"column '{column}' holds binary data, not text", column=column
            ) from None
    return str(value)
