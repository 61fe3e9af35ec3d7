"""How the command line words a job (`tuneboard jobs run` and `jobs show`): the headline
first (the score that ranks runs of its task, and which way is better), then the task's other
test scores as the pages show them (shares as percents; losses, perplexity and errors as
numbers), then what the run cost."""

from __future__ import annotations

from typing import Any

from worker.training.tasks.base import SHARES, higher_is_better


def score_text(name: str, value: float) -> str:
    """`name` without its test_/val_ prefix, with the value as people read it."""
    bare = name.removeprefix("test_").removeprefix("val_")
    shown = f"{100 * value:.1f}%" if bare in SHARES else f"{value:.4g}"
    return f"{bare.replace('_', ' ')} {shown}"


def scores_line(results: dict[str, Any]) -> str:
    """ "test <headline> (headline: <name>, <direction>); <the other test scores>"."""
    headline = str(results.get("headline_metric", "test_macro_f1"))
    others = sorted(
        k
        for k, v in results.items()
        if k.startswith("test_") and isinstance(v, float) and k != headline
    )
    better = "higher" if higher_is_better(headline) else "lower"
    line = "test "
    if isinstance(results.get(headline), float):
        line += f"{score_text(headline, results[headline])} "
    line += f"(headline: {headline.removeprefix('test_')}, {better} is better)"
    if others:
        line += "; " + ", ".join(score_text(k, results[k]) for k in others)
    return line


def cost_line(results: dict[str, Any]) -> str:
    """Wall time, throughput (examples/s, and tokens/s where the layers trained on text)
    and peak memory."""
    parts = []
    if isinstance(results.get("wall_seconds"), int | float):
        parts.append(f"wall time {results['wall_seconds']:.1f} s")
    if isinstance(results.get("train_examples_per_second"), int | float):
        parts.append(f"{results['train_examples_per_second']:.1f} training examples/s")
    if isinstance(results.get("train_tokens_per_second"), int | float):
        parts.append(f"{results['train_tokens_per_second']:.0f} training tokens/s")
    if isinstance(results.get("peak_memory_bytes"), int | float):
        parts.append(f"peak memory {results['peak_memory_bytes'] / 1024**2:.0f} MiB")
    return ", ".join(parts)


def job_lines(job: dict[str, Any]) -> list[str]:
    """A job as `jobs show` prints it: what it is, where it stands, and its outcome."""
    strategy = job.get("resolved_strategy") or job["strategy"]
    lines = [
        f"job {job['id']}: {job['status']} · {strategy} · model {job['model']} · "
        f"dataset {job['dataset_id']}"
    ]
    if job.get("strategy_reason"):
        lines.append(f"  auto: {job['strategy_reason']}")
    if job["status"] in ("queued", "running"):
        lines.append(
            f"  {job.get('phase') or job['status']}, {100 * (job.get('progress') or 0):.0f}%"
        )
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    results = job.get("results") or {}
    if job["status"] == "succeeded" and results:
        lines.append("  " + scores_line(results))
        lines.append("  " + cost_line(results))
        if results.get("test_answers"):  # generation: the first test prompt and its answer
            first = results["test_answers"][0]
            lines.append(f"  e.g. {first['text'][:80]!r} → {first['answer'][:80]!r}")
    return lines
