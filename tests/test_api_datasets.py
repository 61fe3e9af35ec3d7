"""Uploading datasets through the JSON API: good files, bad files, limits, column changes."""

from __future__ import annotations

import io
import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.datasets.models import Dataset
from app.db import get_sessionmaker
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import CHECKED


def _upload(client: TestClient, filename: str, content: bytes, **form: str):
    return client.post(
        "/api/v1/datasets",
        files={"file": (filename, io.BytesIO(content))},
        data=form,
        params=CHECKED,
    )


def _dataset_count() -> int:
    with get_sessionmaker()() as session:
        return session.scalar(select(func.count()).select_from(Dataset)) or 0


def _uploads_left(data_root: Path) -> list[Path]:
    return list((data_root / "data" / "uploads").glob("*"))


def test_csv_upload_detects_columns_and_reports(client: TestClient, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "news.csv", labelled_texts(15), header=("sentence", "category"))
    response = _upload(client, "news.csv", path.read_bytes(), name="My news")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "My news"
    assert (body["text_column"], body["label_column"]) == ("sentence", "category")
    assert body["label_names"] == ["money", "music", "sport"]
    assert body["num_rows"] == 45
    assert body["report"]["class_counts"] == {"money": 15, "music": 15, "sport": 15}
    assert body["report"]["errors"] == []
    assert len(body["preview"]) == 20
    # The few-examples warning: 15 < the per-class floor is not hit, but duplicates may be.
    fetched = client.get(f"/api/v1/datasets/{body['id']}").json()
    assert fetched["id"] == body["id"]


def test_jsonl_tsv_and_parquet_uploads(client: TestClient, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = labelled_texts(12)
    jsonl = "\n".join(json.dumps({"text": t, "label": y}) for t, y in rows).encode()
    tsv = ("text\tlabel\n" + "\n".join(f"{t}\t{y}" for t, y in rows)).encode()
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [y for _, y in rows]}), buf)
    for name, content in (("a.jsonl", jsonl), ("a.tsv", tsv), ("a.parquet", buf.getvalue())):
        response = _upload(client, name, content)
        assert response.status_code == 201, (name, response.text)
        assert response.json()["num_rows"] == 36
        assert response.json()["format"] == name.rsplit(".", 1)[1]


def test_bad_files_answer_422_naming_the_problem(client: TestClient, data_root: Path) -> None:
    before = _dataset_count()
    cases = {
        "latin1.csv": ("text,label\nok,a\ncaf\xe9,b\n".encode("latin-1"), "line 3"),
        "ragged.csv": (b"text,label\nok,a\nbad,b,extra\nfine,b\n", "line 3"),
        "nul.csv": (b"text,label\nok,a\nbad\x00,b\n", "line 3"),
        "one_class.csv": (b"text,label\nx,a\ny,a\nz,a\n", "class"),
        "bad.jsonl": (b'{"text": "x", "label": "a"}\n{not json\n', "line 2"),
        "bad.parquet": (b"PAR1 definitely not parquet", "Parquet"),
        "notes.docx": (b"PK\x03\x04 something", "CSV"),
    }
    for name, (content, expected) in cases.items():
        response = _upload(client, name, content)
        assert response.status_code == 422, (name, response.text)
        assert expected.lower() in response.json()["detail"].lower(), (name, response.json())
    assert _dataset_count() == before
    assert _uploads_left(data_root) == []


def test_unknown_column_choice_is_422(client: TestClient, tmp_path: Path) -> None:
    content = write_csv(tmp_path / "a.csv", labelled_texts(5)).read_bytes()
    response = _upload(client, "a.csv", content, label_column="topic")
    assert response.status_code == 422
    assert "topic" in response.json()["detail"]


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    client: TestClient, data_root: Path
) -> None:
    before = _dataset_count()
    big = b"text,label\n" + b"x" * (3 * 1024 * 1024) + b",a\n"
    response = _upload(client, "big.csv", big)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert _dataset_count() == before
    assert _uploads_left(data_root) == []


def test_separate_validation_and_test_files(client: TestClient, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", labelled_texts(12, seed=1)).read_bytes()
    val = write_csv(tmp_path / "val.csv", labelled_texts(3, seed=2)).read_bytes()
    test = write_csv(tmp_path / "test.csv", labelled_texts(4, seed=3)).read_bytes()
    response = client.post(
        "/api/v1/datasets",
        files={
            "file": ("train.csv", train),
            "validation_file": ("val.csv", val),
            "test_file": ("test.csv", test),
        },
        params=CHECKED,
    )
    assert response.status_code == 201, response.text
    assert response.json()["report"]["parts"] == {"train": 36, "validation": 9, "test": 12}


def test_change_columns_revalidates_and_keeps_old_choice_on_error(
    client: TestClient, tmp_path: Path
) -> None:
    rows = [(t, y, "x" if i % 2 else "y") for i, (t, y) in enumerate(labelled_texts(10))]
    path = tmp_path / "three.csv"
    path.write_text("text,label,flag\n" + "\n".join(",".join(r) for r in rows) + "\n")
    dataset = _upload(client, "three.csv", path.read_bytes()).json()
    url = f"/api/v1/datasets/{dataset['id']}/columns"
    changed = client.put(url, json={"text_column": "text", "label_column": "flag"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["label_names"] == ["x", "y"]
    bad = client.put(url, json={"text_column": "text", "label_column": "nope"})
    assert bad.status_code == 422
    assert client.get(f"/api/v1/datasets/{dataset['id']}").json()["label_column"] == "flag"


def test_missing_dataset_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/datasets/999999").status_code == 404
