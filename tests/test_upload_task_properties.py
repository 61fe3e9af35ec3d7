"""Property-based tests of the task formats' uploads (tests/test_upload_properties.py has the
parsers'): multi-label and regression tables, entity-tagging files and image ZIPs with a
labels file, generated with mangled cells, bad encodings and the `task` / `label_separator`
form fields given valid or garbage values.

Each check (examine_tables, examine_tagged, examine_images) returns a usable dataset whose
task is one of the four, with label names, or refuses with its own typed error naming what to
fix (ParseError, ArchiveError, DatasetInvalid), never anything else; through the API that is
a 201 or a 4xx with a `detail`, never a 5xx, and never the worker's "could not be checked",
which is how a crash in the check reaches the person.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import event, example, given
from hypothesis import strategies as st

from app.config import get_settings
from app.datasets.archives import ArchiveError
from app.datasets.image_datasets import examine_images
from app.datasets.parsing import ParseError
from app.datasets.service import examine_tables
from app.datasets.tagged_datasets import examine_tagged
from app.datasets.task_labels import check_task
from app.datasets.validation import DatasetInvalid
from tests.image_factories import distinct_png
from tests.jobs_api import CHECKED
from tests.test_upload_properties import API, HEAVY, PURE, _upload_leftovers, scratch
from worker.training.tasks import NAMES
from worker.training.tasks.multi_label import SEPARATORS

CRASHED = "could not be checked"  # checking.py's reason when the check itself raised

# --- the form fields ----------------------------------------------------------------------------

GARBAGE_TASK = st.one_of(
    st.sampled_from(["multi-label", "Multi_Label", "regresion", " regression", "ner", "0"]),
    st.text("abcxyz_- ", min_size=1, max_size=8),
).filter(lambda t: t not in NAMES)
GARBAGE_SEPARATOR = st.one_of(
    st.sampled_from(["||", "/", "\t", " ", "pipe", "|;", "\\|", "0", ";,"]),
    st.text("/ x-", min_size=1, max_size=3),
)


@st.composite
def task_field(draw: st.DrawFn, *named: str, garbage: bool = True) -> str | None:
    """No task (two times in five), one of `named`, or (one time in ten) garbage."""
    roll = draw(st.integers(0 if garbage else 1, 9))
    if roll == 0:
        return draw(GARBAGE_TASK)
    return None if roll <= 4 else draw(st.sampled_from(named))


SEPARATOR_FIELD = st.integers(0, 9).flatmap(  # none, a separator or (one time in ten) garbage
    lambda roll: GARBAGE_SEPARATOR if roll == 0 else st.sampled_from([None, *SEPARATORS])
)


def garbage_field(task: str | None, label_separator: str | None) -> str | None:
    """The form field a 422 must name: the task is checked before the separator."""
    if task is not None and task not in NAMES:
        return "task"
    if label_separator is not None and label_separator not in SEPARATORS:
        return "label_separator"
    return None


def check_refusal(error: Exception, garbage: str | None) -> None:
    """A typed refusal that says what to fix; a garbage field is named as the field."""
    assert isinstance(error, ParseError | ArchiveError | DatasetInvalid), repr(error)
    assert str(error).strip()
    if garbage is not None:
        assert isinstance(error, ParseError) and error.column == garbage, repr(error)
        assert garbage in str(error)
    if isinstance(error, DatasetInvalid):
        assert error.errors
        for issue in error.errors:
            assert issue.code and issue.message.strip()
            assert all(isinstance(n, int) and n >= 0 for n in issue.lines), issue


def check_fields(fields: dict[str, Any], task: str | None) -> None:
    assert fields["task"] in NAMES
    assert task is None or fields["task"] == task
    assert fields["label_names"] and all(isinstance(n, str) for n in fields["label_names"])
    assert fields["num_rows"] >= 1 and fields["report"]["errors"] == []
    # as the API's answer is written (Starlette's JSONResponse): no lone surrogate, no NaN
    json.dumps(fields, ensure_ascii=False, allow_nan=False).encode()


def unreadable(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue listing the label cells the task cannot read."""
    found = [issue for issue in errors if issue["code"] == "unreadable_labels"]
    assert found, [issue["code"] for issue in errors]
    return found[0]


# --- tables: multi-label and regression ---------------------------------------------------------

WORDS = st.sampled_from(["good", "bad", "fine", "slow", "é", "😀", "a b", ""])
LABELS = st.sampled_from(["sport", "news", "tech", "art", "x y", "é", "7", ""])
# Half a character, which only a JSON escape can spell (in a CSV: bytes UTF-8 does not allow)
LONE_SURROGATE = "\ud800"
# A cell that starts like a JSON list but is not a list of names: multi_label must refuse it.
BROKEN_LISTS = ["[oops", '["a", 1, null]', '[["a"], ["b"]]', '["a", ["b"]]', '["a",', "[" * 40]
ODD_LISTS = ["[]", "[1, 2]", "[true]", '[""]', '{"a": 1}', '"a"', "null"]  # readable or not


def noisy(draw: st.DrawFn, noise: int) -> bool:
    """Whether this cell is one of the noisy ones (`noise`: their share in percent)."""
    return draw(st.integers(0, 99)) < noise


@st.composite
def multi_label_cell(
    draw: st.DrawFn, separator: str, noise: int
) -> tuple[str | list[Any] | None, bool]:
    """A label cell as the table holds it, and whether multi_label must refuse it: labels
    joined by the table's `separator` or in a JSON list; the noisy ones joined by another
    separator, broken or odd lists, or empty."""
    good, bad = ["joined", "joined", "json"], ["joined", "broken", "odd", "empty"]
    kind = draw(st.sampled_from(bad if noisy(draw, noise) else good))
    if kind == "joined":
        separator = draw(st.sampled_from(SEPARATORS)) if noisy(draw, noise) else separator
        pad = draw(st.sampled_from(["", " ", "  "]))
        return (pad + separator + pad).join(draw(st.lists(LABELS, min_size=1, max_size=4))), False
    if kind == "json":
        labels = draw(st.lists(LABELS, max_size=4))
        return (labels if draw(st.booleans()) else json.dumps(labels)), False  # JSONL: a list
    if kind == "broken":
        cell = draw(st.sampled_from(BROKEN_LISTS))
        if draw(st.booleans()):  # the value itself: JSONL refuses it, a CSV holds its text
            try:
                return json.loads(cell), True
            except ValueError:
                pass
        return cell, True
    if kind == "odd":
        return draw(st.sampled_from(ODD_LISTS)), False
    return draw(st.sampled_from(["", " ", None])), False


NUMBERS = ["3", "-2", "0.5", " 1e3 ", "\u22124.5", "1_000", "0.3", "0.30000000000000004", "7"]
NUMBERS += ["1.0000000000000002", "1e16", "10000000000000002", "1e-320", "3e38", "-3.4e38"]
NOT_NUMBERS = ["abc", "1,5", "3 stars", "n/a", "—", "0x1A", "TRUE", "1.2.3", "inf", "-inf"]
NOT_NUMBERS += ["Infinity", "1e999", "-1e999", "1e308", "-1.7e308", "9" * 400]
EMPTY_NUMBERS = ["", " ", "nan", "NaN", "-nan"]
JSON_NUMBERS = [2, -7, 0.25, 1e-300, 3.0e38]
JSON_NOT_NUMBERS: list[Any] = [True, False, 10**400, 1e308, -(10**39)]


@st.composite
def regression_cell(draw: st.DrawFn, jsonl: bool, noise: int) -> tuple[Any, bool]:
    """A target cell, and whether it is not a number the regression task can learn."""
    kind = draw(st.sampled_from(["bad", "empty"])) if noisy(draw, noise) else "number"
    if kind == "number":
        if jsonl and draw(st.booleans()):
            return draw(st.sampled_from(JSON_NUMBERS) | st.integers(-1000, 1000)), False
        return draw(st.sampled_from(NUMBERS) | st.floats(-1e6, 1e6).map(repr)), False
    if kind == "bad":
        if jsonl and draw(st.booleans()):
            return draw(st.sampled_from(JSON_NOT_NUMBERS)), True
        return draw(st.sampled_from(NOT_NUMBERS)), True
    return draw(st.sampled_from([*EMPTY_NUMBERS, None])), False


def write_table(columns: list[str], rows: list[list[Any]], fmt: str) -> bytes:
    """A CSV as csv.writer quotes it (a header, then one line a row), or JSON Lines."""
    if fmt == "jsonl":
        lines = [json.dumps(dict(zip(columns, row, strict=True))) for row in rows]
        return "\n".join(lines).encode()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[_csv_cell(c) for c in row] for row in rows])
    return buffer.getvalue().encode("utf-8", "surrogatepass")


def _csv_cell(value: Any) -> str:
    """A JSONL label list is its JSON text in a CSV cell."""
    if isinstance(value, list):
        return json.dumps(value)
    return "" if value is None else str(value)


@st.composite
def task_table(draw: st.DrawFn, task: str) -> dict[str, Any]:
    """A multi-label or regression table: its bytes and format, the form fields sent with it,
    and the lines (1-based, as the file counts them) whose label the task must refuse."""
    fmt = draw(st.sampled_from(["csv", "csv", "jsonl"]))
    noise = draw(st.sampled_from([0, 5, 30]))  # percent of noisy label cells
    if task == "multi_label":
        label = draw(st.sampled_from(["labels", "tags", "topic", "label"]))
        cell = multi_label_cell(draw(st.sampled_from(SEPARATORS)), noise)
        form = {"task": draw(task_field("multi_label")), "label_separator": draw(SEPARATOR_FIELD)}
    else:
        label = draw(st.sampled_from(["score", "target", "rating", "y"]))
        cell = regression_cell(fmt == "jsonl", noise)
        form = {"task": draw(task_field("regression")), "label_separator": None}
    rows, bad = [], []
    lone = draw(st.integers(-30, 30))  # the row whose text has a lone surrogate, if any
    for i in range(draw(st.integers(0, 30))):
        value, refused = draw(cell)
        rows.append([f"row {i} {LONE_SURROGATE if i == lone else draw(WORDS)}", value])
        if refused:
            bad.append(i + (1 if fmt == "jsonl" else 2))
    return {
        "data": write_table(["text", label], rows, fmt),
        "fmt": fmt,
        "form": form,
        "bad_lines": bad,
    }


def examine_table(folder: Path, table: dict[str, Any]) -> dict[str, Any]:
    """The form fields checked as the upload checks them (before the file is read), then
    the file as the ingest worker checks it."""
    check_task(table["form"]["task"], table["form"]["label_separator"])
    path = folder / f"train.{table['fmt']}"
    path.write_bytes(table["data"])
    return examine_tables({"train": path}, **table["form"])


def check_table(folder: Path, table: dict[str, Any], task: str) -> None:
    """A dataset, or a refusal; named `task` and cells it cannot read: refused by line."""
    named, garbage = table["form"]["task"], garbage_field(**table["form"])
    try:
        fields = examine_table(folder, table)
    except Exception as error:
        event(f"refused: {type(error).__name__} {str(error)[:50]}")
        check_refusal(error, garbage)
        read = not isinstance(error, ParseError)  # not UTF-8, or JSONL nesting: not a table
        if named == task and garbage is None and table["bad_lines"] and read:
            assert isinstance(error, DatasetInvalid), repr(error)
            issue = unreadable([i.__dict__ for i in error.errors])
            assert issue["lines"] == table["bad_lines"][:20], table
            assert f"line {table['bad_lines'][0]}" in issue["message"]
    else:
        assert garbage is None, f"garbage {garbage} was accepted"
        event(f"accepted as {fields['task']} ({table['fmt']})")
        assert not (named == task and table["bad_lines"]), "an unreadable label was accepted"
        check_fields(fields, named)
        if fields["task"] == "multi_label":
            assert fields["label_separator"] in (*SEPARATORS, None)
            separator = table["form"]["label_separator"]
            assert separator is None or fields["label_separator"] == separator


@given(table=task_table("multi_label"))
@PURE
@example(  # JSON lists, one broken: refused by its line
    table={
        "data": b'text,labels\na,"[""x"", ""y""]"\nb,[oops\nc,"[""y""]"\n',
        "fmt": "csv",
        "form": {"task": "multi_label", "label_separator": None},
        "bad_lines": [3],
    }
)
def test_multi_label_tables_are_datasets_or_refused_by_line(
    tmp_path_factory: pytest.TempPathFactory, table: dict[str, Any]
) -> None:
    with scratch(tmp_path_factory, "multi") as folder:
        check_table(folder, table, "multi_label")


@given(table=task_table("regression"))
@PURE
@example(  # nearly constant: the histogram has no room for 20 bins
    table={
        "data": b"text,score\na,0.3\nb,0.30000000000000004\nc,0.3\n",
        "fmt": "csv",
        "form": {"task": "regression", "label_separator": None},
        "bad_lines": [],
    }
)
@example(  # a whole number too large for a float
    table={
        "data": b'{"text": "a", "score": 1}\n{"text": "b", "score": 1' + b"0" * 400 + b"}\n",
        "fmt": "jsonl",
        "form": {"task": "regression", "label_separator": None},
        "bad_lines": [2],
    }
)
def test_regression_tables_are_datasets_or_refused_by_line(
    tmp_path_factory: pytest.TempPathFactory, table: dict[str, Any]
) -> None:
    with scratch(tmp_path_factory, "regression") as folder:
        check_table(folder, table, "regression")


# --- entity tagging -----------------------------------------------------------------------------

TOKENS = st.sampled_from(["John", "lives", "in", "Paris", ".", "é", "😀", "1,5", '"', "{", "["])
TAGS = st.sampled_from(["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
ODD_TAGS = st.sampled_from(
    ["I-PER", "E-ORG", "S-ORG", "U-MISC", "L-MISC", "PER", "LOC", "b-per", "i-loc", "I-", "B-"]
    + ["o", "0", "-", "X-Y", "B-PER-X", "I-é"]
)  # ill-formed I- after O, BIOES, plain types, no type, lower case
JUNK = [b"\xff", b"\xe9", b"\xc3", b"\x00", b"\r", b"\n", b"\t", b"\xef\xbb\xbf", b"\xed\xa0\x80"]


@st.composite
def conll_text(draw: st.DrawFn, noise: int) -> bytes:
    """Token-and-tag lines with blank lines between sentences; the noisy lines have odd
    tags, extra columns, no tag, -DOCSTART- or random text; noisy files other encodings
    and random bytes."""
    lines = []
    for _ in range(draw(st.integers(0, 24))):
        odd = noisy(draw, noise)
        token, tag = draw(TOKENS | st.text(min_size=1, max_size=5)), draw(ODD_TAGS if odd else TAGS)
        gap = draw(st.sampled_from([" ", "\t", "  "]))
        kind = draw(
            st.sampled_from(
                ["pair", "columns", "lone", "doc", "text"] if odd else ["pair"] * 5 + ["blank"]
            )
        )
        lines.append(
            {
                "pair": f"{token}{gap}{tag}",
                "blank": draw(st.sampled_from(["", " ", "\t"])),
                "columns": f"{token}{gap}NNP{gap}I-NP{gap}{tag}",
                "lone": token,
                "doc": "-DOCSTART- -X- O O",
                "text": draw(st.text(max_size=12)),
            }[kind]
        )
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    encoding = (
        draw(st.sampled_from(["utf-8", "latin-1", "utf-16"])) if noisy(draw, noise) else "utf-8"
    )
    data = text.encode(encoding, "replace")
    for _ in range(draw(st.integers(0, 3)) if noisy(draw, noise) else 0):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.sampled_from(JUNK) | st.binary(max_size=4)) + data[pos:]
    return data


ITEMS = st.one_of(TOKENS, TAGS, st.integers(), st.none(), st.lists(TOKENS, max_size=2))
OFFSETS = st.one_of(st.integers(-3, 24), st.sampled_from([1.0, 2.5, "3", None, True, 10**30]))
SPAN_TEXTS = ["John lives in Paris.", "Hooli hired Ann", "é😀 x", "a\u2028b", LONE_SURROGATE]


@st.composite
def tokens_record(draw: st.DrawFn, noise: int) -> Any:
    tokens = draw(st.lists(TOKENS, min_size=1, max_size=6))
    tags = draw(st.lists(TAGS, min_size=len(tokens), max_size=len(tokens)))
    if noisy(draw, noise):  # a length mismatch, a wrong type, a missing key, odd tags
        tokens, tags = draw(
            st.sampled_from(
                [
                    (tokens, tags[:-1]),
                    (tokens + ["x"], tags),
                    (" ".join(tokens), tags),
                    (tokens, draw(st.lists(ITEMS, max_size=6))),
                    (draw(st.lists(ITEMS, max_size=6)), tags),
                    (None, tags),
                    (tokens, {"a": 1}),
                    (tokens, [draw(ODD_TAGS) for _ in tokens]),
                    ([], []),
                ]
            )
        )
    record = {"tokens": tokens, "tags": tags}
    if noisy(draw, noise // 3):
        del record[draw(st.sampled_from(["tokens", "tags"]))]
    return record


@st.composite
def spans_record(draw: st.DrawFn, noise: int) -> Any:
    """A text and its spans, one after another; noisy ones anywhere (out of range,
    overlapping, negative), of the wrong type (floats, strings, null) or badly labelled."""
    text = draw(st.sampled_from(SPAN_TEXTS[:-1]) | st.text(min_size=1, max_size=20))
    spans: list[Any] = []
    cursor = 0
    for _ in range(draw(st.integers(0, 3))):
        if noisy(draw, noise):
            label = draw(st.sampled_from(["PER", "", " ", 1, None, "B-PER"]))
            span = {"start": draw(OFFSETS), "end": draw(OFFSETS), "label": label}
            spans.append(span if draw(st.booleans()) else draw(st.sampled_from([[], "x", 3])))
        elif cursor < len(text):
            start = draw(st.integers(cursor, len(text) - 1))
            cursor = draw(st.integers(start + 1, len(text)))
            spans.append(
                {"start": start, "end": cursor, "label": draw(st.sampled_from(["PER", "LOC"]))}
            )
    record: dict[str, Any] = {"text": text, "spans": spans}
    if noisy(draw, noise // 3):
        record[draw(st.sampled_from(["text", "spans"]))] = draw(
            st.sampled_from([None, "PER", {"start": 0}, 5])
        )
    return record


@st.composite
def jsonl_tagged(draw: st.DrawFn, noise: int) -> bytes:
    """JSON Lines of tokens and tags or of text and spans; noisy lines are broken JSON,
    not objects, in the other format, or hold a lone surrogate."""
    main = draw(st.sampled_from([tokens_record(noise), spans_record(noise)]))
    junk = st.sampled_from(["", "[1]", "null", "oops", '{"tokens": ', '{"x": 1}', "[" * 3000])
    lines = []
    for _ in range(draw(st.integers(1, 10))):
        if not noisy(draw, noise):
            lines.append(json.dumps(draw(main)))
        elif draw(st.booleans()):
            lines.append(draw(junk))
        else:
            record = draw(tokens_record(noise) | spans_record(noise))
            if draw(st.booleans()):
                record[draw(st.sampled_from(["text", "tokens"]))] = LONE_SURROGATE
            lines.append(json.dumps(record))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


TAGGED = st.sampled_from([0, 5, 30]).flatmap(lambda noise: conll_text(noise) | jsonl_tagged(noise))


@given(train=TAGGED, validation=st.none() | TAGGED)
@PURE
@example(train=b"John B-PER\nlives O\n\nin I-LOC\nParis I-LOC\n", validation=None)
@example(  # the text holds a lone surrogate: no response may carry it
    train=b'{"text": "\\ud800 John", "spans": [{"start": 2, "end": 6, "label": "PER"}]}',
    validation=None,
)
def test_tagged_files_are_datasets_or_refused_by_line(
    tmp_path_factory: pytest.TempPathFactory, train: bytes, validation: bytes | None
) -> None:
    with scratch(tmp_path_factory, "tagged") as folder:
        files = {"train": folder / "train.conll"}  # the content decides the format
        files["train"].write_bytes(train)
        if validation is not None:
            files["validation"] = folder / "validation.conll"
            files["validation"].write_bytes(validation)
        try:
            fields = examine_tagged(files)
        except DatasetInvalid as error:
            event(f"refused: {', '.join(sorted({i.code for i in error.errors}))}")
            check_refusal(error, None)
            for issue in error.errors:  # problems name their lines
                assert not issue.lines or any(str(n) in issue.message for n in issue.lines)
        else:
            event(f"accepted: {fields['report']['labels']['format']}")
            check_fields(fields, "token_classification")
            assert fields["label_names"][0] == "O" and len(fields["label_names"]) >= 3


# --- image ZIPs with a labels file --------------------------------------------------------------

IMAGES = {f"img/{i}.png": distinct_png(i % 3, i, (8, 8)) for i in range(6)}
# Images cannot be tagged, but the task may be named anyway (now and then).
IMAGE_TASKS = ("classification", "multi_label", "regression") * 2 + ("token_classification",)
JUNK_JSON_LINES = ["", "oops", "[1]", "[" * 3000, '{"file": {"a": 1}}', '{"file": "\\ud800.png"}']
FILE_CELLS = st.sampled_from([*IMAGES, "0.png", "nope.png", "img/9.png", "", " ", "../img/0.png"])


@st.composite
def labelled_image_zip(draw: st.DrawFn, garbage: bool = True) -> dict[str, Any]:
    """A few tiny images and a labels file whose rows name missing files or hold bad cells.
    `garbage`: form fields the upload refuses before the check (checking.accept_upload)."""
    task = draw(st.sampled_from(["multi_label", "regression", "classification"]))
    form = {"task": draw(task_field(*IMAGE_TASKS, garbage=garbage)), "label_separator": None}
    noise = draw(st.sampled_from([0, 30]))
    jsonl = draw(st.booleans())
    if task == "multi_label":
        cell, label = multi_label_cell(draw(st.sampled_from(SEPARATORS)), noise), "labels"
        separators = st.sampled_from([None, *SEPARATORS])
        form["label_separator"] = draw(SEPARATOR_FIELD if garbage else separators)
    elif task == "regression":
        cell, label = regression_cell(jsonl, noise), draw(st.sampled_from(["target", "score"]))
    else:
        cell, label = st.tuples(LABELS, st.just(False)), "label"
    files = ["file"] * 4 + ["filename", "image", "path", "name"]  # "name": no file column
    header = [draw(st.sampled_from(files)), label]
    names = list(IMAGES)[: draw(st.integers(1, len(IMAGES)))]
    rows = [[draw(FILE_CELLS) if noisy(draw, noise) else n] for n in names]
    rows += [[draw(FILE_CELLS)] for _ in range(draw(st.integers(0, 2)) if noise else 0)]
    rows = [row + [draw(cell)[0]] for row in rows]
    members = {name: IMAGES[name] for name in names}
    if jsonl:  # the cells as JSON values: lists, numbers; now and then a broken line
        labels = write_table(header, rows, "jsonl").decode().split("\n")
        if noise and draw(st.booleans()):
            labels.insert(draw(st.integers(0, len(labels))), draw(st.sampled_from(JUNK_JSON_LINES)))
        members["labels.jsonl"] = "\n".join(labels).encode()
    else:
        members["labels.csv"] = write_table(header, rows, "csv")
    return {"data": image_zip(members), "form": form}


def image_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def labels_jsonl_zip(*lines: str) -> bytes:
    """The first two images, labelled a and b, and then `lines` in labels.jsonl."""
    rows = [json.dumps({"file": f"img/{i}.png", "labels": ["a", "b"][i]}) for i in range(2)]
    labels = "\n".join([*rows, *lines]).encode("utf-8", "surrogatepass")
    return image_zip(
        {"img/0.png": IMAGES["img/0.png"], "img/1.png": IMAGES["img/1.png"], "labels.jsonl": labels}
    )


@given(upload=labelled_image_zip(garbage=False))
@HEAVY
@example(upload={"data": labels_jsonl_zip("[" * 3000), "form": {}})  # nested past the limit
@example(
    upload={"data": labels_jsonl_zip('{"file": "img/0.png", "labels": "\\ud800"}'), "form": {}}
)
@example(upload={"data": labels_jsonl_zip(), "form": {"task": "token_classification"}})
def test_labelled_image_zips_are_datasets_or_refused(
    tmp_path_factory: pytest.TempPathFactory, upload: dict[str, Any]
) -> None:
    with scratch(tmp_path_factory, "images") as folder:
        (folder / "train.zip").write_bytes(upload["data"])
        try:
            fields = examine_images(folder, ["train"], get_settings(), **upload["form"])
        except Exception as error:
            event(f"refused: {type(error).__name__} {str(error)[:40]}")
            check_refusal(error, None)
            assert sorted(p.name for p in folder.iterdir()) == ["train.zip"], "left behind"
        else:
            event(f"accepted as {fields['task']}")
            check_fields(fields, upload["form"]["task"])
            assert fields["task"] != "token_classification", "images tagged as words"


# --- through the API ----------------------------------------------------------------------------


def _tagged_upload(data: bytes, task: str | None) -> dict[str, Any]:
    name = "train.jsonl" if data.lstrip(b"\xef\xbb\xbf \r\n").startswith(b"{") else "train.conll"
    return {"name": name, "data": data, "form": {"task": task}}


def _table_upload(table: dict[str, Any], task: str) -> dict[str, Any]:
    """A table's upload; `refused_lines`: what a named `task` must refuse by line."""
    named = table["form"]["task"] == task and garbage_field(**table["form"]) is None
    return {
        "name": f"train.{table['fmt']}",
        "data": table["data"],
        "form": table["form"],
        "refused_lines": table["bad_lines"] if named else [],
    }


UPLOADS = st.one_of(
    task_table("multi_label").map(lambda t: _table_upload(t, "multi_label")),
    task_table("regression").map(lambda t: _table_upload(t, "regression")),
    st.builds(_tagged_upload, TAGGED, task_field("token_classification")),
    labelled_image_zip().map(lambda z: {"name": "images.zip", **z}),
)


@given(upload=UPLOADS)
@API
@example(upload={"name": "t.csv", "data": b"text,labels\na,x|y\n", "form": {"task": "nope"}})
@example(
    upload={
        "name": "t.csv",
        "data": b"text,labels\na,x|y\nb,y\n",
        "form": {"task": "multi_label", "label_separator": "/"},
    }
)
@example(
    upload={
        "name": "t.jsonl",
        "data": b'{"text": "\\ud800 John", "spans": [{"start": 2, "end": 6, "label": "PER"}]}',
        "form": {},
    }
)
def test_task_uploads_answer_201_or_4xx_that_says_what_to_fix(
    client: TestClient, data_root: Path, upload: dict[str, Any]
) -> None:
    form = {k: v for k, v in upload["form"].items() if v is not None}
    files = {"file": (upload["name"], upload["data"])}
    response = client.post("/api/v1/datasets", files=files, data=form, params=CHECKED)
    assert response.status_code == 201 or 400 <= response.status_code < 500, (
        response.status_code,
        response.text[:500],
    )
    body = response.json()
    event(f"{response.status_code} {body.get('task') or ''}")
    garbage = garbage_field(form.get("task"), form.get("label_separator"))
    if response.status_code == 201:
        assert garbage is None, f"garbage {garbage} was accepted"
        assert body["task"] in NAMES and body["label_names"], body
        if body["modality"] == "image":
            assert body["task"] != "token_classification", body
        assert "task" not in form or body["task"] == form["task"]
        assert not upload.get("refused_lines"), "an unreadable label was accepted"
    else:
        assert isinstance(body["detail"], str) and body["detail"].strip(), body
        assert CRASHED not in body["detail"], body["detail"]
        if garbage is not None:
            assert response.status_code == 422 and body.get("column") == garbage, body
        if "errors" in body:  # a validation report refused it
            assert body["errors"] and all(e["message"].strip() for e in body["errors"]), body
            if upload.get("refused_lines"):  # read, and the unreadable labels named by line
                issue = unreadable(body["errors"])
                assert issue["lines"] == upload["refused_lines"][:20], body
    assert _upload_leftovers(data_root) == []


def test_half_a_character_in_a_jsonl_upload_is_a_422_naming_its_line(client: TestClient) -> None:
    """Was a 500: the checked dataset's preview held an escaped lone surrogate ("\\ud800"),
    which the answer, written as UTF-8, could not carry."""
    table = b'{"text": "a", "labels": "x|y"}\n{"text": "\\ud800", "labels": "y"}\n'
    spans = b'{"text": "\\ud800 John", "spans": [{"start": 2, "end": 6, "label": "PER"}]}\n'
    for data in (table, spans):
        files = {"file": ("train.jsonl", data)}
        response = client.post("/api/v1/datasets", files=files, params=CHECKED)
        assert response.status_code == 422, response.text
        body = response.json()
        assert "surrogate" in body["detail"]
        assert body.get("line") == 2 or body["errors"][0]["lines"] == [1], body
