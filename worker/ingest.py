"""The `datasets.check` task: parse and validate an upload the web server has stored.

It runs on the `ingest` queue, in a worker of its own (worker/main.py), so a check never
waits behind a training job; its pool process is replaced after a check that grew it past a
ceiling, so the memory a big file takes while it is read goes back to the system. What a
check does is app/datasets/checking.py; this is only who runs it.
"""

from __future__ import annotations

import logging

from app.config import get_settings
from app.datasets import checking
from app.db import get_sessionmaker
from app.queue import CHECK_TASK, celery_app

log = logging.getLogger("tuneboard.ingest")


# acks_late: a check whose process dies is delivered again (checking.MAX_CHECK_ATTEMPTS).
@celery_app.task(name=CHECK_TASK, acks_late=True)
def check(dataset_id: int) -> None:
    with get_sessionmaker()() as session:
        dataset = checking.check_dataset(session, settings=get_settings(), dataset_id=dataset_id)
        if dataset is None:
            log.info("dataset %s is not waiting for a check (gone or done); skipping", dataset_id)
        else:
            log.info("dataset %s checked: %s", dataset_id, dataset.status)
