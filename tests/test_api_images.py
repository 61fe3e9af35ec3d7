"""Image datasets through the API and pages: ZIPs of class folders in, report, thumbnails,
and the bad archives and images that must be refused or skipped with a reason."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from tests.image_factories import (
    add_symlink_member,
    colour_image,
    colour_zip,
    image_bytes,
    make_image_zip,
)
from tests.jobs_api import CHECKED


def _upload(client: TestClient, path: Path, **extra_files: Path):
    files = {"file": (path.name, path.read_bytes())}
    for field, extra in extra_files.items():
        files[field] = (extra.name, extra.read_bytes())
    return client.post("/api/v1/datasets", files=files, params=CHECKED)


def _leftovers(data_root: Path) -> list[Path]:
    uploads = data_root / "data" / "uploads"
    return list(uploads.iterdir()) if uploads.exists() else []


def test_class_folder_zip_becomes_an_image_dataset(client: TestClient, tmp_path: Path) -> None:
    response = _upload(client, colour_zip(tmp_path / "colours.zip", 12))
    assert response.status_code == 201, response.text
    d = response.json()
    assert (d["modality"], d["format"], d["num_rows"]) == ("image", "zip", 36)
    assert d["label_names"] == ["blue", "green", "red"]
    assert d["report"]["class_counts"] == {"blue": 12, "green": 12, "red": 12}
    size = d["report"]["image_size"]
    assert size["min_width"] == 40 and size["max_width"] == 48
    assert len(d["preview"]) == 3 * 8  # eight thumbnails a class

    page = client.get(f"/datasets/{d['id']}").text
    assert "ZIP of images" in page and "Image size in pixels" in page
    assert f"/api/v1/datasets/{d['id']}/images/0/thumbnail" in page
    thumb = client.get(f"/api/v1/datasets/{d['id']}/images/0/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) <= 160
    assert client.get(f"/api/v1/datasets/{d['id']}/images/999/thumbnail").status_code == 404
    assert client.get(f"/api/v1/datasets/{d['id']}/images/-1/thumbnail").status_code == 422
    columns = {"text_column": "image", "label_column": "label"}
    response = client.put(f"/api/v1/datasets/{d['id']}/columns", json=columns)
    assert response.status_code == 422 and "no columns" in response.json()["detail"]


def test_bad_images_are_skipped_with_their_reason(client: TestClient, tmp_path: Path) -> None:
    members = {f"{c}/{i}.png": colour_image(c, i) for c in ("red", "blue") for i in range(12)}
    members["red/scan.tiff"] = image_bytes("TIFF")
    members["blue/broken.png"] = colour_image("blue", 99)[:60]
    members["blue/notes.jpg"] = b"not an image at all"
    members["loose.png"] = colour_image("red", 98)  # outside any class folder
    response = _upload(client, make_image_zip(tmp_path / "mixed.zip", members))
    assert response.status_code == 201, response.text
    report = response.json()["report"]
    assert response.json()["num_rows"] == 24 and report["skipped_count"] == 4
    reasons = {f["path"]: f["reason"] for f in report["skipped_files"]}
    assert "TIFF" in reasons["red/scan.tiff"]
    assert "not a readable image" in reasons["blue/broken.png"]
    page = client.get(f"/datasets/{response.json()['id']}").text
    assert "4 skipped files and why" in page and "TIFF" in page


def test_hostile_archives_are_refused_and_leave_nothing(
    client: TestClient, tmp_path: Path, data_root: Path
) -> None:
    datasets_before = len(client.get("/api/v1/datasets").json())
    good = {f"red/{i}.png": colour_image("red", i) for i in range(3)}
    slip = make_image_zip(tmp_path / "slip.zip", {**good, "../../escaped.png": b"x"})
    absolute = make_image_zip(tmp_path / "abs.zip", {**good, "/tmp/abs.png": b"x"})
    symlink = add_symlink_member(make_image_zip(tmp_path / "link.zip", good), "red/link.png")
    bomb = make_image_zip(tmp_path / "bomb.zip", {**good, "red/zeros.png": bytes(60 << 20)})
    for archive, member in (
        (slip, "../../escaped.png"),
        (absolute, "/tmp/abs.png"),
        (symlink, "red/link.png"),
        (bomb, "red/zeros.png"),
    ):
        response = _upload(client, archive)
        assert response.status_code == 422, (archive.name, response.text)
        assert response.json()["member"] == member, response.json()
    assert not (tmp_path.parent / "escaped.png").exists()
    assert len(client.get("/api/v1/datasets").json()) == datasets_before
    assert _leftovers(data_root) == []


def test_validation_zip_with_an_unknown_class_is_refused(client: TestClient, tmp_path: Path):
    train = colour_zip(tmp_path / "train.zip", 10)
    other = make_image_zip(tmp_path / "val.zip", {"purple/1.png": colour_image("red", 1)})
    response = _upload(client, train, validation_file=other)
    assert response.status_code == 422
    assert "purple" in response.text and "validation archive" in response.text
    csv = tmp_path / "val.csv"
    csv.write_text("text,label\na,b\n")
    response = _upload(client, train, validation_file=csv)
    assert response.status_code == 422 and "every part" in response.json()["detail"]


def test_models_must_read_what_the_dataset_holds(
    client: TestClient, tmp_path: Path, tiny_model_id: str, tiny_vit_id: str
) -> None:
    images = _upload(client, colour_zip(tmp_path / "c.zip", 10)).json()
    models = {m["id"]: m for m in client.get("/api/v1/models").json()}
    assert models["efficientnet-lite0"]["modality"] == "image"
    assert models["mobilenet-v2"]["modality"] == "image"
    assert (
        models[tiny_vit_id]["modality"] == "image" and models[tiny_model_id]["modality"] == "text"
    )
    body = {"dataset_id": images["id"], "model": tiny_model_id, "strategy": "transfer_frozen"}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422
    assert "is a text encoder but this dataset needs an image model" in response.json()["detail"]
    assert "efficientnet-lite0" in response.json()["detail"]
    form = client.get(f"/jobs/new?dataset_id={images['id']}").text
    assert 'data-modality="image"' in form and "Image models" in form
    assert "Augment training images" in form
