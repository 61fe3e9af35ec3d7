"""Test environment: one throwaway data folder, SQLite database and SQLite broker per run,
with the real migrations applied. Settings are read from the environment, so it is set here
before anything from `app` is imported."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(tempfile.mkdtemp(prefix="tuneboard-tests-"))
MODELS = ROOT / "models"
TEST_ENV = {
    "TUNEBOARD_DATA_DIR": str(ROOT / "data"),
    "TUNEBOARD_DATABASE_URL": f"sqlite:///{ROOT}/tuneboard.db",
    "TUNEBOARD_BROKER_URL": f"sqla+sqlite:///{ROOT}/broker.db",
    "TUNEBOARD_MODEL_ROOTS": json.dumps([str(MODELS)]),
    "TUNEBOARD_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    # Small enough that a file under the upload limit can pass it (tests/test_upload_checking.py).
    "TUNEBOARD_MAX_DATASET_ROWS": "250000",
    # TestClient sends "Host: testserver"; real servers in tests are reached on 127.0.0.1.
    "TUNEBOARD_ALLOWED_HOSTS": json.dumps(["localhost", "127.0.0.1", "testserver"]),
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(TEST_ENV)

from fastapi.testclient import TestClient  # noqa: E402

from app.migrate import upgrade_head  # noqa: E402
from tests.factories import make_tiny_bert  # noqa: E402

upgrade_head()


@pytest.fixture(scope="session")
def tiny_model_id() -> str:
    """A tiny BERT in the configured model root, listed by the catalogue as local/tiny-bert."""
    folder = MODELS / "tiny-bert"
    if not (folder / "config.json").exists():
        make_tiny_bert(folder)
    return "local/tiny-bert"


@pytest.fixture(scope="session")
def tiny_vit_id() -> str:
    """A tiny ViT with its image processor in the model root: local/tiny-vit."""
    from tests.image_factories import make_tiny_image_model

    folder = MODELS / "tiny-vit"
    if not (folder / "config.json").exists():
        make_tiny_image_model(folder, "vit")
    return "local/tiny-vit"


@pytest.fixture(scope="session")
def ingester(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real `tuneboard worker --queues ingest` process, which checks uploads (the web only
    stores them); yields its log. Upload tests send `?wait=` and get the check's outcome."""
    from tests.processes import worker_process

    log = tmp_path_factory.mktemp("ingester") / "ingester.log"
    with worker_process(log, queues="ingest"):
        yield log


@pytest.fixture(scope="session")
def client(ingester: Path) -> Iterator[TestClient]:
    """Signed in as "alice", an ordinary user (her own datasets and jobs only)."""
    from app.main import app
    from tests.accounts import ensure_user, sign_in

    ensure_user("root", admin=True)  # the first user: no first-run page in the way
    ensure_user("alice")
    with TestClient(app) as c:
        sign_in(c, "alice")
        yield c


@pytest.fixture(scope="session")
def bob_client(ingester: Path) -> Iterator[TestClient]:
    """Another ordinary user, to prove isolation."""
    from app.main import app
    from tests.accounts import ensure_user, sign_in

    ensure_user("bob")
    with TestClient(app) as c:
        sign_in(c, "bob")
        yield c


@pytest.fixture(scope="session")
def admin_client(ingester: Path) -> Iterator[TestClient]:
    from app.main import app
    from tests.accounts import ensure_user, sign_in

    ensure_user("root", admin=True)
    with TestClient(app) as c:
        sign_in(c, "root")
        yield c


@pytest.fixture
def anonymous() -> Iterator[TestClient]:
    from app.main import app

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def data_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real `tuneboard worker` process on the embedded SQLite broker; yields its log."""
    from tests.processes import worker_process

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with worker_process(log):
        yield log


@pytest.fixture(scope="session")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Real predict workers, as `tuneboard serve` starts them: `--queues predict` (single
    questions; its log is yielded) and `--queues predict-batch` (batch files; predict-batch.log
    beside it)."""
    from tests.processes import worker_process

    log = tmp_path_factory.mktemp("predictor") / "predictor.log"
    with (
        worker_process(log, queues="predict"),
        worker_process(log.with_name("predict-batch.log"), queues="predict-batch"),
    ):
        yield log
