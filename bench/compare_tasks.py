"""Frozen features, LoRA and full fine-tuning for each task beyond one class per row, with
the packaged MiniLM, one comparison per task through the real path (`tuneboard serve`: one
CPU worker, the API, SQLite):

- multi-label: real kaomoji with their emotion tags (`tests/task_data.py`), max length 32;
- regression: hotel reviews scored 0-100 points (built: the mean of two adjectives' scores);
- entity tagging: templated sentences with people, places and companies, as CoNLL.

    .venv/bin/python bench/compare_tasks.py                      # ~10 minutes on 2 cores
    .venv/bin/python bench/compare_tasks.py --only regression --reviews 300

Each comparison runs the three strategies with their default settings (epochs, learning
rate) on the same split and ranks them by the task's headline (macro-F1, MAE, entity F1).
Prints one Markdown table per task (the headline and the task's other test scores, wall
time, training examples/s, trainable parameters) and the comparison's verdict: the winner
and the cheapest run within one point (1 % for an error in the target's units).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from signed_in import serve  # bench/signed_in.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.jobs_api import CHECKED  # noqa: E402 - needs ROOT on the path
from tests.task_data import (  # noqa: E402
    kaomoji_rows,
    review_rows,
    tagged_sentences,
    write_conll,
    write_table,
)

STRATEGIES = ("transfer_frozen", "finetune_lora", "finetune_full")
TITLES = {
    "transfer_frozen": "frozen features",
    "finetune_lora": "LoRA (rank 8)",
    "finetune_full": "full fine-tuning",
}
PERCENT = {"macro_f1", "micro_f1", "subset_accuracy", "hamming_loss"} | {
    "entity_f1", "entity_precision", "entity_recall", "token_accuracy",
}  # fmt: skip


@dataclass(frozen=True)
class Task:
    name: str  # the dataset's `task`
    title: str
    scores: tuple[tuple[str, str], ...]  # (result key without test_, column title)
    max_length: int
    write: Callable[[Path, int], Path]  # (folder, rows) -> the file to upload


def _kaomoji(work: Path, n: int) -> Path:
    return write_table(work / "kaomoji.csv", ("text", "emotion"), kaomoji_rows(n))


def _reviews(work: Path, n: int) -> Path:
    return write_table(work / "reviews.csv", ("review", "score"), review_rows(n))


def _sentences(work: Path, n: int) -> Path:
    return write_conll(work / "people.conll", tagged_sentences(n))


TASKS = {
    "multi_label": Task(
        "multi_label",
        "Multi-label: kaomoji emotions",
        (("macro_f1", "macro-F1"), ("micro_f1", "micro-F1"),
         ("subset_accuracy", "subset accuracy"), ("hamming_loss", "Hamming loss")),
        32,
        _kaomoji,
    ),
    "regression": Task(
        "regression",
        "Regression: review scores (0-100 points)",
        (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"), ("spearman", "Spearman ρ")),
        48,
        _reviews,
    ),
    "token_classification": Task(
        "token_classification",
        "Entity tagging: people, places, companies",
        (("entity_f1", "entity F1"), ("entity_precision", "precision"),
         ("entity_recall", "recall"), ("token_accuracy", "token accuracy")),
        48,
        _sentences,
    ),
}  # fmt: skip


def score(key: str, value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    if key in PERCENT:
        return f"{100 * value:.1f} %"
    return f"{value:.2f}" if key in ("mae", "rmse") else f"{value:.3f}"


def upload(client: httpx.Client, path: Path, name: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/datasets",
        files={"file": (path.name, path.read_bytes())},
        data={"name": name},
        params=CHECKED,  # answers once the ingest worker has checked it
        timeout=CHECKED["wait"] + 30,
    )
    if response.status_code != 201:
        raise SystemExit(f"upload of {path.name} failed: {response.status_code} {response.text}")
    return response.json()


def compare(client: httpx.Client, work: Path, task: Task, rows: int, params: dict) -> None:
    path = task.write(work, rows)
    dataset = upload(client, path, task.title)
    if dataset["task"] != task.name:
        raise SystemExit(f"{path.name} was read as {dataset['task']}, not {task.name}")
    started = time.perf_counter()
    response = client.post(
        "/api/v1/comparisons",
        json={
            "dataset_id": dataset["id"],
            "model": "minilm-l6",
            "strategies": list(STRATEGIES),
            "params": {"max_length": task.max_length, **params},
        },
    )
    if response.status_code != 201:
        raise SystemExit(f"comparison refused: {response.status_code} {response.text}")
    url = f"/api/v1/comparisons/{response.json()['id']}"
    while not (verdict := client.get(url).json())["finished"]:
        time.sleep(5)
    elapsed = time.perf_counter() - started

    headline = verdict["metric"]
    others = [(k, t) for k, t in task.scores if k != headline]
    title = dict(task.scores)[headline]
    print(f"### {task.title}\n")
    print(
        f"{dataset['num_rows']:,} rows ({path.name}), max length {task.max_length}; "
        f"comparison finished in {elapsed:.0f} s; ranked by test {title}.\n"
    )
    print(
        f"| strategy | test {title} | "
        + " | ".join(t for _, t in others)
        + " | wall time | train examples/s | trainable parameters | epochs |"
    )
    print("|---|---|" + "---|" * len(others) + "---|---|---|---|")
    failed = []
    for row in verdict["rows"]:
        job = row["job"]
        r = job["results"] or {}
        name = TITLES[job["strategy"]]
        if job["status"] != "succeeded":
            failed.append(job)
            print(f"| {name} | {job['status']} |" + " |" * (len(others) + 4))
            continue
        marks = []
        if job["id"] == verdict["winner_job_id"]:
            marks.append("winner")
        if job["id"] == verdict["cheapest_job_id"]:
            marks.append("cheapest within reach")
        shown = f"**{score(headline, r.get('test_' + headline))}**"
        epochs = r.get("epochs_run") if job["strategy"] != "transfer_frozen" else "—"
        print(
            f"| {name}{' (' + ', '.join(marks) + ')' if marks else ''} | {shown} | "
            + " | ".join(score(k, r.get("test_" + k)) for k, _ in others)
            + f" | {r.get('wall_seconds', 0):.0f} s | {r.get('train_examples_per_second', 0):.1f} "
            f"| {r.get('trainable_params', 0):,} | {epochs} |"
        )
    by_id = {row["job"]["id"]: TITLES[row["job"]["strategy"]] for row in verdict["rows"]}
    print(
        f"\nwinner: {by_id.get(verdict['winner_job_id'], '—')}; cheapest within "
        f"{'1 %' if headline in ('mae', 'rmse') else 'one point'}: "
        f"{by_id.get(verdict['cheapest_job_id'], '—')}"
    )
    print(f"verdict: {verdict['summary']}\n", flush=True)
    for job in failed:
        print(f"job {job['id']} ({job['strategy']}) {job['status']}: {job['error']}")
    if failed:
        log = (work / "serve.log").read_text(errors="replace")
        print(f"last lines of {work / 'serve.log'}:\n{log[-4000:]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kaomoji", type=int, default=600, help="multi-label rows")
    parser.add_argument("--reviews", type=int, default=500, help="regression rows")
    parser.add_argument("--sentences", type=int, default=300, help="tagged sentences")
    parser.add_argument("--epochs", type=int, help="for LoRA and full fine-tuning alike")
    parser.add_argument("--only", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--port", type=int, default=8797)
    args = parser.parse_args()
    rows = {
        "multi_label": args.kaomoji,
        "regression": args.reviews,
        "token_classification": args.sentences,
    }
    params = {"epochs": args.epochs} if args.epochs else {}
    work = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    started = time.perf_counter()
    print("load average at the start: {:.2f} {:.2f} {:.2f}\n".format(*os.getloadavg()))
    with serve(ROOT, work, args.port) as client:
        for name in args.only:
            compare(client, work, TASKS[name], rows[name], params)
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"whole bench {time.perf_counter() - started:.0f} s (server log: {work / 'serve.log'})")


if __name__ == "__main__":
    main()
