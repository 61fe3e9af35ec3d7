"""A frozen-features job on all of BBC News through the real path — `tuneboard serve`
(web + worker), the JSON API, the SQLite database and broker — then the same job again,
which finds the backbone features in the cache. Prints wall times, accuracy and the ratio.

    .venv/bin/python bench/frozen_job_bbc.py [--max-length 128]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import httpx
from signed_in import serve  # bench/signed_in.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import bbc_news_rows  # noqa: E402 - needs ROOT on the path


def write_bbc_csv(path: Path) -> int:
    rows = bbc_news_rows()  # tests/factories.py: all 2,225 articles, shuffled by seed 0
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return len(rows)


def wait_finished(client: httpx.Client, job_id: int) -> dict:
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    with serve(ROOT, tmp, args.port) as client:
        n = write_bbc_csv(tmp / "bbc.csv")
        with (tmp / "bbc.csv").open("rb") as f:
            files = {"file": ("bbc.csv", f)}  # answered once the ingest worker has checked it
            dataset = client.post("/api/v1/datasets", files=files, params={"wait": 60}).json()
        body = {
            "dataset_id": dataset["id"],
            "model": "minilm-l6",
            "strategy": "transfer_frozen",
            "params": {"max_length": args.max_length},
        }
        print(
            f"BBC News, {n} articles; MiniLM frozen features, max_length {args.max_length}, "
            "head fitted to convergence; through tuneboard serve + worker"
        )
        runs = []
        for label in ("first job", "second job (same model and data)"):
            started = time.perf_counter()
            job = wait_finished(client, client.post("/api/v1/jobs", json=body).json()["id"])
            elapsed = time.perf_counter() - started
            r = job["results"] or {}
            runs.append(elapsed)
            print(
                f"  {label}: {job['status']}, {elapsed:.1f} s from queue to done "
                f"(training wall {r.get('wall_seconds')} s, features {r.get('feature_seconds')}"
                f" s, cache hit {r.get('feature_cache_hit')}), test accuracy "
                f"{r.get('test_accuracy', 0):.4f}, macro-F1 {r.get('test_macro_f1', 0):.4f}"
            )
        print(f"  second / first = {runs[1] / runs[0]:.0%}")


if __name__ == "__main__":
    main()
