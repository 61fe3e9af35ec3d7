"""Image ZIPs with a labels file (labels.csv or labels.jsonl): multi-label and regression
images, the task detected or named, every problem of the labels file by its line, and the
labels a job trains on."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from app.config import get_settings
from app.datasets.image_datasets import examine_images, read_manifest
from app.datasets.parsing import ParseError
from app.datasets.validation import DatasetInvalid
from tests.image_factories import colour_zip, make_image_zip
from tests.jobs_api import CHECKED

FONT = ImageFont.load_default(size=20)
# Pairs of different digits, so every row holds two labels and every label several rows.
PAIRS = [(3, 7), (1, 4), (0, 9), (2, 5), (6, 8), (3, 1), (7, 4), (9, 2), (5, 0), (8, 6)] * 3


def digits_png(digits: tuple[int, ...], index: int) -> bytes:
    """The digits drawn side by side, 28 pixels each; `index` makes every image different."""
    image = Image.new("L", (28 * len(digits), 28), 0)
    draw = ImageDraw.Draw(image)
    for position, digit in enumerate(digits):
        draw.text((28 * position + 8 + index % 3, 2 + index % 4), str(digit), 255, font=FONT)
    image.putpixel((0, 0), index % 256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def labelled_zip(
    path: Path, images: dict[str, bytes], labels: str, labels_name: str = "labels.csv"
) -> Path:
    return make_image_zip(path, {**images, labels_name: labels.encode()})


def multi_label_zip(path: Path, separator: str = "|") -> Path:
    images = {f"img/{i:02d}.png": digits_png(pair, i) for i, pair in enumerate(PAIRS)}
    rows = [f"img/{i:02d}.png,{a}{separator}{b}" for i, (a, b) in enumerate(PAIRS)]
    return labelled_zip(path, images, "file,labels\n" + "\n".join(rows) + "\n")


def regression_jsonl_zip(path: Path, count: int = 30) -> Path:
    images = {f"{i:02d}.png": digits_png((i % 10,), i) for i in range(count)}
    rows = [json.dumps({"file": f"{i:02d}.png", "target": i % 10}) for i in range(count)]
    return labelled_zip(path, images, "\n".join(rows) + "\n", "labels.jsonl")


def examine(tmp_path: Path, train: Path, **parts_and_task: Any) -> dict[str, Any]:
    """examine_images on a dataset folder holding `train` (and validation=/test= ZIPs)."""
    folder = tmp_path / "dataset"
    folder.mkdir(parents=True)
    parts = {"train": train} | {
        p: parts_and_task.pop(p) for p in ("validation", "test") if p in parts_and_task
    }
    for part, archive in parts.items():
        (folder / f"{part}.zip").write_bytes(archive.read_bytes())
    return examine_images(folder, list(parts), get_settings(), **parts_and_task)


def refused(tmp_path: Path, train: Path, **extra: Any) -> dict[str, dict[str, Any]]:
    """The errors of a refused archive, by code."""
    with pytest.raises(DatasetInvalid) as info:
        examine(tmp_path, train, **extra)
    return {e.code: {"message": e.message, "lines": e.lines} for e in info.value.errors}


def warnings_of(fields: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["code"]: w for w in fields["report"]["warnings"]}


# --- the tasks ------------------------------------------------------------------------------


def test_multi_label_zip_is_detected_and_summarised(tmp_path: Path) -> None:
    fields = examine(tmp_path, multi_label_zip(tmp_path / "pairs.zip"))
    assert (fields["task"], fields["label_separator"]) == ("multi_label", "|")
    assert fields["label_names"] == [str(d) for d in range(10)]
    report = fields["report"]
    assert report["num_rows"] == 30 and report["errors"] == []
    assert report["class_counts"]["3"] == 6  # every digit is in 6 of the 30 pairs
    assert report["labels"]["task"] == "multi_label"
    assert report["labels"]["names"] == fields["label_names"]
    assert report["labels"]["labels_per_row"] == 2
    assert {"labels": ["3", "7"], "rows": 3} in report["labels"]["co_occurrence"]
    assert report["labels_file"] == "labels.csv"
    manifest = read_manifest(tmp_path / "dataset")["train"]
    assert (manifest[0].path, manifest[0].label) == ("train/img/00.png", ["3", "7"])
    # Lists are no classes to group by: the preview shows the first images.
    assert [row["index"] for row in fields["preview"]] == list(range(24))
    assert fields["preview"][0]["label"] == ["3", "7"]
    assert (tmp_path / "dataset" / "thumbs" / "0.webp").is_file()


def test_regression_jsonl_of_numbers_is_detected(tmp_path: Path) -> None:
    fields = examine(tmp_path, regression_jsonl_zip(tmp_path / "values.zip"))
    assert (fields["task"], fields["label_separator"]) == ("regression", None)
    assert fields["label_names"] == ["target"]
    report = fields["report"]
    assert report["class_counts"] == {} and report["num_rows"] == 30
    assert report["labels"]["target"]["min"] == 0 and report["labels"]["target"]["max"] == 9
    assert sum(report["labels"]["histogram"]["counts"]) == 30
    labels = {i.path: i.label for i in read_manifest(tmp_path / "dataset")["train"]}
    assert labels["train/07.png"] == 7.0 and isinstance(labels["train/07.png"], float)


def test_jsonl_lists_are_multi_label(tmp_path: Path) -> None:
    images = {f"{i:02d}.png": digits_png(pair, i) for i, pair in enumerate(PAIRS)}
    rows = [
        json.dumps({"file": f"{i:02d}.png", "labels": [a, b]}) for i, (a, b) in enumerate(PAIRS)
    ]
    fields = examine(
        tmp_path, labelled_zip(tmp_path / "l.zip", images, "\n".join(rows), "labels.jsonl")
    )
    assert (fields["task"], fields["label_separator"]) == ("multi_label", None)
    assert fields["report"]["labels_file"] == "labels.jsonl" and fields["num_rows"] == 30
    labels = {i.path: i.label for i in read_manifest(tmp_path / "dataset")["train"]}
    assert labels["train/00.png"] == ["3", "7"]


def test_regression_csv_is_detected_from_its_numbers(tmp_path: Path) -> None:
    images = {f"{i:02d}.png": digits_png((i % 10,), i) for i in range(20)}
    rows = "".join(f"{i:02d}.png,{i % 10 + 0.5}\n" for i in range(20))
    fields = examine(tmp_path, labelled_zip(tmp_path / "v.zip", images, "image,value\n" + rows))
    assert (fields["task"], fields["label_names"]) == ("regression", ["value"])


def test_class_names_in_a_labels_file_are_classification(tmp_path: Path) -> None:
    names = {3: "three", 7: "seven"}
    images = {f"{i:02d}.png": digits_png((d,), i) for i, d in enumerate([3, 7] * 6)}
    rows = "".join(f"{i:02d}.png,{names[d]}\n" for i, d in enumerate([3, 7] * 6))
    fields = examine(tmp_path, labelled_zip(tmp_path / "c.zip", images, "filename,label\n" + rows))
    assert fields["task"] == "classification" and fields["label_names"] == ["seven", "three"]
    assert fields["report"]["class_counts"] == {"seven": 6, "three": 6}
    assert fields["report"]["labels"] == {"task": "classification", "names": ["seven", "three"]}
    assert {row["label"] for row in fields["preview"]} == {"seven", "three"}


def test_a_named_task_overrides_detection(tmp_path: Path) -> None:
    # Whole digits 0..9 read as ten classes unless the upload names regression.
    images = {f"{i:02d}.png": digits_png((i % 10,), i) for i in range(30)}
    rows = "".join(f"{i:02d}.png,{i % 10}\n" for i in range(30))
    archive = labelled_zip(tmp_path / "d.zip", images, "file,target\n" + rows)
    assert examine(tmp_path / "a", archive)["task"] == "classification"
    fields = examine(tmp_path / "b", archive, task="regression")
    assert (fields["task"], fields["label_names"]) == ("regression", ["target"])
    # "3|7" named classification is one class called "3|7"; a named separator is kept.
    fields = examine(tmp_path / "c", multi_label_zip(tmp_path / "p.zip"), task="classification")
    assert fields["task"] == "classification" and "3|7" in fields["label_names"]
    fields = examine(tmp_path / "d", multi_label_zip(tmp_path / "q.zip", ";"), label_separator=";")
    assert (fields["task"], fields["label_separator"]) == ("multi_label", ";")


def test_labels_file_in_a_top_folder_names_images_by_base_name(tmp_path: Path) -> None:
    images = {
        f"digits/{'odd' if i % 2 else 'even'}/{i:02d}.png": digits_png(p, i)
        for i, p in enumerate(PAIRS)
    }
    rows = "".join(f'{i:02d}.png,"[""{a}"", ""{b}""]"\n' for i, (a, b) in enumerate(PAIRS))
    rows = rows.replace("00.png", "even/00.png")  # a path from the labels file's folder
    archive = labelled_zip(tmp_path / "t.zip", images, "path,tags\n" + rows, "digits/labels.csv")
    fields = examine(tmp_path, archive)
    assert fields["task"] == "multi_label" and fields["num_rows"] == 30
    assert fields["label_separator"] is None  # JSON lists
    labels = {i.path: i.label for i in read_manifest(tmp_path / "dataset")["train"]}
    assert labels["train/digits/even/00.png"] == ["3", "7"]


# --- problems -------------------------------------------------------------------------------


def test_rows_naming_absent_images_are_errors_with_lines(tmp_path: Path) -> None:
    images = {f"{i:02d}.png": digits_png(p, i) for i, p in enumerate(PAIRS)}
    rows = "".join(f"{i:02d}.png,{a}|{b}\n" for i, (a, b) in enumerate(PAIRS))
    rows += "ghost.png,1|2\n,3|4\n"  # lines 32 and 33
    errors = refused(tmp_path, labelled_zip(tmp_path / "g.zip", images, "file,labels\n" + rows))
    assert errors["missing_images"]["lines"] == [32]
    assert "'ghost.png'" in errors["missing_images"]["message"]
    assert (
        "add the missing images to the ZIP or delete their rows"
        in errors["missing_images"]["message"]
    )
    assert errors["missing_file_names"]["lines"] == [33]


def test_unreadable_label_cells_are_errors_with_lines(tmp_path: Path) -> None:
    images = {f"{i:02d}.png": digits_png(p, i) for i, p in enumerate(PAIRS)}
    rows = [f"{i:02d}.png,{a}|{b}" for i, (a, b) in enumerate(PAIRS)]
    rows[4] = '04.png,"[""1"", ""4"""'  # line 6: a JSON list never closed
    errors = refused(
        tmp_path, labelled_zip(tmp_path / "u.zip", images, "file,labels\n" + "\n".join(rows))
    )
    assert errors["unreadable_labels"]["lines"] == [6]
    assert "multi_label task cannot read" in errors["unreadable_labels"]["message"]
    assert "write it as" in errors["unreadable_labels"]["message"]


def test_non_numbers_in_a_regression_are_errors_with_lines(tmp_path: Path) -> None:
    images = {f"{i:02d}.png": digits_png((i % 10,), i) for i in range(20)}
    rows = [f"{i:02d}.png,{i % 10 + 0.5}" for i in range(20)]
    rows[2], rows[9] = "02.png,three", "09.png,n/a"  # lines 4 and 11
    archive = labelled_zip(tmp_path / "n.zip", images, "file,value\n" + "\n".join(rows))
    errors = refused(tmp_path, archive, task="regression")
    assert errors["non_numeric_targets"]["lines"] == [4, 11]
    assert "'three' is not a number" in errors["non_numeric_targets"]["message"]
    assert "Write a number such as 3.5" in errors["non_numeric_targets"]["message"]


def test_no_usable_rows_is_an_error(tmp_path: Path) -> None:
    images = {"a.png": b"not an image", "b.png": digits_png((1,), 1)}
    archive = labelled_zip(tmp_path / "e.zip", images, "file,labels\na.png,1|2\nb.png,\n")
    errors = refused(tmp_path, archive)
    assert "no_usable_rows" in errors
    assert "write one row per image" in errors["no_usable_rows"]["message"]


def test_a_labels_file_without_a_file_column_is_refused(tmp_path: Path) -> None:
    archive = labelled_zip(tmp_path / "h.zip", {"a.png": digits_png((1,), 1)}, "x,y,z\n1,2,3\n")
    errors = refused(tmp_path, archive)
    assert errors["labels_file_columns"]["lines"] == [1]
    assert "Rename its header to file,labels" in errors["labels_file_columns"]["message"]


def test_unmentioned_images_and_duplicate_rows_are_warnings(tmp_path: Path) -> None:
    images = {f"{i:02d}.png": digits_png(p, i) for i, p in enumerate(PAIRS)}
    images |= {"extra/a.png": digits_png((1,), 90), "extra/b.png": digits_png((2,), 91)}
    images["05.png"] = b"\x89PNG\r\n\x1a\n broken"
    rows = "".join(f"{i:02d}.png,{a}|{b}\n" for i, (a, b) in enumerate(PAIRS))
    rows += "01.png,1|9\n03.png,\n"  # lines 32 and 33: a second row for 01.png and 03.png
    fields = examine(tmp_path, labelled_zip(tmp_path / "w.zip", images, "file,labels\n" + rows))
    warnings = warnings_of(fields)
    assert "'extra/a.png', 'extra/b.png'" in warnings["unlabelled_images"]["message"]
    assert "add a row for each" in warnings["unlabelled_images"]["message"]
    assert warnings["duplicate_rows"]["lines"] == [32, 33]
    assert "not a readable image" in warnings["skipped_files"]["message"]
    report = fields["report"]
    assert report["num_rows"] == 29 and report["skipped_count"] == 3
    reasons = {f["path"]: f["reason"] for f in report["skipped_files"]}
    assert reasons["extra/a.png"] == "not named in labels.csv; add a row for it to use it"
    assert reasons["05.png"].startswith("not a readable image")
    labels = {i.path: i.label for i in read_manifest(tmp_path / "dataset")["train"]}
    assert labels["train/01.png"] == ["1", "4"]  # the first row wins


def test_validation_archive_with_unseen_labels_or_no_labels_file_is_refused(
    tmp_path: Path,
) -> None:
    train = multi_label_zip(tmp_path / "train.zip")
    other = labelled_zip(
        tmp_path / "val.zip",
        {"a.png": digits_png((3, 7), 1), "b.png": digits_png((1, 2), 2)},
        "file,labels\na.png,3|7\nb.png,1|cat\n",
    )
    errors = refused(tmp_path / "a", train, validation=other)
    assert "cat" in errors["unseen_labels"]["message"]
    assert "validation archive has labels" in errors["unseen_labels"]["message"]
    fields = examine(tmp_path / "b", train, test=multi_label_zip(tmp_path / "test.zip"))
    assert fields["report"]["parts"] == {"train": 30, "test": 30}
    errors = refused(tmp_path / "c", train, validation=colour_zip(tmp_path / "c.zip", 2))
    assert "lacks one" in errors["mixed_archives"]["message"]


def test_class_folders_stay_as_they_were(tmp_path: Path) -> None:
    fields = examine(tmp_path / "a", colour_zip(tmp_path / "c.zip", 3))
    assert (fields["task"], fields["label_separator"]) == ("classification", None)
    assert fields["label_names"] == ["blue", "green", "red"]
    assert "labels" not in fields["report"] and len(fields["preview"]) == 9
    errors = refused(tmp_path / "b", colour_zip(tmp_path / "d.zip", 3), task="multi_label")
    assert "needs a labels file" in errors["no_labels_file"]["message"]


# --- through the API, to the labels a job trains on --------------------------------------------


def test_labels_jsonl_too_deep_or_with_half_a_character_is_refused_by_line(tmp_path: Path) -> None:
    """Found by tests/test_upload_task_properties.py: a line nested past the recursion limit
    raised RecursionError (the check crashed), and an escaped lone surrogate ("\\ud800")
    reached the answer, which could not be written (a 500)."""
    images = {f"{i}.png": digits_png((i,), i) for i in range(2)}
    rows = [json.dumps({"file": f"{i}.png", "labels": "ab"[i]}) for i in range(2)]
    for n, line in enumerate(["[" * 3000, '{"file": "0.png", "labels": "\\ud800"}']):
        labels = "\n".join([*rows, line])
        archive = labelled_zip(tmp_path / f"{n}.zip", images, labels, "labels.jsonl")
        with pytest.raises(ParseError) as info:
            examine(tmp_path / str(n), archive)
        assert info.value.line == 3 and "labels.jsonl" in str(info.value)


def test_images_cannot_be_tagged(tmp_path: Path) -> None:
    """task=token_classification on a labelled ZIP made an image dataset "tagged"."""
    archive = multi_label_zip(tmp_path / "pairs.zip")
    with pytest.raises(ParseError) as info:
        examine(tmp_path, archive, task="token_classification")
    assert info.value.column == "task" and "not images" in str(info.value)
    assert not (tmp_path / "dataset" / "train").exists()


def _upload(client: TestClient, path: Path, **form: str) -> dict[str, Any]:
    files = {"file": (path.name, path.read_bytes())}
    response = client.post("/api/v1/datasets", files=files, data=form, params=CHECKED)
    assert response.status_code == 201, response.text
    return response.json()


def _training_data(dataset_id: int) -> Any:
    from app.datasets.models import Dataset
    from app.datasets.training_data import load_training_data
    from app.db import get_sessionmaker

    with get_sessionmaker()() as session:
        return load_training_data(session.get(Dataset, dataset_id), get_settings(), seed=42)


def test_training_data_reads_lists_of_ids_and_numbers(client: TestClient, tmp_path: Path) -> None:
    pairs = _upload(client, multi_label_zip(tmp_path / "pairs.zip"))
    assert (pairs["task"], pairs["label_names"][:3]) == ("multi_label", ["0", "1", "2"])
    assert client.get(f"/datasets/{pairs['id']}").status_code == 200
    data = _training_data(pairs["id"])
    assert data.texts[0] == "train/img/00.png" and data.image_root is not None
    assert data.labels[0] == [3, 7] and data.labels[5] == [1, 3]  # "3|1": sorted ids
    assert len(data.train_idx) + len(data.validation_idx) + len(data.test_idx) == 30

    values = _upload(client, regression_jsonl_zip(tmp_path / "values.zip"), task="regression")
    assert (values["task"], values["label_names"]) == ("regression", ["target"])
    assert values["label_column"] == "target"
    assert client.get(f"/datasets/{values['id']}").status_code == 200
    data = _training_data(values["id"])
    assert data.labels[:3] == [0.0, 1.0, 2.0]
    assert all(isinstance(value, float) for value in data.labels)
