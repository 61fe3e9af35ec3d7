"""Reading uploads: good files in every format, and bad ones answered with the line or column."""

from __future__ import annotations

import json
import pickle
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets.parsing import DatasetFormat, ParseError, Table, detect_format, read_table


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def parse_error(path: Path, fmt: DatasetFormat) -> ParseError:
    with pytest.raises(ParseError) as info:
        read_table(path, fmt)
    return info.value


# --- good files -------------------------------------------------------------------------------


def test_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text,label\nloved it,pos\nhated it,neg\n")
    table = read_table(path, DatasetFormat.csv)
    assert table.columns == ["text", "label"]
    assert table.rows == [
        {"text": "loved it", "label": "pos"},
        {"text": "hated it", "label": "neg"},
    ]
    assert table.lines == [2, 3]


def test_csv_with_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbftext,label\r\n\r\nok,a\r\n,,\r\nfine,b\r\n")
    table = read_table(path, DatasetFormat.csv)
    assert table.columns == ["text", "label"]
    assert [r["text"] for r in table.rows] == ["ok", "fine"]
    assert table.lines == [3, 5]


def test_quoted_multiline_csv_keeps_line_numbers(tmp_path: Path) -> None:
    content = 'text,label\n"first line\nsecond, line\nthird",pos\n"say ""hi""",neg\nlast,pos\n'
    table = read_table(write(tmp_path, "d.csv", content), DatasetFormat.csv)
    assert table.rows[0]["text"] == "first line\nsecond, line\nthird"
    assert table.rows[1]["text"] == 'say "hi"'
    assert table.lines == [2, 5, 6]


def test_trailing_delimiters_are_tolerated(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "d.csv", "text,label\nok,a,\nfine,b,,\n"), DatasetFormat.csv)
    assert table.rows == [{"text": "ok", "label": "a"}, {"text": "fine", "label": "b"}]


def test_tsv_treats_quotes_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, "d.tsv", 'sentence\tlabel\n"great" movie, really\t1\nbad\t0\n')
    table = read_table(path, DatasetFormat.tsv)
    assert table.rows[0] == {"sentence": '"great" movie, really', "label": "1"}
    assert table.lines == [2, 3]


def test_jsonl(tmp_path: Path) -> None:
    lines = ['{"text": "a", "label": 1}', "", '{"label": 0, "text": "b", "extra": true}', "  "]
    table = read_table(write(tmp_path, "d.jsonl", "\n".join(lines)), DatasetFormat.jsonl)
    assert table.columns == ["text", "label", "extra"]
    assert table.rows == [
        {"text": "a", "label": 1, "extra": None},
        {"text": "b", "label": 0, "extra": True},
    ]
    assert table.lines == [1, 3]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    data = {"text": ["x", "y", None], "label": [1, 0, 1], "score": [0.5, float("nan"), 1.0]}
    pq.write_table(pa.table(data), path)
    table = read_table(path, DatasetFormat.parquet)
    assert table.columns == ["text", "label", "score"]
    assert table.rows[1] == {"text": "y", "label": 0, "score": None}
    assert table.rows[2]["text"] is None
    assert table.lines == [1, 2, 3]


def test_max_rows(tmp_path: Path) -> None:
    body = "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(100))
    assert len(read_table(write(tmp_path, "d.csv", body), DatasetFormat.csv, max_rows=5).rows) == 5
    jsonl = "".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(100))
    path = write(tmp_path, "d.jsonl", jsonl)
    assert read_table(path, DatasetFormat.jsonl, max_rows=7).lines == list(range(1, 8))
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(100)]}), tmp_path / "d.parquet")
    assert len(read_table(tmp_path / "d.parquet", DatasetFormat.parquet, max_rows=3).rows) == 3


# --- format detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("a.CSV", b"", "csv"),
        ("a.tsv", b"", "tsv"),
        ("a.tab", b"", "tsv"),
        ("a.jsonl", b"", "jsonl"),
        ("a.ndjson", b"", "jsonl"),
        ("a.json", b"", "jsonl"),
        ("a.parquet", b"", "parquet"),
        ("a.pq", b"", "parquet"),
        ("upload", b"PAR1\x15\x04", "parquet"),
        ("upload.txt", b'\xef\xbb\xbf  {"text": "a"}', "jsonl"),
        ("upload.txt", b"text\tlabel\nx, y\tz\n", "tsv"),
        ("upload", b"text,label\nx,y\n", "csv"),
        ("excel.csv", b"text\tlabel\nx\ty\n", "tsv"),
        ("odd.tsv", b"text,label\nx,y\n", "csv"),
        ("plain.csv", b"text\tlabel,x\n", "csv"),
    ],
)
def test_detect_format(filename: str, head: bytes, expected: str) -> None:
    assert detect_format(filename, head) == DatasetFormat(expected)


@pytest.mark.parametrize(("filename", "head"), [("a.xlsx", b"PK\x03\x04\x00\x00"), ("a", b"")])
def test_detect_format_rejects_other_files(filename: str, head: bytes) -> None:
    with pytest.raises(ParseError, match="upload CSV, TSV, JSONL or Parquet"):
        detect_format(filename, head)


# --- bad files ---------------------------------------------------------------------------------


def test_latin1_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text,label\nfine,a\nok,b\ncaf\xe9,a\n".encode("latin-1"))
    err = parse_error(path, DatasetFormat.csv)
    assert err.line == 4
    assert str(err).startswith("line 4: ")
    assert "save the file as UTF-8" in err.message


def test_latin1_in_jsonl_names_the_line(tmp_path: Path) -> None:
    content = '{"text": "a", "label": 1}\n{"text": "caf\xe9", "label": 0}\n'.encode("latin-1")
    assert parse_error(write(tmp_path, "d.jsonl", content), DatasetFormat.jsonl).line == 2


def test_lone_surrogate_in_jsonl_names_the_line(tmp_path: Path) -> None:
    """An escaped "\\ud800" is half a character, which no UTF-8 answer can carry (a 500);
    an escaped pair is one character."""
    content = '{"text": "\\ud83d\\ude00", "label": 1}\n{"text": "\\ud800 x", "label": 0}\n'
    err = parse_error(write(tmp_path, "d.jsonl", content), DatasetFormat.jsonl)
    assert err.line == 2 and "surrogate" in err.message
    assert read_table(tmp_path / "d.jsonl", DatasetFormat.jsonl, max_rows=1).rows[0]["text"] == "😀"


def test_utf16_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text,label\nx,y\n".encode("utf-16"))
    assert "UTF-16" in parse_error(path, DatasetFormat.csv).message


def test_nul_byte_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"text,label\nok,a\nbro\x00ken,b\n")
    err = parse_error(path, DatasetFormat.csv)
    assert err.line == 3
    assert "NUL" in err.message


def test_ragged_rows(tmp_path: Path) -> None:
    content = "text,label,id\na,b,1\nc,d,2\ne,f,3\ng,h,4\ni,j,5\nk,l,6,7\nm,n\n"
    err = parse_error(write(tmp_path, "d.csv", content), DatasetFormat.csv)
    assert err.line == 7
    assert "found 4 fields but the header has 3" in err.message
    assert "2 rows in all" in err.message


def test_ragged_row_after_multiline_record(tmp_path: Path) -> None:
    content = 'text,label\n"one\ntwo",a\nthree,b,c\n'
    assert parse_error(write(tmp_path, "d.csv", content), DatasetFormat.csv).line == 4


def test_unclosed_quote(tmp_path: Path) -> None:
    content = 'text,label\nok,a\n"never closed,b\nmore,a\nrows,b\n'
    err = parse_error(write(tmp_path, "d.csv", content), DatasetFormat.csv)
    assert err.line == 3
    assert "never closed" in err.message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "empty"),
        ("\n\n  \n", "empty"),
        ("text,label\n", "no rows"),
        ("text,,label\na,b,c\n", "no name"),
        ("text,label,text\na,b,c\n", "twice"),
    ],
)
def test_bad_csv_shapes(tmp_path: Path, content: str, fragment: str) -> None:
    assert fragment in parse_error(write(tmp_path, "d.csv", content), DatasetFormat.csv).message


def test_duplicate_header_names_the_column(tmp_path: Path) -> None:
    err = parse_error(write(tmp_path, "d.csv", "text,label,text\na,b,c\n"), DatasetFormat.csv)
    assert (err.line, err.column) == (1, "text")


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ('{"text": "a", "label": 1}\n{"text": "b", label: 0}\n', 2, "not valid JSON"),
        ('{"text": "a", "label": 1}\n\n["b", 0]\n', 3, "found a list"),
        ('{"text": "a", "label": 1}\n"just text"\n', 2, "found text"),
        ('[{"text": "a", "label": 1},\n{"text": "b", "label": 0}]\n', 1, "JSON array"),
    ],
)
def test_bad_jsonl(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    err = parse_error(write(tmp_path, "d.jsonl", content), DatasetFormat.jsonl)
    assert err.line == line
    assert fragment in err.message


@pytest.mark.parametrize("nested", ['[["x"]]', '{"x": 1}', '["x", null]', "[true]"])
def test_jsonl_nested_value_names_line_and_key(tmp_path: Path, nested: str) -> None:
    content = f'{{"text": "a", "label": 1}}\n{{"text": "b", "label": 0, "tags": {nested}}}\n'
    err = parse_error(write(tmp_path, "d.jsonl", content), DatasetFormat.jsonl)
    assert (err.line, err.column) == (2, "tags")


def test_jsonl_list_of_labels_is_its_json_text(tmp_path: Path) -> None:
    """Several labels of a row (the multi-label task reads the cell as a JSON list)."""
    content = '{"text": "a", "tags": ["sport", "café", 3]}\n{"text": "b", "tags": []}\n'
    table = read_table(write(tmp_path, "d.jsonl", content), DatasetFormat.jsonl)
    assert [row["tags"] for row in table.rows] == ['["sport", "café", 3]', "[]"]


def test_empty_jsonl(tmp_path: Path) -> None:
    assert "empty" in parse_error(write(tmp_path, "d.jsonl", "\n \n"), DatasetFormat.jsonl).message


def test_parquet_nested_column(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a"], "tags": [["x", "y"]]}), path)
    err = parse_error(path, DatasetFormat.parquet)
    assert err.column == "tags"


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = write(tmp_path, "d.parquet", b"text,label\nnot,parquet\n")
    assert parse_error(path, DatasetFormat.parquet).message.startswith("not a readable Parquet")


def test_missing_file_is_a_parse_error(tmp_path: Path) -> None:
    parse_error(tmp_path / "gone.csv", DatasetFormat.csv)


def test_parse_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(ParseError("bad value", line=3, column="label")))
    assert (err.message, err.line, err.column, str(err)) == (
        "bad value",
        3,
        "label",
        "line 3: bad value",
    )


def test_parse_error_without_line() -> None:
    err = ParseError("bad", column="x")
    assert (str(err), err.message, err.line, err.column) == ("bad", "bad", None, "x")
    assert isinstance(err, ValueError)


# --- property: any bytes give a Table or a ParseError, nothing else ----------------------------

FORMATS = {fmt.value: fmt for fmt in DatasetFormat}
PIECES = ['"', ",", "\t", "\n", "\r", "{", "}", "[", "]", ":", "a", "1", " ", "é", "\x00", "\xff"]


def assert_table_or_parse_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload.{suffix}"
        path.write_bytes(data)
        try:
            table = read_table(path, FORMATS[suffix])
        except ParseError as err:
            assert str(err)
        else:
            assert isinstance(table, Table)
            assert len(table.rows) == len(table.lines) > 0
            assert all(set(row) == set(table.columns) for row in table.rows)


def test_random_bytes_give_a_table_or_a_parse_error() -> None:
    """Runs without hypothesis too, so the guarantee is checked wherever the tests run."""
    rng = random.Random(1234)
    for case in range(400):
        if case % 2:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(300)))
        else:
            data = "".join(rng.choice(PIECES) for _ in range(rng.randrange(80))).encode()
        if case % 7 == 0:
            data = b"PAR1" + data + b"PAR1"
        assert_table_or_parse_error(data, rng.choice(sorted(FORMATS)))


def test_corrupted_parquet_gives_a_table_or_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["a", "bb", None] * 20, "label": [1, 2, 3] * 20}), path)
    good = path.read_bytes()
    rng = random.Random(99)
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        assert_table_or_parse_error(bytes(data), "parquet")


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # optional: the seeded fuzz above still runs
    pass
else:
    textish = st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=60).map(
        lambda parts: "".join(parts).encode()
    )
    parquetish = st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1")

    @settings(max_examples=300, deadline=None)
    @given(
        data=st.binary(max_size=400) | textish | parquetish, suffix=st.sampled_from(sorted(FORMATS))
    )
    def test_any_bytes_give_a_table_or_a_parse_error(data: bytes, suffix: str) -> None:
        assert_table_or_parse_error(data, suffix)
