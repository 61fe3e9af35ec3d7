"""Asking a generation job's model: a conversation answered as it is written, or a file of
prompts answered into a CSV.

The question is checked here with the predict worker's own rules (worker/training/
chat_request.py), committed as a Prediction with its conversation and sampling settings in
request.json, and sent to the `predict` lane (a file: `predict-batch`). The worker writes
the answer into the row as it grows (worker/predict_generation.py); the web only reads the
row. As in training, the dataset's system prompt comes first unless the conversation brings
its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from app.config import Settings
from app.datasets.uploads import StoredUpload
from app.jobs.models import Job
from app.predictions.models import Prediction, PredictionKind
from app.predictions.prompt_files import read_prompts
from app.predictions.service import REQUEST, PredictionRefused, check_ready, create
from worker.training.chat_request import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    MAX_CHAT_CHARS,
    MAX_MESSAGES,
    MAX_NEW_TOKENS,
    MAX_TEMPERATURE,
    Conversation,
    Sampling,
    conversation_of,
)
from worker.training.tasks.conversations import with_system

PROMPTS = "prompts.jsonl"  # a batch's prompts as read and checked: {line, prompt, messages}
MAX_PROMPT_ROWS = 2_000  # a batch of more would take hours on a CPU


class SamplingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(
        DEFAULT_MAX_NEW_TOKENS, ge=1, le=MAX_NEW_TOKENS, description="The longest answer, in tokens"
    )
    temperature: float = Field(
        DEFAULT_TEMPERATURE,
        ge=0,
        le=MAX_TEMPERATURE,
        description="0: greedy decoding, the likeliest token each time (the download answers "
        "the same); higher: more varied answers",
    )
    top_p: float = Field(
        DEFAULT_TOP_P,
        gt=0,
        le=1,
        description="Sample from the likeliest tokens whose probabilities reach this share",
    )

    def sampling(self) -> Sampling:
        return Sampling(self.max_new_tokens, self.temperature, self.top_p)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CHAT_CHARS)


class GenerateIn(SamplingIn):
    """One question: a `prompt` (with an optional `system` prompt) or the `messages` of a
    conversation ending with the user's turn; exactly one of the two."""

    prompt: str | None = Field(None, max_length=MAX_CHAT_CHARS)
    system: str | None = Field(None, max_length=MAX_CHAT_CHARS)
    messages: list[ChatMessage] | None = Field(None, max_length=MAX_MESSAGES)

    @model_validator(mode="after")
    def _one_question(self) -> Self:
        self.conversation()  # ChatRefused is a ValueError: a 422 saying what to send
        return self

    def conversation(self) -> Conversation:
        messages = None if self.messages is None else [m.model_dump() for m in self.messages]
        return conversation_of(self.prompt, messages, self.system)


class GenerationOut(BaseModel):
    """An answer as it stands: `done` once finished; `text` grows until then."""

    prediction_id: int
    status: str  # queued (still writing), succeeded or failed
    done: bool
    text: str
    finish_reason: str | None = None  # "stop": the model ended it; "length": max_new_tokens
    tokens: int | None = None
    error: str | None = None

    @classmethod
    def of(cls, prediction: Prediction) -> GenerationOut:
        result = prediction.result or {}
        return cls(
            prediction_id=prediction.id,
            status=prediction.status,
            done=prediction.finished,
            text=str(result.get("text", "")),
            finish_reason=result.get("finish_reason"),
            tokens=result.get("tokens"),
            error=prediction.error,
        )


def _request(**fields: object) -> str:
    return json.dumps({"task": "generation", **fields}, ensure_ascii=False)


def ask_chat(
    session: Session, settings: Settings, job: Job, conversation: Conversation, sampling: Sampling
) -> Prediction:
    check_ready(job, generation=True)
    conversation = with_system(conversation, job.dataset.system_prompt)
    request = _request(messages=conversation, sampling=sampling.to_dict())
    return create(
        session,
        settings,
        job,
        PredictionKind.chat,
        conversation[-1]["content"],
        lambda f: (f / REQUEST).write_text(request, encoding="utf-8"),
    )


def ask_prompts(
    session: Session, settings: Settings, job: Job, upload: StoredUpload, sampling: Sampling
) -> Prediction:
    """A file of prompts (prompt_files.py); the worker writes predictions.csv: line, prompt,
    response and the reason a prompt got none."""
    check_ready(job, generation=True)
    dataset = job.dataset
    column = dataset.text_column if dataset.text_column != "messages" else None
    rows = read_prompts(
        upload.path,
        upload.original_filename,
        prompt_column=column,
        system_prompt=dataset.system_prompt,
    )
    if not rows:
        raise PredictionRefused("the file has no prompts to answer")
    if len(rows) > MAX_PROMPT_ROWS:
        raise PredictionRefused(f"the file has over {MAX_PROMPT_ROWS:,} prompts; split it")

    def write(target: Path) -> None:
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (target / PROMPTS).write_text(lines, encoding="utf-8")
        (target / REQUEST).write_text(_request(sampling=sampling.to_dict()), encoding="utf-8")

    return create(session, settings, job, PredictionKind.batch, upload.original_filename, write)
