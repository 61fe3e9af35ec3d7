"""The README's comparison: all five strategies on all of BBC News (2,225 articles, 5
topics), packaged MiniLM, max length 64, default settings otherwise, one comparison through
the real path (`tuneboard serve`: one CPU worker, the API, SQLite). Then an Auto job on the
same data, to show what it picks and why.

    .venv/bin/python bench/compare_bbc.py          # ~20 minutes on 2 cores

Prints a Markdown table (test macro-F1, wall time, trainable parameters, peak memory) and
the comparison's verdict. Run it on a quiet machine: the wall times are the point.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from signed_in import serve  # bench/signed_in.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import bbc_news_rows  # noqa: E402 - needs ROOT on the path
from tests.jobs_api import run_job, upload_csv  # noqa: E402

TITLES = {
    "transfer_frozen": "frozen features",
    "transfer_top_k": "top k",
    "finetune_full": "full fine-tuning",
    "finetune_lora": "LoRA (rank 8)",
    "lp_ft": "LP-FT",
}


def size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--port", type=int, default=8796)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    path = work / "bbc.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *bbc_news_rows()])
    with serve(ROOT, work, args.port) as client:
        dataset = upload_csv(client, path, name="BBC News")
        params = {"max_length": args.max_length}
        started = time.perf_counter()
        response = client.post(
            "/api/v1/comparisons",
            json={"dataset_id": dataset["id"], "model": "minilm-l6", "params": params},
        )
        assert response.status_code == 201, response.text
        url = f"/api/v1/comparisons/{response.json()['id']}"
        while not (verdict := client.get(url).json())["finished"]:
            time.sleep(5)
        print(f"comparison finished in {time.perf_counter() - started:.0f} s\n")
        print("| strategy | test macro-F1 | wall time | trainable parameters | peak memory |")
        print("|---|---|---|---|---|")
        for row in verdict["rows"]:
            job, r = row["job"], row["job"]["results"] or {}
            title = TITLES[job["strategy"]]
            if "top_k" in r:
                title += f" (k = {r['top_k']} of {r['blocks']})"
            print(
                f"| {title} | {100 * r.get('test_macro_f1', 0):.1f} % | "
                f"{r.get('wall_seconds', 0):.0f} s | {r.get('trainable_params', 0):,} | "
                f"{size(r.get('peak_memory_bytes', 0))} |"
            )
        print(f"\nverdict: {verdict['summary']}")

        auto = run_job(
            client,
            {"dataset_id": dataset["id"], "model": "minilm-l6", "strategy": "auto",
             "params": params},
            timeout=3600,
        )  # fmt: skip
        print(f"auto picked {auto['resolved_strategy']}: {auto['strategy_reason']}")
        r = auto["results"] or {}
        print(f"  test macro-F1 {100 * r.get('test_macro_f1', 0):.1f} %")


if __name__ == "__main__":
    main()
