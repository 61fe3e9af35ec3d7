"""Datasets know their task: detected from the label cells or named in the upload, changed
with the columns, refused with the line or field at fault, and shown on the dataset page."""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from app.datasets.columns import ColumnChoice, detect_columns
from app.datasets.parsing import DatasetFormat, read_table
from tests.factories import labelled_texts
from tests.jobs_api import CHECKED

TEXTS = [text for text, _ in labelled_texts(20)]  # 60 distinct texts
TAGS = ["sport|music", "music", "money|sport", "sport", "money|music|sport", "money"]
TAG_LISTS = [cell.split("|") for cell in TAGS]


def _csv(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _upload(client: TestClient, filename: str, content: bytes, **form: str) -> Response:
    return client.post(
        "/api/v1/datasets",
        files={"file": (filename, content)},
        data=form,
        params=CHECKED,
    )


def _created(response: Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def _tagged_csv() -> bytes:
    return _csv(("text", "tags"), [(t, TAGS[i % len(TAGS)]) for i, t in enumerate(TEXTS)])


def _prices(seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(1, 100), 2) for _ in TEXTS]


def _priced_csv() -> bytes:
    return _csv(("text", "price"), list(zip(TEXTS, _prices(), strict=True)))


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["code"] for e in body.get("errors", [])]


def test_separated_labels_are_detected_as_multi_label(client: TestClient) -> None:
    body = _created(_upload(client, "tags.csv", _tagged_csv()))
    assert (body["task"], body["label_separator"]) == ("multi_label", "|")
    assert body["label_column"] == "tags"
    assert body["label_names"] == ["money", "music", "sport"]
    labels = body["report"]["labels"]
    assert labels["task"] == "multi_label"
    assert labels["labels_per_row"] == 1.667  # (2+1+2+1+3+1) / 6
    # Rows per label: sport is on 4 of every 6 rows, music and money on 3.
    assert body["report"]["class_counts"] == {"money": 30, "music": 30, "sport": 40}
    pairs = {tuple(p["labels"]): p["rows"] for p in labels["co_occurrence"]}
    assert pairs == {("music", "sport"): 20, ("money", "sport"): 20, ("money", "music"): 10}


def test_naming_classification_keeps_separated_cells_as_classes(client: TestClient) -> None:
    body = _created(_upload(client, "tags.csv", _tagged_csv(), task="classification"))
    assert (body["task"], body["label_separator"]) == ("classification", None)
    assert body["label_names"] == sorted(TAGS)
    assert body["report"]["class_counts"]["sport|music"] == 10


def test_json_lists_are_multi_label_in_jsonl_and_in_csv_cells(client: TestClient) -> None:
    jsonl = "\n".join(
        json.dumps({"text": t, "labels": TAG_LISTS[i % len(TAG_LISTS)]})
        for i, t in enumerate(TEXTS)
    )
    cells = _csv(
        ("text", "labels"),
        [(t, json.dumps(TAG_LISTS[i % len(TAG_LISTS)])) for i, t in enumerate(TEXTS)],
    )
    for name, content in (("lists.jsonl", jsonl.encode()), ("lists.csv", cells)):
        body = _created(_upload(client, name, content))
        assert (body["task"], body["label_separator"]) == ("multi_label", None), name
        assert body["label_names"] == ["money", "music", "sport"], name
        assert body["report"]["class_counts"] == {"money": 30, "music": 30, "sport": 40}, name


def test_varied_numbers_are_detected_as_regression(client: TestClient) -> None:
    body = _created(_upload(client, "prices.csv", _priced_csv()))
    assert (body["task"], body["label_column"]) == ("regression", "price")
    assert body["label_names"] == ["price"]
    assert body["report"]["class_counts"] == {}
    labels = body["report"]["labels"]
    prices = _prices()
    assert labels["target"]["min"] == min(prices) and labels["target"]["max"] == max(prices)
    assert sum(labels["histogram"]["counts"]) == len(prices)
    assert len(labels["histogram"]["edges"]) == len(labels["histogram"]["counts"]) + 1


def test_a_column_of_numbers_beside_ids_is_the_target(tmp_path: Path) -> None:
    """No column of repeating classes: the one column of varied numbers is what to predict;
    integers that never repeat are ids, not a target."""
    path = tmp_path / "t.csv"
    rows = [(i, t, p) for i, (t, p) in enumerate(zip(TEXTS, _prices(), strict=True))]
    path.write_bytes(_csv(("id", "text", "price"), rows))
    table = read_table(path, DatasetFormat.csv)
    assert detect_columns(table) == ColumnChoice(text="text", label="price")


def test_unknown_task_or_separator_is_refused_naming_the_field(client: TestClient) -> None:
    response = _upload(client, "tags.csv", _tagged_csv(), task="ranking")
    assert response.status_code == 422, response.text
    assert response.json()["column"] == "task" and "ranking" in response.json()["detail"]
    response = _upload(client, "tags.csv", _tagged_csv(), label_separator="/")
    assert response.status_code == 422, response.text
    assert response.json()["column"] == "label_separator"


def test_regression_targets_that_are_not_numbers_name_their_lines(client: TestClient) -> None:
    prices: list[Any] = _prices()
    prices[3] = prices[7] = "n/a"
    rows = list(zip(TEXTS, prices, strict=True))
    content = _csv(("text", "price"), rows)
    response = _upload(client, "p.csv", content, task="regression", label_column="price")
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["code"] == "unreadable_labels"
    assert error["lines"] == [5, 9]  # the header is line 1: rows 3 and 7 are lines 5 and 9
    assert "'n/a' is not a number" in error["message"]


def test_a_constant_target_is_refused(client: TestClient) -> None:
    content = _csv(("text", "price"), [(t, 3.5) for t in TEXTS])
    response = _upload(client, "c.csv", content, task="regression", label_column="price")
    assert response.status_code == 422, response.text
    assert _codes(response.json()) == ["constant_target"]


def test_switching_regression_to_classification_is_refused_and_keeps_it(
    client: TestClient,
) -> None:
    dataset = _created(_upload(client, "prices.csv", _priced_csv()))
    url = f"/api/v1/datasets/{dataset['id']}"
    columns = {"text_column": "text", "label_column": "price"}
    response = client.put(f"{url}/columns", json={**columns, "task": "classification"})
    assert response.status_code == 422, response.text
    assert _codes(response.json()) == ["labels_look_unique"]
    after = client.get(url).json()
    assert (after["task"], after["label_names"], after["report"]) == (
        "regression",
        ["price"],
        dataset["report"],
    )
    # Naming no task keeps the dataset's; naming another one switches.
    kept = client.put(f"{url}/columns", json=columns)
    assert kept.status_code == 200 and kept.json()["task"] == "regression"


def test_put_columns_switches_multi_label_separator_and_task(client: TestClient) -> None:
    dataset = _created(_upload(client, "tags.csv", _tagged_csv()))
    url = f"/api/v1/datasets/{dataset['id']}/columns"
    columns = {"text_column": "text", "label_column": "tags"}
    as_classes = client.put(url, json={**columns, "task": "classification"})
    assert as_classes.status_code == 200, as_classes.text
    assert as_classes.json()["label_names"] == sorted(TAGS)
    back = client.put(url, json={**columns, "task": "multi_label", "label_separator": "|"})
    assert back.status_code == 200, back.text
    assert (back.json()["task"], back.json()["label_separator"]) == ("multi_label", "|")
    assert back.json()["label_names"] == ["money", "music", "sport"]
    bad = client.put(url, json={**columns, "task": "multi_label", "label_separator": "/"})
    assert bad.status_code == 422 and bad.json()["column"] == "label_separator"


def _selected(page: str, name: str) -> str:
    """The value of the selected option of the page's select `name`."""
    select = re.search(rf'<select name="{name}">(.*?)</select>', page, re.S)
    assert select, f"no select {name}"
    chosen = re.findall(r'<option value="([^"]*)" selected>', select.group(1))
    assert len(chosen) == 1, select.group(1)
    return html.unescape(chosen[0])


def test_page_shows_the_task_choice_and_multi_label_report(client: TestClient) -> None:
    dataset = _created(_upload(client, "tags.csv", _tagged_csv()))
    page = client.get(f"/datasets/{dataset['id']}").text
    assert _selected(page, "task") == "multi_label"
    assert _selected(page, "label_separator") == "|"
    assert "Multi-label — several labels per row" in page
    assert "Regression — a number per row" in page
    assert "3 labels" in page and "1.7 labels per row" in page
    table = page[page.index('id="co-occurrence"') :]
    assert "music + sport</td><td>20</td>" in table and "money + music</td><td>10" in table
    listing = client.get("/datasets").text
    assert "3 labels" in listing


def test_page_shows_the_target_of_a_regression(client: TestClient) -> None:
    dataset = _created(_upload(client, "prices.csv", _priced_csv()))
    page = client.get(f"/datasets/{dataset['id']}").text
    assert _selected(page, "task") == "regression"
    assert "predicts price" in page
    chart = re.search(r'<div class="chart" data-view="target" data-values="([^"]*)"', page)
    assert chart, "no target histogram"
    values = json.loads(html.unescape(chart.group(1)))
    assert values == dataset["report"]["labels"]["histogram"]
    assert "standard deviation" in page
    assert "predicts price" in client.get("/datasets").text


def test_column_form_changes_the_task_and_refuses_in_place(client: TestClient) -> None:
    dataset = _created(_upload(client, "tags.csv", _tagged_csv()))
    url = f"/datasets/{dataset['id']}/columns"
    form = {"text_column": "text", "label_column": "tags"}
    changed = client.post(url, data={**form, "task": "classification", "label_separator": "|"})
    assert changed.status_code == 200 and "<html" not in changed.text
    assert _selected(changed.text, "task") == "classification"
    assert "6 classes" in changed.text and 'id="co-occurrence"' not in changed.text
    refused = client.post(url, data={**form, "task": "regression"})
    assert refused.status_code == 422
    assert "regression task cannot read" in refused.text
    assert "previous choice is kept" in refused.text
    assert _selected(refused.text, "task") == "classification"
    back = client.post(url, data={**form, "task": "multi_label", "label_separator": ""})
    assert back.status_code == 200
    assert (_selected(back.text, "task"), _selected(back.text, "label_separator")) == (
        "multi_label",
        "|",  # "" asks for the separator to be detected (or JSON lists)
    )


def test_page_of_images_labelled_by_a_file(client: TestClient, tmp_path: Path) -> None:
    """A ZIP with labels.csv (several digits per image) or labels.jsonl (a number each):
    the page says where the labels come from and captions the thumbnails with them."""
    from tests.test_image_labels import multi_label_zip, regression_jsonl_zip

    pairs = _created(_upload(client, "pairs.zip", multi_label_zip(tmp_path / "p.zip").read_bytes()))
    page = client.get(f"/datasets/{pairs['id']}").text
    assert "Labels come from labels.csv in the ZIP: 10 labels, 30 usable images" in page
    assert 'id="co-occurrence"' in page and 'title="train/img/00.png: 3, 7"' in page
    numbers = regression_jsonl_zip(tmp_path / "n.zip")
    digits = _created(_upload(client, "numbers.zip", numbers.read_bytes()))
    page = client.get(f"/datasets/{digits['id']}").text
    assert "predicts target" in page and 'data-view="target"' in page
    assert 'title="train/00.png: 0"' in page


def test_one_zero_one_column_per_label_is_multi_label(client: TestClient) -> None:
    """Columns of 0/1 beside the text, none named like a label: one column per label."""
    rows = []
    for i in range(30):
        flags = [(i >> bit) & 1 for bit in range(3)]
        rows.append((f"text number {i} about things", *flags))
    content = _csv(("text", "sport", "money", "music"), rows)
    dataset = _created(_upload(client, "flags.csv", content))
    assert dataset["task"] == "multi_label"
    assert dataset["label_columns"] == ["sport", "money", "music"]
    assert dataset["label_names"] == ["money", "music", "sport"]
    codes = {w["code"] for w in dataset["report"]["warnings"]}
    assert "rows_without_labels" in codes  # row 0 holds no 1 at all: kept, as no label
    from app.config import get_settings
    from app.datasets.models import Dataset
    from app.datasets.training_data import load_training_data
    from app.db import get_sessionmaker

    with get_sessionmaker()() as session:
        row = session.get(Dataset, dataset["id"])
        data = load_training_data(row, get_settings(), seed=1)
    # Row i holds bit 0 (sport), 1 (money), 2 (music); ids follow the sorted names.
    assert data.labels[0] == [] and data.labels[7] == [0, 1, 2] and data.labels[1] == [2]

    # Named on a file whose flags would also read as a binary class: the columns win.
    response = client.put(
        f"/api/v1/datasets/{dataset['id']}/columns",
        json={"text_column": "text", "label_column": "sport", "label_columns": ["sport", "money"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["label_names"] == ["money", "sport"]
    response = client.put(
        f"/api/v1/datasets/{dataset['id']}/columns",
        json={"text_column": "text", "label_column": "sport", "label_columns": ["sport", "money"],
              "task": "regression"},
    )  # fmt: skip
    assert response.status_code == 422 and "multi_label" in response.text
