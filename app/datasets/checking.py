"""Uploads are checked off the request path.

The request only stores the files: `accept_upload` makes a dataset row in status `checking`,
moves the files into the dataset's folder, commits and sends the id to the `ingest` queue,
and the answer goes out at once. A worker's `check_dataset` then parses and validates them
(service.examine_tables, image_datasets.examine_images), writing the rows read to the row as
it goes, and leaves the dataset `ready` with its report, or `invalid` with the body a 422
carries (what an upload was answered with when it was checked in the request) and no files,
so nothing invalid stays stored or counts against the storage quota.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.quotas import check_storage
from app.config import Settings
from app.datasets import service
from app.datasets.archives import ArchiveError
from app.datasets.chat_datasets import NAME as GENERATION
from app.datasets.chat_datasets import asked_task, examine_generation, is_chat_upload, is_generation
from app.datasets.folders import dataset_folder, part_paths, stored_name
from app.datasets.image_datasets import drop_archives, examine_images, is_image_archive
from app.datasets.models import Dataset, DatasetStatus, Modality
from app.datasets.parsing import ParseError, detect_format
from app.datasets.tagged_datasets import NAME as TAGGING
from app.datasets.tagged_datasets import examine_tagged, is_tagged_upload
from app.datasets.task_labels import check_task
from app.datasets.uploads import StoredUpload
from app.datasets.validation import DatasetInvalid
from app.queue import CHECK_SOFT_LIMIT_SECONDS, enqueue_check

log = logging.getLogger("tuneboard.datasets")
# A check that is delivered again after its worker died (out of memory, killed) runs once
# more; after that the file is refused rather than let it kill workers for ever.
MAX_CHECK_ATTEMPTS = 2
PROGRESS_SECONDS = 0.5  # the row is written at most this often while a file is read
DATASET_ERRORS = (ParseError, ArchiveError, DatasetInvalid)


def error_report(exc: Exception) -> dict[str, Any]:
    """The 422 body of a file that cannot be a dataset (app/web/errors.py has the same)."""
    if isinstance(exc, ParseError):
        return {"detail": str(exc), "line": exc.line, "column": exc.column}
    if isinstance(exc, ArchiveError):
        return {"detail": str(exc), "member": exc.member}
    if isinstance(exc, DatasetInvalid):
        return {"detail": str(exc), "errors": [e.__dict__ for e in exc.errors]}
    raise exc


def accept_upload(
    session: Session,
    *,
    settings: Settings,
    name: str | None,
    train: StoredUpload,
    validation: StoredUpload | None = None,
    test: StoredUpload | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    task: str | None = None,
    label_separator: str | None = None,
    label_columns: list[str] | None = None,
    prompt_column: str | None = None,
    response_column: str | None = None,
    system_prompt: str | None = None,
    owner: User,
) -> Dataset:
    """Keep stored uploads as a dataset to be checked, and send it to a checker. Only what
    the first bytes tell is decided here: a table format or a ZIP of images (ParseError
    otherwise), and the storage quota (QuotaExceeded). The caller removes leftover uploads."""
    uploads = {p: u for p, u in (("train", train), ("validation", validation), ("test", test))}
    parts = {part: upload for part, upload in uploads.items() if upload is not None}
    check_storage(session, settings, owner, sum(u.size for u in parts.values()))
    task = asked_task(task, prompt_column, response_column)
    check_task(task, label_separator)
    images = is_image_archive(train)
    if images and not all(is_image_archive(u) for u in parts.values()):
        raise ParseError(
            "the training file is a ZIP of images but a validation or test file is not; "
            "upload class-folder ZIPs for every part"
        )
    formats: dict[str, str] = {}
    kinds: dict[str, str] = {}  # table, entity-tagging or chat: the same for every part
    for part, upload in parts.items():
        with upload.path.open("rb") as f:
            head = f.read(4096)
        chat = not images and is_chat_upload(head, task)
        tagged = None if images or chat else is_tagged_upload(upload.original_filename, head, task)
        kinds[part] = "a chat" if chat else "an entity-tagging" if tagged else "a table"
        if kinds[part] != kinds["train"]:
            raise ParseError(
                f"the training file is {kinds['train']} file but the {part} file is not; "
                "upload the same kind for every part"
            )
        if images:
            formats[part] = "zip"
        elif chat:
            formats[part] = "jsonl"
        else:
            formats[part] = tagged or detect_format(upload.original_filename, head).value
    if kinds["train"] == "an entity-tagging":
        task = TAGGING
    elif kinds["train"] == "a chat":
        task, prompt_column, response_column = GENERATION, None, None  # no columns to choose
    dataset = Dataset(
        owner_id=owner.id,
        name=(name or train.original_filename).strip()[:200] or "dataset",
        modality=Modality.image if images else Modality.text,
        format=formats["train"],
        files={part: stored_name(part, fmt) for part, fmt in formats.items()},
        original_filename=train.original_filename,
        size_bytes=sum(u.size for u in parts.values()),
        content_hash=hashlib.sha256("".join(u.sha256 for u in parts.values()).encode()).hexdigest(),
        # What the upload asked for ("": detect); the check replaces them with its choice.
        columns=[],
        text_column=prompt_column or text_column or "",
        text_pair_column=text_pair_column or None,
        label_column=response_column or label_column or "",
        task=task or "",  # "": detect
        label_separator=label_separator,
        label_columns=label_columns or None,
        system_prompt=(system_prompt or "").strip() or None,
        num_rows=0,
        label_names=[],
        report={},
        preview=[],
        status=DatasetStatus.checking,
    )
    session.add(dataset)
    session.flush()  # the id names the folder
    folder = dataset_folder(settings, dataset.id)
    try:
        folder.mkdir(parents=True, exist_ok=False)
        for part, upload in parts.items():
            shutil.move(upload.path, folder / dataset.files[part])
        session.commit()  # the worker must see the row before the message arrives
    except BaseException:
        session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    enqueue_check(dataset.id)
    return dataset


class _Progress:
    """Rows read and the share of the files read, on the row at most every PROGRESS_SECONDS."""

    def __init__(self, session: Session, dataset: Dataset, sizes: dict[str, int]) -> None:
        self.session, self.dataset_id = session, dataset.id
        total = max(1, sum(sizes.values()))
        self.weights = {part: size / total for part, size in sizes.items()}
        # Parts are read in order: the share of the files in the parts before each one.
        self.offsets = {p: sum(list(self.weights.values())[:i]) for i, p in enumerate(sizes)}
        self.rows_done: dict[str, int] = {}
        self.last = 0.0

    def __call__(self, part: str, rows: int, share: float) -> None:
        self.rows_done[part] = rows
        if time.monotonic() - self.last < PROGRESS_SECONDS:
            return
        self.last = time.monotonic()
        done = self.offsets[part] + share * self.weights[part]
        self.session.execute(
            update(Dataset)
            .where(Dataset.id == self.dataset_id)
            .values(rows_read=sum(self.rows_done.values()), progress=min(done, 0.99))
        )
        self.session.commit()


def check_dataset(session: Session, *, settings: Settings, dataset_id: int) -> Dataset | None:
    """Parse and validate a dataset in `checking`; it ends `ready` or `invalid`. Returns None
    for one that is gone or already checked (a message delivered twice). Errors other than a
    bad file also end it `invalid` (with a reason that asks for a new upload) and go on up."""
    claimed = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.status == DatasetStatus.checking)
        .values(check_attempts=Dataset.check_attempts + 1)
    )
    session.commit()
    dataset = session.get(Dataset, dataset_id)
    if not claimed.rowcount or dataset is None:  # type: ignore[attr-defined]
        return None
    folder = dataset_folder(settings, dataset.id)
    if dataset.check_attempts > MAX_CHECK_ATTEMPTS:
        detail = (
            "checking this file stopped its worker twice (out of memory, or killed); "
            "upload a smaller file, or split it"
        )
        return _invalid(session, dataset_id, folder, {"detail": detail})
    paths = part_paths(settings, dataset.id, dataset.files)
    try:
        sizes = {part: path.stat().st_size for part, path in paths.items()}
        progress = _Progress(session, dataset, sizes)
        asked = bool(dataset.text_column or dataset.label_column or dataset.label_columns)
        if dataset.task == TAGGING:
            fields = examine_tagged(paths)
        elif dataset.modality == Modality.text and is_generation(
            dataset.task, asked, paths["train"]
        ):
            fields = examine_generation(
                paths,
                settings=settings,
                prompt_column=dataset.text_column or None,
                response_column=dataset.label_column or None,
                system_prompt=dataset.system_prompt,
                row_cap=settings.max_dataset_rows,
                on_progress=progress,
            )
        elif dataset.modality == Modality.image:
            fields = examine_images(
                folder,
                list(paths),
                settings,
                progress,
                task=dataset.task or None,
                label_separator=dataset.label_separator,
            )
        else:
            fields = service.examine_tables(
                paths,
                text_column=dataset.text_column or None,
                label_column=dataset.label_column or None,
                text_pair_column=dataset.text_pair_column,
                task=dataset.task or None,
                label_separator=dataset.label_separator,
                label_columns=dataset.label_columns,
                row_cap=settings.max_dataset_rows,
                on_progress=progress,
            )
    except DATASET_ERRORS as exc:
        return _invalid(session, dataset_id, folder, error_report(exc))
    except SoftTimeLimitExceeded:
        detail = f"checking the file took over {CHECK_SOFT_LIMIT_SECONDS // 60} minutes; split it"
        return _invalid(session, dataset_id, folder, {"detail": detail})
    except Exception as exc:  # a bug or an outage, not the file: loud in the log, clear here
        detail = (
            f"the file could not be checked ({type(exc).__name__}); upload it again, and "
            "tell an admin if it happens again"
        )
        _invalid(session, dataset_id, folder, {"detail": detail})
        raise
    values = {**fields, "status": DatasetStatus.ready, "progress": 1.0}
    done = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.status == DatasetStatus.checking)
        .values(rows_read=fields["num_rows"], **values)
    )
    session.commit()
    if not done.rowcount:  # type: ignore[attr-defined]
        # Deleted while it was checked: what the check extracted goes too.
        shutil.rmtree(folder, ignore_errors=True)
        return None
    session.refresh(dataset)
    if dataset.modality == Modality.image:
        drop_archives(folder)
    return dataset


def _invalid(
    session: Session, dataset_id: int, folder: Path, report: dict[str, Any]
) -> Dataset | None:
    """Refused: the reason on the row, the files gone (nothing invalid stays stored)."""
    session.rollback()  # whatever a failed progress write left half done
    # Files first: whoever sees `invalid` may delete the row at once, and SQLite may give
    # its id (and so its folder name) to the next upload.
    shutil.rmtree(folder, ignore_errors=True)
    session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        .values(status=DatasetStatus.invalid, error=report, progress=1.0)
    )
    session.commit()
    log.info("dataset %s is invalid: %s", dataset_id, report.get("detail"))
    session.expunge_all()
    return session.get(Dataset, dataset_id)  # None if it was deleted meanwhile
