"""Property-based tests of every upload parser: whatever bytes arrive, the answer is a result or
the parser's own typed error (ParseError, ArchiveError, ImageRejected), never anything else;
and through the API, a 201 or a 4xx that leaves nothing behind, never a 5xx.

Inputs are arbitrary bytes, structured near-misses (CSV-ish text with stray quotes, NULs, BOMs,
invalid UTF-8 and huge fields) and real files (ZIPs, images, Parquet) with bytes flipped,
overwritten, inserted, deleted or cut off, so the parsers see damage deep inside valid structure.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import stat
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.datasets.archives import ArchiveError, ArchiveLimits, extract_zip
from app.datasets.images import ALLOWED_FORMATS, ImageRejected, inspect_image
from app.datasets.parsing import DatasetFormat, ParseError, Table, detect_format, read_table
from tests.image_factories import distinct_png, image_bytes
from tests.jobs_api import CHECKED

PURE = settings(max_examples=150, deadline=None)
HEAVY = settings(max_examples=100, deadline=None)  # each example writes files or decodes images
API = settings(max_examples=40, deadline=None)  # the fixtures are session-scoped
EXTENSIONS = [".csv", ".tsv", ".tab", ".jsonl", ".json", ".parquet", ".txt", ".zip", ""]


# --- mutating real files ------------------------------------------------------------------------


def _hot_offsets(data: bytes) -> list[int]:
    """Where structure lives: ZIP record signatures, image chunk names, the start and the end."""
    marks = (b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06", b"IHDR", b"IDAT", b"PAR1", b"VP8")
    found = [0, max(len(data) - 22, 0)]
    for mark in marks:
        start = data.find(mark)
        while start >= 0:
            found.append(start)
            start = data.find(mark, start + 1)
    return found


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """One of ``bases`` with 1 to 6 edits, aimed half the time at a header or record start."""
    data = bytearray(draw(st.sampled_from(bases)))
    hot = _hot_offsets(bytes(data))
    for _ in range(draw(st.integers(1, 6))):
        size = len(data)
        near = draw(st.sampled_from(hot)) + draw(st.integers(0, 48))
        anywhere = draw(st.integers(0, max(size - 1, 0)))
        pos = min(draw(st.sampled_from([near, anywhere])), size)
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if op == "flip" and pos < size:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "set":
            value = draw(st.sampled_from([b"\x00", b"\xff", b"\xff\xff\xff\xff", b"\x7f", b"\x80"]))
            data[pos : pos + len(value)] = value
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


@contextmanager
def scratch(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A fresh folder for one example, removed afterwards (hypothesis runs many per test)."""
    folder = factory.mktemp(name)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- tables -------------------------------------------------------------------------------------

CELL_TYPES = (str, int, float, bool, type(None))


def _line_count(data: bytes) -> int:
    """Physical lines as csv and io count them: \\n, \\r\\n and a lone \\r each end one."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") + 1


def _check_table(table: Table, data: bytes, fmt: DatasetFormat) -> None:
    assert table.columns and all(isinstance(c, str) for c in table.columns)
    assert len(set(table.columns)) == len(table.columns)
    if fmt in (DatasetFormat.csv, DatasetFormat.tsv):  # JSONL keys and Parquet names may be ""
        assert all(c and c == c.strip() for c in table.columns)
    assert table.rows and len(table.rows) == len(table.lines)
    assert table.lines == sorted(set(table.lines)) and table.lines[0] >= 1
    if fmt != DatasetFormat.parquet:
        assert table.lines[-1] <= _line_count(data)
    for row in table.rows:
        assert list(row) == table.columns
        assert all(isinstance(v, CELL_TYPES) for v in row.values()), row


def _check_error(error: ParseError, data: bytes, fmt: DatasetFormat) -> None:
    assert isinstance(error.message, str) and error.message
    if error.line is not None:
        assert error.line >= 1
        if fmt != DatasetFormat.parquet:
            # +1: an error may name the line after the last line break (an unfinished record)
            assert error.line <= _line_count(data) + 1, (error.line, str(error))


def parse_everyway(path: Path, data: bytes) -> None:
    """detect_format then read_table as the upload does, and read_table with every format:
    a Table or a ParseError each time; a preview of a readable file is the file's first rows."""
    path.write_bytes(data)
    try:
        detect_format(path.name, data[:4096])
    except ParseError as error:
        _check_error(error, data, DatasetFormat.csv)
    for fmt in DatasetFormat:
        try:
            table = read_table(path, fmt)
        except ParseError as error:
            _check_error(error, data, fmt)
            table = None
        else:
            _check_table(table, data, fmt)
        try:
            preview = read_table(path, fmt, max_rows=3)
        except ParseError as error:
            _check_error(error, data, fmt)
            # Only JSON Lines may fail early: keyless first objects ({}) before keyed ones.
            no_keys = fmt == DatasetFormat.jsonl and "have no keys" in error.message
            assert table is None or no_keys, "the whole file reads but its first rows do not"
        else:
            assert len(preview.rows) <= 3
            if table is not None:
                # JSON Lines learn columns as they go: a preview knows the first ones only
                assert table.columns[: len(preview.columns)] == preview.columns
                first = [{c: row[c] for c in preview.columns} for row in table.rows[:3]]
                assert preview.rows == first and preview.lines == table.lines[:3]


@given(
    data=st.binary(max_size=4096),
    filename=st.one_of(st.sampled_from(EXTENSIONS).map(lambda e: f"upload{e}"), st.text()),
)
@PURE
def test_detect_format_only_ever_raises_parse_error(data: bytes, filename: str) -> None:
    try:
        fmt = detect_format(filename, data)
    except ParseError as error:
        assert "upload CSV, TSV, JSONL or Parquet" in str(error)
    else:
        assert isinstance(fmt, DatasetFormat)


@given(data=st.binary(max_size=2048), ext=st.sampled_from(EXTENSIONS))
@PURE
def test_arbitrary_bytes_read_or_parse_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, ext: str
) -> None:
    with scratch(tmp_path_factory, "bytes") as folder:
        parse_everyway(folder / f"upload{ext}", data)


# CSV-ish text: quoting, delimiters, line ends, NULs, BOMs, invalid UTF-8, ragged rows, and
# fields around the csv module's 131,072-character field limit.
PIECES = st.sampled_from(
    ["a", "b", "label", " ", '"', '""', ",", "\t", ";", "|", "\n", "\r", "\r\n", "\x00", "\\"]
    + ["é", "€", "😀", "\ufeff", "\u2028", "\x85", "'", "{", "}", "[", "]", ":", "null", "1.5"]
)
HUGE = st.sampled_from([1_000, 131_071, 131_072, 131_073, 300_000]).map(lambda n: "x" * n)
FIELD = st.one_of(st.lists(PIECES, max_size=10).map("".join), st.text(max_size=12), HUGE)


@st.composite
def csvish(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", "\t", ";", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    width = draw(st.integers(1, 4))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        ragged = draw(st.booleans()) and draw(st.booleans())  # about one row in four
        count = draw(st.integers(0, 6)) if ragged else width
        fields = []
        for _ in range(count):
            value = (
                draw(FIELD)
                if draw(st.integers(0, 9)) == 0
                else draw(st.text("abcxyz ", max_size=6))
            )
            quoting = draw(st.sampled_from(["none", "none", "proper", "open", "close"]))
            if quoting == "proper":
                value = '"' + value.replace('"', '""') + '"'
            elif quoting == "open":
                value = '"' + value
            elif quoting == "close":
                value += '"'
            fields.append(value)
        lines.append(delimiter.join(fields))
    text = newline.join(lines) + draw(st.sampled_from(["", newline, newline * 2]))
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16"])), "replace")
    prefix = draw(
        st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe"])
    )
    data = prefix + data
    for _ in range(draw(st.integers(0, 2))):  # invalid UTF-8, NULs, a cut multi-byte character
        pos = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xe9", b"\x80"]))
        data = data[:pos] + junk + data[pos:]
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def written_csv(draw: st.DrawFn) -> bytes:
    """What csv.writer produces, with random dialect choices: mostly readable files."""
    buffer = io.StringIO()
    delimiter = draw(st.sampled_from([",", "\t"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    header = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True))
    writer.writerow(header)
    cell = st.text(max_size=10).filter(lambda s: "\x00" not in s)
    for _ in range(draw(st.integers(0, 6))):
        writer.writerow(draw(st.lists(cell, min_size=len(header), max_size=len(header))))
    return buffer.getvalue().encode()


@given(data=st.one_of(csvish(), written_csv()), ext=st.sampled_from([".csv", ".tsv", ".txt", ""]))
@PURE
@example(data=b'text,label\n"never closed,a\nb,c\n', ext=".csv")
@example(data=b"text,label\n" + b"x" * 131_073 + b",a\n", ext=".csv")
@example(data=b"\xef\xbb\xbftext\tlabel\r\nok\ta\r\nbad\xff\tb\r\n", ext=".tsv")
@example(data=b"text,label\na,b\x00\nc,d\n", ext="")
def test_csvish_text_reads_or_parse_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, ext: str
) -> None:
    with scratch(tmp_path_factory, "csvish") as folder:
        parse_everyway(folder / f"upload{ext}", data)


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
RAW_JSON_LINES = st.sampled_from(
    [
        "",
        "   ",
        "[",
        "{",
        '{"a":',
        '{"a": NaN}',
        '{"a": Infinity, "b": -Infinity}',
        "1e999999",
        '{"a": 1e999999}',
        '{"a": "\\ud800"}',
        "[" * 5000 + "]" * 5000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        '{"text": "a", "label": "x"}',
        '{"text": "b", "label": "y"}',
        "{}",
        "null",
        '"text"',
    ]
)


@given(
    lines=st.lists(st.one_of(JSON_VALUES.map(json.dumps), RAW_JSON_LINES), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    ext=st.sampled_from([".jsonl", ".json", ""]),
)
@PURE
def test_json_lines_read_or_parse_error(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], newline: str, ext: str
) -> None:
    data = newline.join(lines).encode("utf-8", "surrogatepass")
    with scratch(tmp_path_factory, "jsonl") as folder:
        parse_everyway(folder / f"upload{ext}", data)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _parquet_bases() -> list[bytes]:
    import datetime
    import decimal

    texts = pa.array(["good", "bad", None, "fine"])
    labels = pa.array([1, 0, 1, 0])
    return [
        _parquet(pa.table({"text": texts, "label": labels})),
        _parquet(
            pa.table({"text": texts, "label": pa.array(["a", "b", "a", "b"]).dictionary_encode()})
        ),
        _parquet(
            pa.table(
                {"blob": pa.array([b"\xff", b"ok", None, b""]), "score": [0.5, None, 1.0, 2.0]}
            )
        ),
        _parquet(
            pa.table(
                {
                    "when": pa.array([datetime.datetime(2024, 1, i + 1) for i in range(4)]),
                    "amount": pa.array([decimal.Decimal("1.50")] * 4),
                    "flag": [True, False, None, True],
                }
            )
        ),
        _parquet(pa.table({"nested": pa.array([[1], [2, 3], [], None]), "text": texts})),
        _parquet(pa.table({"text": pa.array([], pa.string())})),
    ]


PARQUET = _parquet_bases()


@given(
    data=st.one_of(mutated(PARQUET), st.binary(max_size=512).map(lambda b: b"PAR1" + b + b"PAR1"))
)
@HEAVY
def test_damaged_parquet_reads_or_parse_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    with scratch(tmp_path_factory, "parquet") as folder:
        parse_everyway(folder / "upload.parquet", data)


# --- archives -----------------------------------------------------------------------------------


def _zip(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names are wanted here
        for info, content in members:
            zf.writestr(info, content)
    return buffer.getvalue()


def _stored(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_STORED
    return info


ZIPS = [
    _zip(
        [
            (f"{c}/{i:03d}.png", distinct_png(n, i))
            for n, c in enumerate(("cats", "dogs"))
            for i in range(3)
        ]
    ),
    _zip(
        [
            ("pets/", b""),
            ("pets/cats/1.png", distinct_png(0, 0)),
            (_stored("pets/dogs/1.png"), distinct_png(1, 0)),
        ]
    ),
    _zip([("cats/a.txt", b"hello " * 200), ("__MACOSX/._a", b"junk"), ("dogs/.hidden", b"x")]),
    _zip([]),
]


@st.composite
def crafted_zip(draw: st.DrawFn) -> bytes:
    """Archives zipfile will write but an upload should refuse: hostile names, odd modes,
    unsupported compression, duplicates."""
    parts = st.sampled_from(
        [
            "cats",
            "dogs",
            "..",
            ".",
            "",
            "/",
            "\\",
            "C:",
            "a\x00b",
            "é",
            "x" * 300,
            "__MACOSX",
            ".git",
            "Thumbs.db",
            "1.png",
        ]
    )
    members = []
    for _ in range(draw(st.integers(0, 5))):
        name = "/".join(draw(st.lists(parts, min_size=1, max_size=4)))
        info = zipfile.ZipInfo(name or "x")
        info.compress_type = draw(
            st.sampled_from(
                [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
            )
        )
        mode = draw(
            st.sampled_from(
                [
                    0,
                    stat.S_IFREG | 0o644,
                    stat.S_IFDIR | 0o755,
                    stat.S_IFLNK | 0o777,
                    stat.S_IFIFO | 0o644,
                    stat.S_IFCHR | 0o644,
                ]
            )
        )
        info.external_attr = mode << 16
        content = draw(
            st.sampled_from([b"", b"x" * 1000, distinct_png(0, len(members)), b"../../etc"])
        )
        members.append((info, content))
    return _zip(members)


LIMITS = st.builds(
    ArchiveLimits,
    max_entries=st.sampled_from([1, 3, 50_000]),
    max_total_bytes=st.sampled_from([100, 10_000, 4 * 1024**3]),
    max_ratio=st.sampled_from([1.0, 100.0]),
)


def _all_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()}


EMPTY_ZIP = b"PK\x05\x06" + bytes(18)  # what zipfile writes for an archive of no members


def _needs_version(data: bytes, version: int) -> bytes:
    """The archive with its first central-directory entry asking for a newer unzip version."""
    central = data.index(b"PK\x01\x02")
    return data[: central + 6] + version.to_bytes(2, "little") + data[central + 8 :]


@given(
    data=st.one_of(st.binary(max_size=1024), mutated(ZIPS), crafted_zip(), mutated([EMPTY_ZIP])),
    limits=LIMITS,
)
@HEAVY
@example(data=EMPTY_ZIP, limits=ArchiveLimits())  # a valid ZIP with nothing in it
@example(data=_needs_version(ZIPS[0], 255), limits=ArchiveLimits())  # "version 25.5"
def test_extract_zip_returns_or_archive_error_and_stays_inside(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, limits: ArchiveLimits
) -> None:
    with scratch(tmp_path_factory, "zip") as base:
        # dest two levels down: an escaping "../../x" would land inside base, where we look
        parent = base / "a" / "b"
        parent.mkdir(parents=True)
        archive, dest = parent / "upload.zip", parent / "out"
        archive.write_bytes(data)
        try:
            paths = extract_zip(archive, dest, limits)
        except ArchiveError as error:
            assert str(error)
            assert error.member is None or isinstance(error.member, str)
            assert not dest.exists(), "a refused archive left its folder behind"
            paths = []
        else:
            assert paths == sorted(set(paths))
            assert dest.is_dir() and dest.resolve().is_relative_to(parent.resolve())
            extracted = {p.relative_to(dest).as_posix() for p in _all_files(dest)}
            assert extracted == set(paths), "files on disk differ from the list returned"
            for path in paths:
                target = dest / path
                assert not target.is_symlink() and target.is_file()
                assert target.resolve().is_relative_to(dest.resolve())
        assert archive.read_bytes() == data
        outside = _all_files(base) - {archive} - {dest / p for p in paths}
        assert not outside, f"written outside the destination: {sorted(outside)}"


# --- images -------------------------------------------------------------------------------------


def _animated_gif() -> bytes:
    frames = [Image.new("P", (12, 10), i) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


IMAGES = [
    image_bytes("PNG", (16, 12)),
    image_bytes("PNG", (9, 7), 3, mode="P"),
    image_bytes("JPEG", (16, 16)),
    image_bytes("GIF", (10, 10), 1, mode="P"),
    _animated_gif(),
    image_bytes("BMP", (8, 8)),
    image_bytes("WEBP", (16, 16)),
    image_bytes("TIFF", (8, 8)),  # a format we refuse
    image_bytes("ICO", (16, 16)),
]


@given(
    data=st.one_of(st.binary(max_size=1024), mutated(IMAGES)),
    max_pixels=st.sampled_from([100, 1_000_000]),
)
@HEAVY
@example(data=IMAGES[0][:33], max_pixels=1_000_000)  # the header only, no pixel data
def test_inspect_image_returns_or_image_rejected(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, max_pixels: int
) -> None:
    with scratch(tmp_path_factory, "image") as folder:
        path = folder / "image.bin"
        path.write_bytes(data)
        try:
            width, height, fmt = inspect_image(path, max_pixels)
        except ImageRejected as error:
            assert str(error)
            assert str(folder) not in str(error), "the reason shows a server path"
        else:
            assert fmt in ALLOWED_FORMATS
            assert width > 0 and height > 0 and width * height <= max_pixels


# --- through the API ----------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(EXTENSIONS).map(lambda e: f"data{e}"),
    st.sampled_from(
        [
            "../../etc/passwd.csv",
            "..",
            "../",
            "/",
            "C:\\Windows\\x.csv",
            "a/../../b.zip",
            "<script>alert(1)</script>.csv",
            '"quoted".csv',
            "名前.csv",
            "😀.jsonl",
            ".csv",
            "x" * 400 + ".csv",
            "dir/sub/file.tsv",
            "%2e%2e%2fx.csv",
            "a;b=c.csv",
            " .csv",
        ]
    ),
    st.text(max_size=30).map(lambda s: s + ".csv"),
)
GOOD_CSV = ("text,label\n" + "".join(f"review {i} ok,{'ab'[i % 2]}\n" for i in range(40))).encode()
CONTENTS = st.one_of(
    st.binary(max_size=512),
    csvish(),
    written_csv(),
    mutated(ZIPS),
    crafted_zip(),
    mutated(IMAGES),
    mutated(PARQUET),
    st.just(GOOD_CSV),
    st.just(ZIPS[0]),
)
FORM_TEXT = st.one_of(
    st.none(),
    st.sampled_from(["text", "label", "<b>x</b>", "", " ", "../x", "'; DROP TABLE datasets; --"]),
    st.text(max_size=20),
)


def _upload_leftovers(data_root: Path) -> list[Path]:
    uploads = data_root / "data" / "uploads"
    return sorted(uploads.iterdir()) if uploads.exists() else []


def _outside_names(data_root: Path) -> set[str]:
    """What sits in the data root and the data folder, less SQLite's transient journal files."""
    names = {p.name for p in data_root.iterdir()} | {p.name for p in (data_root / "data").iterdir()}
    return {n for n in names if not n.endswith(("-journal", "-wal", "-shm"))}


@given(
    train=st.tuples(NAMES, CONTENTS),
    extra=st.fixed_dictionaries(
        {},
        optional={
            "validation_file": st.tuples(NAMES, CONTENTS),
            "test_file": st.tuples(NAMES, CONTENTS),
        },
    ),
    form=st.fixed_dictionaries(
        {},
        optional={
            "name": FORM_TEXT,
            "text_column": FORM_TEXT,
            "label_column": FORM_TEXT,
            "text_pair_column": FORM_TEXT,
        },
    ),
)
@API
@example(train=("../../escape.csv", GOOD_CSV), extra={}, form={"name": "<script>x</script>"})
@example(train=("cats.zip", ZIPS[0]), extra={"validation_file": ("v.csv", GOOD_CSV)}, form={})
@example(train=("empty.zip", EMPTY_ZIP), extra={}, form={})
@example(train=("new.zip", _needs_version(ZIPS[0], 255)), extra={}, form={})
def test_upload_api_answers_201_or_4xx_and_leaves_nothing_behind(
    client: TestClient,
    data_root: Path,
    train: tuple[str, bytes],
    extra: dict[str, tuple[str, bytes]],
    form: dict[str, str | None],
) -> None:
    (data_root / "data").mkdir(exist_ok=True)
    before = len(client.get("/api/v1/datasets").json())
    around = _outside_names(data_root)
    files = {"file": train, **extra}
    data = {key: value for key, value in form.items() if value is not None}
    response = client.post("/api/v1/datasets", files=files, data=data, params=CHECKED)
    assert response.status_code == 201 or 400 <= response.status_code < 500, (
        response.status_code,
        response.text[:500],
    )
    after = client.get("/api/v1/datasets").json()
    if response.status_code == 201:
        assert len(after) == before + 1
        body = response.json()
        assert any(d["id"] == body["id"] for d in after)
        assert "/" not in body["original_filename"]  # the name is kept, never its folders
    else:
        assert len(after) == before, "a refused upload added a dataset"
        assert "detail" in response.json()
    assert _upload_leftovers(data_root) == []
    made = _outside_names(data_root) - around - {"uploads", "datasets"}
    assert not made, f"the upload wrote outside its folders: {made}"


def test_upload_api_refusal_is_clean_for_a_known_bad_zip(
    client: TestClient, data_root: Path
) -> None:
    """The archive checks run after the upload is stored: a refused ZIP is removed too."""
    before = len(client.get("/api/v1/datasets").json())
    bad = _zip([("../evil.png", distinct_png(0, 0)), ("cats/1.png", distinct_png(0, 1))])
    response = client.post("/api/v1/datasets", files={"file": ("evil.zip", bad)}, params=CHECKED)
    assert response.status_code == 422, response.text
    assert response.json()["member"] == "../evil.png"
    assert len(client.get("/api/v1/datasets").json()) == before
    assert _upload_leftovers(data_root) == []
    assert not (data_root / "data" / "evil.png").exists()
