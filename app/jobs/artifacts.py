"""Files a job leaves in its folder, found by job id alone (never by a path from a request)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.config import Settings
from worker.training import job_files


def job_dir(settings: Settings, job_id: int) -> Path:
    """The one folder of a job, by id: everything it writes (worker/training/job_files.py)."""
    return settings.jobs_dir / str(int(job_id))


def export_path(settings: Settings, job_id: int) -> Path:
    return job_files.export_zip(job_dir(settings, job_id))


def is_sentence_transformers(settings: Settings, job_id: int) -> bool:
    """Whether the job's export is a sentence-transformers folder (a text model that declares
    its pooling), which loads with SentenceTransformer rather than a transformers class."""
    return (job_files.exported_model(job_dir(settings, job_id)) / "modules.json").is_file()


def feature_cache_dir(settings: Settings, content_hash: str) -> Path:
    """Where features computed from one dataset's files are cached: a folder per content
    hash, shared by every dataset holding the same files, so that deleting the last of them
    can remove its features (app/deletion.py)."""
    if not content_hash.isalnum():  # a sha256 hex digest; never a path
        raise ValueError(f"not a content hash: {content_hash!r}")
    return settings.feature_cache_dir / content_hash


def sample_answers(settings: Settings, job_id: int) -> dict[str, Any] | None:
    """A generation job's samples.json (generation_samples.SampleBook: the sample prompts
    with their references, the base model's answers and each epoch's), or None before
    the base model has answered. The file is replaced whole, so a read never sees half."""
    path = job_files.samples(job_dir(settings, job_id))
    if not path.is_file():
        return None
    samples: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return samples


def label_mistakes(
    settings: Settings, job_id: int, *, label: str, kind: str, limit: int = 50
) -> list[dict[str, Any]]:
    """Multi-label validation rows where `label` was missed (kind "missed": true, not
    predicted) or wrongly given ("extra"), the most confident mistakes first."""
    if kind not in ("missed", "extra"):
        raise ValueError("kind must be 'missed' or 'extra'")
    path = job_files.validation_predictions(job_dir(settings, job_id))
    if not path.is_file():
        return []
    rows = []
    for r in json.loads(path.read_text()):
        truth, predicted = label in r.get("true", []), label in r.get("predicted", [])
        if (kind == "missed" and truth and not predicted) or (
            kind == "extra" and predicted and not truth
        ):
            rows.append(r)
    # Missed: the lowest scores first; wrongly given: the highest.
    rows.sort(key=lambda r: r["scores"].get(label, 0.0), reverse=kind == "extra")
    return rows[:limit]


def tagged_sentences(settings: Settings, job_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    """An entity-tagging job's validation sentences as marked segments, the ones with the
    most mistakes first: (words, type, "found" | "missed" | "wrong"), or (word, None, "")."""
    path = job_files.validation_predictions(job_dir(settings, job_id))
    if not path.is_file():
        return []
    rows = []
    for r in json.loads(path.read_text()):
        truth = {tuple(e) for e in r["true"]}
        predicted = {tuple(e) for e in r["predicted"]}
        starts: dict[int, tuple[str, int, str]] = {}
        # Where entities overlap, what was found wins over what was missed over what is wrong.
        for kind, spans in (
            ("wrong", predicted - truth),
            ("missed", truth - predicted),
            ("found", truth & predicted),
        ):
            for label, start, end in spans:
                starts[start] = (label, end, kind)
        tokens, i = r["tokens"], 0
        segments: list[tuple[str, str | None, str]] = []
        while i < len(tokens):
            if i in starts:
                label, end, kind = starts[i]
                segments.append((" ".join(tokens[i:end]), label, kind))
                i = end
            else:
                segments.append((tokens[i], None, ""))
                i += 1
        rows.append({"index": r["index"], "segments": segments, "mistakes": len(truth ^ predicted)})
    rows.sort(key=lambda row: -row["mistakes"])
    return rows[:limit]


def misclassified(
    settings: Settings, job_id: int, *, true: str, predicted: str, limit: int = 50
) -> list[dict[str, Any]]:
    """Validation rows of one confusion-matrix cell, most confident mistakes first."""
    path = job_files.validation_predictions(job_dir(settings, job_id))
    if not path.is_file():
        return []
    rows = [
        r for r in json.loads(path.read_text()) if r["true"] == true and r["predicted"] == predicted
    ]
    rows.sort(key=lambda r: -r.get("confidence", 0.0))
    return rows[:limit]
