"""Running the training code as a group of gloo ranks in a test: torch.distributed's elastic
launcher (what torchrun runs) spawns the processes, each joins the group and trains its
share; rank 0's reporter comes back. A module of its own so spawned processes can import it."""

from __future__ import annotations

import uuid
from typing import Any

from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from worker.training.distributed import QuietReporter, join, leave
from worker.training.reporting import Cancelled, MemoryReporter
from worker.training.spec import TrainSpec


def rank_main(
    spec: TrainSpec, cancel_after_steps: int | None, device: str, backend: str | None
) -> dict[str, Any]:
    group = join(device, backend)
    reporter = MemoryReporter(cancel_after_steps=cancel_after_steps)
    outcome: dict[str, Any] = {"cancelled": False, "metrics": None}
    try:
        result = run(spec, reporter if group.main else QuietReporter(reporter), group)
        outcome["metrics"] = result.metrics if result is not None else None
    except Cancelled:
        outcome["cancelled"] = True
    finally:
        leave(group)
    return outcome | {"logs": reporter.logs, "metric_events": reporter.metric_events}


def run(spec, reporter, group):  # noqa: ANN001, ANN201 - imported late: torch in the rank
    from worker.training.run import run_rank

    return run_rank(spec, reporter, group)


def train_in_group(
    spec: TrainSpec,
    ranks: int,
    *,
    cancel_after_steps: int | None = None,
    device: str = "cpu",
    backend: str | None = None,
) -> dict[str, Any]:
    """Rank 0's outcome: metrics (None when cancelled), logs and metric events. `device`
    and `backend` as distributed.join takes them (the spec's own device: the same)."""
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.2,
        # fork: the ranks start with torch already imported (seconds less per launch on
        # two cores); nothing in the test process has made a process group to inherit.
        start_method="fork",
    )
    return elastic_launch(config, rank_main)(spec, cancel_after_steps, device, backend)[0]
