"""Uploading a dataset, or making one from a sample, through the API.

The request stores the files and answers at once: 202 with the dataset in status `checking`
(and its URL in Location); a worker checks it (app/datasets/checking.py), and GET
/datasets/{id} shows the rows read and then `ready` or `invalid` with the reason.

`?wait=SECONDS` keeps the request open until the check ends, without holding a thread (the
row is polled between asyncio sleeps): then 201 with the ready dataset, or 422 with the same
body an upload was answered with when files were checked inside the request (detail; line and
column, member, or errors) — and, as then, no dataset left behind. A check still running at
the deadline is a 202 as without `wait`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.datasets import checking, samples
from app.datasets.models import Dataset, DatasetOut, DatasetStatus
from app.datasets.uploads import StoredUpload, store_upload
from app.db import get_sessionmaker
from app.web.auth import UserDep, check_csrf, current_user
from app.web.deps import SampleDep, SessionDep, SettingsDep

router = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    dependencies=[Depends(current_user), Depends(check_csrf)],  # every route: signed in
)

POLL_SECONDS = 0.2
OptionalForm = Annotated[str | None, Form()]
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=60,
        description="Seconds to wait for the check: then 201 (ready) or 422 (the reason); "
        "202 while it is still checking",
    ),
]
ANSWERS: dict[int | str, dict[str, Any]] = {
    201: {"model": DatasetOut, "description": "Checked and ready (with `wait`)"},
    422: {"description": "The file cannot be a dataset: detail, line, column, member, errors"},
}


@router.post("/datasets", status_code=202, response_model=DatasetOut, responses=ANSWERS)
async def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
    file: Annotated[
        UploadFile,
        File(
            description="CSV, TSV, JSONL or Parquet; a ZIP of image class folders; a CoNLL "
            "or JSONL file of tagged words; or a chat JSONL file of conversations"
        ),
    ],
    validation_file: Annotated[UploadFile | None, File()] = None,
    test_file: Annotated[UploadFile | None, File()] = None,
    name: OptionalForm = None,
    text_column: OptionalForm = None,
    label_column: OptionalForm = None,
    text_pair_column: OptionalForm = None,
    task: Annotated[
        str | None,
        Form(
            description="classification, multi_label, regression or generation (detected "
            "from the label column when absent; generation from a chat JSONL file or a "
            "prompt/response column pair)"
        ),
    ] = None,
    label_separator: Annotated[
        str | None,
        Form(description="multi_label: | ; or , between labels (detected when absent)"),
    ] = None,
    label_columns: Annotated[
        str | None,
        Form(
            description="multi_label as one 0/1 column per label: those columns, "
            "comma-separated (detected when the file has such columns and no label column)"
        ),
    ] = None,
    prompt_column: Annotated[
        str | None,
        Form(
            description="generation: the column of prompts (detected when absent from "
            "prompt/response, instruction/output, question/answer, input/output or "
            "prompt/completion; naming it names the task). A chat JSONL file, one "
            '{"messages": [{"role", "content"}, …]} per line, has no columns to name'
        ),
    ] = None,
    response_column: Annotated[
        str | None,
        Form(description="generation: the column of responses the model learns to write"),
    ] = None,
    system_prompt: Annotated[
        str | None,
        Form(
            description="generation: a system prompt put first in every conversation "
            "that has none of its own"
        ),
    ] = None,
    wait: Wait = 0,
) -> JSONResponse:
    """Store the files and queue their check (202), or with `wait`, answer with its outcome."""
    if not file.filename:
        raise HTTPException(422, "choose a training file to upload")

    def accept() -> int:
        stored: dict[str, StoredUpload] = {}
        try:
            for part, upload in (
                ("train", file),
                ("validation", validation_file),
                ("test", test_file),
            ):
                if upload is not None and upload.filename:
                    stored[part] = store_upload(
                        upload.file,
                        filename=upload.filename,
                        into=settings.uploads_dir,
                        max_bytes=settings.max_upload_bytes,
                    )
            dataset = checking.accept_upload(
                session,
                settings=settings,
                name=name or None,
                train=stored["train"],
                validation=stored.get("validation"),
                test=stored.get("test"),
                text_column=text_column or None,
                label_column=label_column or None,
                text_pair_column=text_pair_column or None,
                task=task or None,
                label_separator=label_separator or None,
                label_columns=[c.strip() for c in label_columns.split(",") if c.strip()]
                if label_columns
                else None,
                prompt_column=prompt_column or None,
                response_column=response_column or None,
                system_prompt=system_prompt or None,
                owner=user,
            )
        finally:
            for upload_copy in stored.values():
                upload_copy.discard()  # moved files are gone already; leftovers are removed
        return dataset.id

    return await answer_when_checked(await run_in_threadpool(accept), wait)


@router.post("/datasets/samples/{sample_id}", status_code=202, response_model=DatasetOut)
async def create_sample(
    sample: SampleDep,
    session: SessionDep,
    settings: SettingsDep,
    user: UserDep,
    wait: Wait = 0,
) -> JSONResponse:
    """A dataset made from a sample, exactly as if its file had been uploaded."""

    def accept() -> int:
        return samples.create_sample(session, settings=settings, sample=sample, owner=user).id

    return await answer_when_checked(await run_in_threadpool(accept), wait)


async def answer_when_checked(dataset_id: int, wait: float) -> JSONResponse:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        dataset = await run_in_threadpool(_load, dataset_id)
        if dataset is None:
            raise HTTPException(404, f"dataset {dataset_id} was deleted while it was checked")
        if dataset.status != DatasetStatus.checking:
            break
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if dataset.status == DatasetStatus.invalid:
        await run_in_threadpool(_forget, dataset_id)
        return JSONResponse(dataset.error or {"detail": "the file was refused"}, status_code=422)
    body = dataset.model_dump(mode="json")
    if dataset.status == DatasetStatus.ready:
        return JSONResponse(body, status_code=201)
    headers = {"Location": f"/api/v1/datasets/{dataset_id}"}
    return JSONResponse(body, status_code=202, headers=headers)


def _load(dataset_id: int) -> DatasetOut | None:
    with get_sessionmaker()() as session:
        dataset = session.get(Dataset, dataset_id)
        return None if dataset is None else DatasetOut.model_validate(dataset)


def _forget(dataset_id: int) -> None:
    """The waiting caller has the reason in its answer: the refused row goes, as a refused
    upload always has (its files went with the check)."""
    with get_sessionmaker()() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is not None and dataset.status == DatasetStatus.invalid:
            session.delete(dataset)
            session.commit()
