"""Choosing columns and judging a table: detection, user choices, blocking errors, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.datasets.columns import ColumnChoice, detect_columns, resolve_columns
from app.datasets.parsing import DatasetFormat, ParseError, Table, read_table
from app.datasets.validation import (
    Report,
    extract_examples,
    report_from_parse_error,
    validate,
)
from worker.training.tasks.classification import read_label


def csv_table(tmp_path: Path, header: str, rows: list[str]) -> Table:
    path = tmp_path / "d.csv"
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return read_table(path, DatasetFormat.csv)


def jsonl_table(tmp_path: Path, objects: list[dict[str, object]]) -> Table:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return read_table(path, DatasetFormat.jsonl)


def balanced(n: int = 12) -> list[str]:
    return [f"review number {i} about the film,{'pos' if i % 2 else 'neg'}" for i in range(n)]


def codes(issues: list) -> list[str]:
    return [issue.code for issue in issues]


# --- column detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "text", "label"),
    [
        ("text,label", "text", "label"),
        ("id,Review,Sentiment", "Review", "Sentiment"),
        ("Category,Message", "Message", "Category"),
        ("tweet,target", "tweet", "target"),
        ("y,document,id", "document", "y"),
        ("intent,question", "question", "intent"),
    ],
)
def test_detect_by_name(tmp_path: Path, header: str, text: str, label: str) -> None:
    width = header.count(",") + 1
    rows = [",".join([f"cell {i % 3}"] * width) for i in range(6)]
    assert detect_columns(csv_table(tmp_path, header, rows)) == ColumnChoice(text, label)


def test_detect_text_pair(tmp_path: Path) -> None:
    rows = [f"a cat sat {i},a cat is here {i},{i % 3}" for i in range(9)]
    table = csv_table(tmp_path, "premise,hypothesis,label", rows)
    assert detect_columns(table) == ColumnChoice("premise", "label", text_pair="hypothesis")


def test_detect_unnamed_columns_by_values(tmp_path: Path) -> None:
    rows = [
        f"{i},this is a fairly long sentence number {i},{['sports', 'tech'][i % 2]}"
        for i in range(30)
    ]
    table = csv_table(tmp_path, "col1,col2,col3", rows)
    assert detect_columns(table) == ColumnChoice(text="col2", label="col3")


def test_detect_integer_labels_in_jsonl(tmp_path: Path) -> None:
    objects = [{"a": f"some words here {i}", "b": i % 4, "c": i} for i in range(40)]
    assert detect_columns(jsonl_table(tmp_path, objects)) == ColumnChoice(text="a", label="b")


def test_detect_fails_with_one_column(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "text", [f"words {i}" for i in range(5)])
    with pytest.raises(ParseError, match="only one column") as info:
        detect_columns(table)
    assert info.value.column == "label_column"
    assert "label_column" in info.value.message


def test_detect_fails_without_label_column(tmp_path: Path) -> None:
    # Every value is unique, so nothing looks like a class.
    table = csv_table(tmp_path, "id,body", [f"{i},unique words {i}" for i in range(5)])
    with pytest.raises(ParseError, match="labels") as info:
        detect_columns(table)
    assert info.value.column == "label_column"


def test_detect_fails_without_text_column(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "id,label", [f"{i},{i % 2}" for i in range(6)])
    with pytest.raises(ParseError) as info:
        detect_columns(table)
    assert info.value.column == "text_column"


# --- user choices ------------------------------------------------------------------------------


def test_resolve_user_names_override_detection(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "text,label,summary,topic", ["a,b,c,d"] * 3)
    choice = resolve_columns(table, text="summary", label="topic")
    assert choice == ColumnChoice(text="summary", label="topic")


def test_resolve_detects_what_is_not_given(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "text,label,topic", ["a,b,c"] * 3)
    assert resolve_columns(table, text=None, label="topic") == ColumnChoice("text", "topic")
    assert resolve_columns(table, text="", label="") == ColumnChoice("text", "label")


def test_resolve_ignores_case_and_spaces(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "Text,Label", ["a,b"] * 3)
    assert resolve_columns(table, text="text", label=" label ") == ColumnChoice("Text", "Label")


def test_resolve_unknown_column(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "a,b,c", ["x,y,z"])
    with pytest.raises(ParseError) as info:
        resolve_columns(table, text="x", label="b")
    assert info.value.message == "no column named 'x'; the file has: a, b, c"
    assert info.value.column == "x"


def test_resolve_same_column_twice(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "a,b", ["x,y"])
    with pytest.raises(ParseError, match="two roles") as info:
        resolve_columns(table, text="a", label="a")
    assert info.value.column == "a"


# --- validation --------------------------------------------------------------------------------


def test_clean_table_is_ok(tmp_path: Path) -> None:
    report = validate(
        csv_table(tmp_path, "text,label", balanced(20)), ColumnChoice("text", "label")
    )
    assert report.ok
    assert report.errors == report.warnings == []
    assert report.num_rows == 20
    assert report.class_counts == {"neg": 10, "pos": 10}
    assert list(report.class_counts) == sorted(report.class_counts)
    assert report.text_length["min"] <= report.text_length["median"] <= report.text_length["max"]


def test_one_class_blocks(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "text,label", [f"text {i},spam" for i in range(12)])
    report = validate(table, ColumnChoice("text", "label"))
    assert not report.ok
    assert codes(report.errors) == ["one_class"]
    assert "'spam'" in report.errors[0].message


def test_no_usable_rows_blocks(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "text,label", [f"text {i}," for i in range(3)] + [",pos"])
    report = validate(table, ColumnChoice("text", "label"))
    assert codes(report.errors) == ["no_usable_rows"]
    assert report.num_rows == 0


def test_missing_column_blocks(tmp_path: Path) -> None:
    table = csv_table(tmp_path, "text,label", balanced())
    report = validate(table, ColumnChoice("text", "category"))
    assert codes(report.errors) == ["no_label_column"]
    assert "category" in report.errors[0].message


def test_missing_labels_and_empty_texts_are_skipped(tmp_path: Path) -> None:
    rows = balanced(20) + ["no label here,", "  ,pos", ",neg"]
    table = csv_table(tmp_path, "text,label", rows)
    report = validate(table, ColumnChoice("text", "label"))
    assert report.ok
    assert codes(report.warnings) == ["missing_labels", "empty_texts"]
    assert report.warnings[0].lines == [22]
    assert report.warnings[1].lines == [23, 24]
    assert "line 22" in report.warnings[0].message
    assert report.num_rows == 20
    examples = extract_examples(table, ColumnChoice("text", "label"))
    assert len(examples.texts) == len(examples.labels) == len(examples.lines) == 20
    assert 22 not in examples.lines


def test_few_examples_and_imbalance(tmp_path: Path) -> None:
    rows = [f"common text {i},big" for i in range(40)] + ["rare one,tiny", "rare two,tiny"]
    report = validate(csv_table(tmp_path, "text,label", rows), ColumnChoice("text", "label"))
    assert report.ok
    assert codes(report.warnings) == ["few_examples", "imbalance"]
    assert "'tiny' (2)" in report.warnings[0].message
    assert "'big' has 40" in report.warnings[1].message


def test_duplicates_and_conflicting_labels(tmp_path: Path) -> None:
    rows = balanced(20) + ["same text,pos", "same text,pos", "torn text,pos", "torn text,neg"]
    report = validate(csv_table(tmp_path, "text,label", rows), ColumnChoice("text", "label"))
    by_code = {issue.code: issue for issue in report.warnings}
    assert set(by_code) == {"duplicates", "conflicting_labels"}
    assert by_code["duplicates"].lines == [23]
    assert by_code["conflicting_labels"].lines == [24, 25]
    assert by_code["conflicting_labels"].message.startswith("1 text appears with different labels")


def test_issue_lines_are_capped(tmp_path: Path) -> None:
    rows = balanced(20) + [f"unlabelled {i}," for i in range(50)]
    report = validate(csv_table(tmp_path, "text,label", rows), ColumnChoice("text", "label"))
    assert len(report.warnings[0].lines) == 20
    assert report.warnings[0].message.startswith("50 rows")


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    rows = balanced(20) + ["same,pos", "same,neg", "x,"]
    report = validate(csv_table(tmp_path, "text,label", rows), ColumnChoice("text", "label"))
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert again.ok == report.ok


def test_report_from_parse_error() -> None:
    report = report_from_parse_error(ParseError("found 4 fields", line=7))
    assert not report.ok
    assert report.errors[0].code == "unreadable_rows"
    assert report.errors[0].lines == [7]
    missing = report_from_parse_error(ParseError("no label", column="label_column"))
    assert missing.errors[0].code == "no_label_column"


# --- examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (0, "0"),
        (1.0, "1"),
        (2.5, "2.5"),
        (" pos ", "pos"),
        ("", None),
        (None, None),
        (float("nan"), None),
        (True, "true"),
    ],
)
def test_read_label(value: object, expected: str | None) -> None:
    assert read_label(value) == expected


def test_extract_examples_normalises_labels(tmp_path: Path) -> None:
    objects = [
        {"text": "a", "label": 1},
        {"text": "b", "label": 0.0},
        {"text": "c", "label": None},
        {"text": "", "label": 1},
        {"text": "d", "label": "1"},
    ]
    examples = extract_examples(jsonl_table(tmp_path, objects), ColumnChoice("text", "label"))
    assert examples.texts == ["a", "b", "d"]
    assert examples.labels == ["1", "0", "1"]
    assert examples.lines == [1, 2, 5]
    assert examples.text_pairs is None


def test_extract_examples_with_pairs(tmp_path: Path) -> None:
    rows = ["p1,h1,yes", "p2,,no", "p3,h3,no"]
    table = csv_table(tmp_path, "premise,hypothesis,label", rows)
    choice = ColumnChoice("premise", "label", text_pair="hypothesis")
    examples = extract_examples(table, choice)
    assert examples.texts == ["p1", "p3"]
    assert examples.text_pairs == ["h1", "h3"]
    assert codes(validate(table, choice).warnings)[0] == "empty_texts"


def test_a_label_column_of_unique_texts_is_refused_with_what_to_do(tmp_path: Path) -> None:
    rows = [f"headline {i},a long article body number {i} about something,news" for i in range(30)]
    table = csv_table(tmp_path, "title,article,topic", rows)
    report = validate(table, ColumnChoice(text="title", label="article"))
    assert codes(report.errors) == ["labels_look_unique"]
    assert "30 different values in 30 rows" in report.errors[0].message
    assert "Choose the column that holds the class names" in report.errors[0].message
    # Many small classes are still allowed: half the rows or fewer may be classes.
    rows = [f"text {i},c{i // 2}" for i in range(30)]
    assert validate(
        csv_table(tmp_path, "text,label", rows),
        detect_columns(csv_table(tmp_path, "text,label", rows)),
    ).ok
