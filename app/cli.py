"""The ``tuneboard`` command: the server, the workers, migrations and users."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app import cli_remote

app = typer.Typer(
    help="Tuneboard: adapt pretrained models from the browser.",
    no_args_is_help=True,
    add_completion=False,
)


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def migrate() -> None:
    """Apply database migrations (safe to run repeatedly)."""
    from app.migrate import upgrade_head

    upgrade_head()


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Default: TUNEBOARD_HOST or 127.0.0.1"),
    port: int | None = typer.Option(None, help="Default: TUNEBOARD_PORT or 8000"),
    worker: bool = typer.Option(
        True,
        "--worker/--no-worker",
        help="Start a training worker and predict workers (questions, batch files) beside the "
        "web server",
    ),
) -> None:
    """Migrate, then serve the dashboard (with embedded workers unless --no-worker)."""
    import uvicorn

    from app.config import get_settings
    from app.migrate import upgrade_head
    from app.web.secret_key import InsecureSecretKey, session_secret

    _logging()
    settings = get_settings()
    try:
        session_secret(settings)  # made (or checked) once, before anything else starts
    except InsecureSecretKey as exc:
        typer.secho(f"refusing to start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    upgrade_head()
    children = []
    if worker:
        # Training and batch files at a lower CPU priority than the web (TUNEBOARD_WORKER_NICE).
        # And a checker for uploads ("ingest"), so one never waits behind a training job.
        for queues in ("cpu", "predict", "predict-batch", "ingest"):
            command = [sys.executable, "-m", "app.cli", "worker", f"--queues={queues}"]
            children.append(subprocess.Popen(command))
    # uvicorn re-raises the signal that stopped it once it has shut down; make SIGTERM an
    # exception, as SIGINT already is, so the worker is stopped below rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = host or settings.host, port or settings.port
    typer.secho(f"Tuneboard is at http://{host}:{port}", fg=typer.colors.GREEN, bold=True)
    try:
        # Keep-alive longer than a reverse proxy's (nginx: 60 s), so the proxy never reuses a
        # connection just as the server closes it (a 502 for the user).
        uvicorn.run("app.main:app", host=host, port=port, log_level="info", timeout_keep_alive=65)
    finally:
        _stop(children)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    # Ctrl-C reaches the workers too (same process group); give them time for a warm
    # shutdown, all at once.
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@app.command("create-user")
def create_user(
    username: str = typer.Argument(..., help="Letters, digits, dots, dashes, underscores"),
    admin: bool = typer.Option(False, "--admin", help="Sees and manages everything"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (scripts)"
    ),
) -> None:
    """Add a user (first run: `tuneboard create-user NAME --admin`)."""
    from app.accounts import service as accounts
    from app.db import get_sessionmaker
    from app.migrate import upgrade_head

    upgrade_head()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with get_sessionmaker()() as session:
        try:
            user = accounts.create_user(
                session, username=username, password=password, is_admin=admin
            )
        except accounts.AccountInvalid as exc:
            typer.secho(f"not created: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from exc
    role = "admin" if user.is_admin else "user"
    typer.secho(f"{role} {user.username} created", fg=typer.colors.GREEN)


@app.command()
def worker(
    queues: str = typer.Option(
        "cpu",
        help="Comma-separated queues to consume: cpu and/or gpu (training), or predict alone "
        "(playground questions), or predict-batch alone (batch files), or ingest alone "
        "(checking uploads)",
    ),
    concurrency: int | None = typer.Option(
        None,
        help="Jobs trained at once by this worker, each holding a device slot (default: one "
        "per GPU on the gpu queue, 1 on cpu; TUNEBOARD_WORKER_DEVICES overrides both)",
    ),
) -> None:
    """Run a Celery worker that trains queued jobs (or answers playground questions)."""
    _logging()
    # The CLI is the one place the web package reaches into the worker, and only to start it.
    from worker.main import run_worker

    run_worker(queues=queues, concurrency=concurrency)


datasets_app = typer.Typer(help="Datasets on a running server (needs an API token).")
jobs_app = typer.Typer(help="Jobs on a running server (needs an API token).")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
cli_remote.register(app, datasets=datasets_app, jobs=jobs_app)  # login, logout, delete
SERVER = typer.Option(None, "--server", help="Default: TUNEBOARD_SERVER or 127.0.0.1:8000")
TOKEN = typer.Option(None, "--token", help="Default: TUNEBOARD_TOKEN, else the login's token")


def _client(server: str | None, token: str | None):  # noqa: ANN202 - app.api_client.Client
    from app.api_client import ApiError, Client

    try:
        return Client(server, token)
    except ApiError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def _refused(exc: Exception) -> typer.Exit:
    typer.secho(f"refused: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="CSV/TSV/JSONL/Parquet or a ZIP of class folders"
        ),
    ],
    name: str | None = typer.Option(None, help="Default: the file name"),
    validation: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    test: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """Upload a dataset, follow its check, and print its id and validation report."""
    from rich.progress import BarColumn, Progress, TextColumn

    from app.api_client import ApiError

    client = _client(server, token)
    try:
        dataset = client.upload_dataset(file, name=name, validation=validation, test=test)
        typer.echo(f"dataset {dataset['id']} uploaded; checking it")
        with Progress(TextColumn("{task.description}"), BarColumn()) as bar:
            task = bar.add_task("checking", total=1.0)

            def show(state: dict[str, Any]) -> None:
                rows = f"checking: {state['rows_read']:,} rows read" if state["rows_read"] else ""
                bar.update(task, completed=float(state["progress"]), description=rows or "checking")

            dataset = client.follow_dataset(dataset["id"], show)
    except ApiError as exc:
        raise _refused(exc) from exc
    if dataset["status"] != "ready":
        _print_refusal(dataset.get("error") or {})
        raise typer.Exit(2)
    typer.echo(
        f"dataset {dataset['id']}: {dataset['name']}, {dataset['num_rows']} examples, "
        f"{len(dataset['label_names'])} classes"
    )
    for warning in dataset["report"].get("warnings", []):
        typer.secho(f"  warning: {warning['message']}", fg=typer.colors.YELLOW)


def _print_refusal(error: dict[str, Any]) -> None:
    """Why the check refused a file: what the API's 422 says (detail, errors, column, member)."""
    typer.secho(f"refused: {error.get('detail', 'the file cannot be used')}", fg="red", err=True)
    for issue in error.get("errors", []):
        lines = ", ".join(map(str, issue.get("lines", [])[:10]))
        where = f" (lines {lines})" if lines else ""
        typer.secho(f"  {issue['message']}{where}", fg=typer.colors.RED, err=True)
    for key in ("column", "member"):
        if error.get(key):
            typer.secho(f"  {key}: {error[key]}", fg=typer.colors.RED, err=True)


@jobs_app.command("run")
def jobs_run(
    dataset: int = typer.Option(..., "--dataset", help="A dataset id"),
    model: str = typer.Option("minilm-l6", help="A catalogue id (GET /api/v1/models)"),
    strategy: str = typer.Option("transfer_frozen", help="transfer_frozen, finetune_full, …"),
    device: str = typer.Option("auto", help="auto, cpu or gpu"),
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A job setting as key=value (a JSON value); repeatable"),
    ] = None,
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Show progress until done"),
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """Queue a job and follow it with a progress bar."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from app.api_client import ApiError

    params: dict[str, object] = {}
    for item in param or []:
        key, _, value = item.partition("=")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    client = _client(server, token)
    body = {"dataset_id": dataset, "model": model, "strategy": strategy, "device": device}
    try:
        job = client.create_job({**body, "params": params})
    except ApiError as exc:
        raise _refused(exc) from exc
    typer.echo(f"job {job['id']} queued on {job['queue']}")
    if not follow:
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("queued", total=1.0)

        def show(state: dict[str, Any]) -> None:
            bar.update(
                task,
                completed=float(state.get("progress") or 0),
                description=str(state.get("phase") or state["status"]),
            )

        final = client.follow(job["id"], show)
    if final["status"] != "succeeded":
        typer.secho(
            f"job {final['id']} {final['status']}: {final.get('error') or ''}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    from app import cli_results

    results = final["results"] or {}
    typer.secho(
        f"job {final['id']} succeeded: {cli_results.scores_line(results)}",
        fg=typer.colors.GREEN,
    )
    typer.echo(f"  {cli_results.cost_line(results)}")
    typer.echo(f"`tuneboard jobs export {final['id']}` downloads it")


@jobs_app.command("show")
def jobs_show(
    job_id: int = typer.Argument(...),
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """A job's status and, when it has succeeded, its headline, test scores and costs."""
    from app import cli_results
    from app.api_client import ApiError

    try:
        job = _client(server, token).job(job_id)
    except ApiError as exc:
        raise _refused(exc) from exc
    for line in cli_results.job_lines(job):
        typer.echo(line)


@jobs_app.command("export")
def jobs_export(
    job_id: int = typer.Argument(...),
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Default: job-<id>.zip")
    ] = None,
    server: str | None = SERVER,
    token: str | None = TOKEN,
) -> None:
    """Download a finished job's model (ZIP)."""
    from app.api_client import ApiError

    client = _client(server, token)
    target = output or Path(f"job-{job_id}.zip")
    try:
        client.export(job_id, target)
    except ApiError as exc:
        raise _refused(exc) from exc
    typer.echo(f"saved {target} ({target.stat().st_size / 1024**2:.1f} MiB)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
