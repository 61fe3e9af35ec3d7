"""Every table, imported together. Foreign keys name other tables by string (a job points at
its comparison), so SQLAlchemy can only flush once all of them are registered on Base."""

from app.accounts.models import ApiToken, User
from app.comparisons.models import Comparison
from app.datasets.models import Dataset
from app.jobs.models import Job, JobLog, MetricPoint
from app.predictions.models import Prediction
from app.workers.models import Worker

__all__ = [
    "ApiToken",
    "Comparison",
    "Dataset",
    "Job",
    "JobLog",
    "MetricPoint",
    "Prediction",
    "User",
    "Worker",
]
