"""RELIABILITY rows 12 and 13: model sources Tuneboard refuses.

12 — a pickled checkpoint that runs code when unpickled, and a folder that needs its own code
     (trust_remote_code), are refused: the job fails with the reason, and nothing in them ran.
13 — a model id that is a URL or a path (loopback, metadata address, file://, traversal, a
     revision or query smuggled into a Hub id) is refused with a 422: only catalogue entries
     and Hub ids are model sources.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app import catalog
from app.config import Settings, get_settings
from tests.conftest import MODELS
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import run_job, upload_csv


class RunsCode:
    """Unpickling this calls exec(), which writes `marker`: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pickle ran')",))


def write_malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A real torch checkpoint: tensors plus an object whose unpickling runs code."""
    torch.save({"embeddings.weight": torch.zeros(2, 2), "payload": RunsCode(marker)}, path)
    return path


@pytest.fixture(scope="module")
def model_root() -> Path:
    # The worker process reads the same TUNEBOARD_MODEL_ROOTS, whose first entry is MODELS.
    assert json.loads(os.environ["TUNEBOARD_MODEL_ROOTS"])[0] == str(MODELS)
    MODELS.mkdir(parents=True, exist_ok=True)
    return MODELS


@pytest.fixture(scope="module")
def hostile_folders(
    model_root: Path, tiny_model_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Under the model root, copies of the tiny BERT made hostile:
    - pickled: model.safetensors replaced by a pytorch_model.bin that runs code;
    - remote_code: config.json's auto_map points at a modeling file that runs code."""
    tiny = model_root / tiny_model_id.removeprefix("local/")
    tag = uuid.uuid4().hex[:8]
    markers = tmp_path_factory.mktemp("markers")

    pickled = model_root / f"pickled-{tag}"
    shutil.copytree(tiny, pickled)
    (pickled / "model.safetensors").unlink()
    write_malicious_checkpoint(pickled / "pytorch_model.bin", markers / "pickle-ran")

    remote = model_root / f"remote-code-{tag}"
    shutil.copytree(tiny, remote)
    code_marker = markers / "remote-code-ran"
    (remote / "modeling_evil.py").write_text(
        f"open({str(code_marker)!r}, 'w').write('remote code ran')\n"
        "from transformers import BertForSequenceClassification as EvilModel\n"
    )
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "modeling_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
    }
    (remote / "config.json").write_text(json.dumps(config))

    yield {
        "pickled": pickled,
        "pickle_marker": markers / "pickle-ran",
        "remote": remote,
        "code_marker": code_marker,
    }
    shutil.rmtree(pickled, ignore_errors=True)
    shutil.rmtree(remote, ignore_errors=True)


@pytest.fixture(scope="module")
def text_dataset(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> int:
    path = write_csv(tmp_path_factory.mktemp("data") / "d.csv", labelled_texts(10))
    return int(upload_csv(client, path)["id"])


def test_the_crafted_checkpoint_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    # The control: without weights_only, loading it runs the payload. Every test below
    # checks that Tuneboard never gets that far.
    marker = tmp_path / "ran"
    path = write_malicious_checkpoint(tmp_path / "evil.bin", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pickle ran"


# --- row 12: pickles ---------------------------------------------------------------------


def test_a_job_on_a_pickle_only_folder_fails_and_the_pickle_never_runs(
    client: TestClient, worker: Path, text_dataset: int, hostile_folders: dict[str, Any]
) -> None:
    model_id = f"local/{hostile_folders['pickled'].name}"
    listed = {m["id"]: m for m in client.get("/api/v1/models").json()}
    assert "no safetensors weights" in listed[model_id]["description"]

    job = run_job(
        client,
        {"dataset_id": text_dataset, "model": model_id, "strategy": "finetune_full"},
        timeout=120,
    )
    assert job["status"] == "failed", job
    assert "no safetensors weights (model.safetensors)" in job["error"]
    assert "pytorch_model.bin" in job["error"] and "never loaded" in job["error"]
    assert not hostile_folders["pickle_marker"].exists()


def test_load_text_model_refuses_a_pickle_only_folder(
    hostile_folders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForSequenceClassification

    import worker.model_source
    from worker.training.text_model import load_text_model

    folder = str(hostile_folders["pickled"])
    with pytest.raises(ValueError, match="no safetensors weights"):
        load_text_model(folder, ["a", "b"])
    # Without our check, transformers itself must not fall back to the .bin ...
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False
        )
    # ... and load_text_model turns that refusal into the job's reason.
    monkeypatch.setattr(worker.model_source, "check_model_folder", lambda folder: None)
    with pytest.raises(ValueError, match="pickled checkpoints .* are never loaded"):
        load_text_model(folder, ["a", "b"])
    assert not hostile_folders["pickle_marker"].exists()


def test_packaged_checkpoints_are_read_with_weights_only(tmp_path: Path) -> None:
    from worker.training.packaged_vision import load_state_dict, pretrained

    marker = tmp_path / "ran"
    path = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_state_dict(path)
    assert not marker.exists()

    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.ones(3)}, plain)
    assert torch.equal(load_state_dict(plain)["w"], torch.ones(3))
    assert pretrained("mobilenet_v2").training is False  # the real packaged weights still load


# --- row 12: trust_remote_code -----------------------------------------------------------


def test_a_job_on_a_folder_needing_its_own_code_fails_and_no_code_runs(
    client: TestClient, worker: Path, text_dataset: int, hostile_folders: dict[str, Any]
) -> None:
    model_id = f"local/{hostile_folders['remote'].name}"
    listed = {m["id"]: m for m in client.get("/api/v1/models").json()}
    assert "trust_remote_code" in listed[model_id]["description"]

    job = run_job(
        client,
        {"dataset_id": text_dataset, "model": model_id, "strategy": "transfer_frozen"},
        timeout=120,
    )
    assert job["status"] == "failed", job
    assert "requires its own code (trust_remote_code" in job["error"]
    assert "never runs" in job["error"]
    assert not hostile_folders["code_marker"].exists()


def test_load_text_model_refuses_a_folder_needing_its_own_code(
    hostile_folders: dict[str, Any],
) -> None:
    from worker.training.text_model import load_text_model

    with pytest.raises(ValueError, match="trust_remote_code"):
        load_text_model(str(hostile_folders["remote"]), ["a", "b"])
    assert not hostile_folders["code_marker"].exists()


# --- row 13: URLs and paths are never model sources ----------------------------------------

HOSTILE_IDS = [
    "http://127.0.0.1/x",
    "http://localhost:8000/org/name",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/x",
    "https://huggingface.co/org/name",
    "hf.co/org/name",
    "file:///etc/passwd",
    "s3://bucket/model",
    "../../etc",
    "/abs/path",
    "/etc/passwd",
    "~/models/x",
    "org/name/../../x",
    "local/../../etc",
    "local/..",
    "org/..",
    "../name",
    "org/na..me",
    "org--x/name",
    "org//name",
    "/org/name",
    "org/name/",
    "org\\name",
    "org/name@main",
    "org/name@refs/pr/1",
    "org@evil.com/name",
    "org/name?revision=evil",
    "org/name#frag",
    "org/%2e%2e",
    "%2e%2e/%2e%2e",
    "org/name%00",
    "org/name\x00",
    "org/ name",
    " org/name",
    "org/name ",
    "org/name\n",
    "org/name\t",
    "org/name.",
    "org/name-",
    "-org/name",
    ".org/name",
    "org/name.git",
    "org/näme",
    "ｏrg/name",
    "org/name;rm -rf /",
    "a" * 97 + "/name",
    "org/" + "n" * 97,
    "x" * 5000,
    "",
]


@pytest.mark.parametrize("allow_hub", [False, True])
def test_hostile_model_ids_are_refused_by_the_catalogue(allow_hub: bool) -> None:
    settings = Settings(allow_hub_models=allow_hub)
    for model_id in HOSTILE_IDS:
        assert not catalog.is_hub_id(model_id), repr(model_id)
        with pytest.raises(catalog.UnknownModel):
            catalog.resolve(model_id, settings)
        with pytest.raises(catalog.UnknownModel):
            catalog.resolve(model_id, settings, modality="image")


def test_plain_hub_ids_are_accepted_only_when_hub_models_are_on() -> None:
    on, off = Settings(allow_hub_models=True), Settings(allow_hub_models=False)
    for model_id in ("org/name", "google-bert/bert-base-uncased", "a/b", "Org_1/x.y-z_2"):
        entry = catalog.resolve(model_id, on)
        assert (entry.source, entry.id, entry.path) == ("hub", model_id, None)
        with pytest.raises(catalog.UnknownModel, match="Hub ids are off"):
            catalog.resolve(model_id, off)


@pytest.mark.parametrize("allow_hub", [False, True])
def test_the_api_answers_422_to_hostile_model_ids_and_creates_no_job(
    client: TestClient, text_dataset: int, allow_hub: bool
) -> None:
    from app.main import app

    app.dependency_overrides[get_settings] = lambda: Settings(allow_hub_models=allow_hub)
    try:
        before = len(client.get("/api/v1/jobs").json())
        for model_id in HOSTILE_IDS:
            body = {"dataset_id": text_dataset, "model": model_id, "strategy": "transfer_frozen"}
            response = client.post("/api/v1/jobs", json=body)
            assert response.status_code == 422, (model_id, response.status_code, response.text)
            recommendation = client.get(
                "/api/v1/recommendation",
                params={"dataset_id": text_dataset, "model": model_id},
            )
            assert recommendation.status_code in (404, 422), (model_id, recommendation.text)
        assert len(client.get("/api/v1/jobs").json()) == before
    finally:
        app.dependency_overrides.pop(get_settings, None)


def test_the_worker_downloads_only_valid_hub_ids_at_the_default_revision(
    monkeypatch: pytest.MonkeyPatch, tiny_model_id: str, tmp_path: Path
) -> None:
    import huggingface_hub

    from worker.model_source import HUB_PATTERNS, local_model_path

    calls: list[tuple[str, dict[str, Any]]] = []
    downloaded = tmp_path / "snapshot"
    shutil.copytree(MODELS / tiny_model_id.removeprefix("local/"), downloaded)

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append((repo_id, kwargs))
        return str(downloaded)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    for model_id in HOSTILE_IDS:
        entry = catalog.ModelEntry(model_id, model_id, "hub", "text", None, "", None)
        with pytest.raises(ValueError, match="never model sources"):
            local_model_path(entry)
    assert calls == []

    entry = catalog.resolve("org/name", Settings(allow_hub_models=True))
    assert local_model_path(entry) == str(downloaded)
    assert calls == [
        ("org/name", {"repo_type": "model", "revision": "main", "allow_patterns": HUB_PATTERNS})
    ]
    assert not any(p.endswith((".bin", ".py", ".pt", ".pth", ".ckpt")) for p in HUB_PATTERNS)

    # A Hub snapshot without safetensors weights is refused like a local folder.
    (downloaded / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no safetensors weights"):
        local_model_path(entry)


# --- local folders stay inside the configured roots ---------------------------------------


def test_a_symlink_out_of_the_model_root_is_neither_listed_nor_resolved(
    client: TestClient, model_root: Path, tiny_model_id: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    outside = tmp_path / "outside-model"
    shutil.copytree(model_root / tiny_model_id.removeprefix("local/"), outside)
    escape = model_root / f"escape-{tag}"
    inside = model_root / f"alias-{tag}"
    escape.symlink_to(outside, target_is_directory=True)
    inside.symlink_to(model_root / tiny_model_id.removeprefix("local/"), target_is_directory=True)
    try:
        listed = {m["id"] for m in client.get("/api/v1/models").json()}
        assert f"local/{escape.name}" not in listed
        assert f"local/{inside.name}" in listed  # a symlink within the root is fine
        for allow_hub in (False, True):
            with pytest.raises(catalog.UnknownModel):
                catalog.resolve(f"local/{escape.name}", Settings(allow_hub_models=allow_hub))
    finally:
        escape.unlink()
        inside.unlink()
