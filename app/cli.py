"""The ``tuneboard`` command: the server, the workers, migrations and users."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys

import typer

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
        help="Start a training worker and a predict worker beside the web server",
    ),
) -> None:
    """Migrate, then serve the dashboard (with embedded workers unless --no-worker)."""
    import uvicorn

    from app.config import InsecureSecretKey, check_secret_key, get_settings
    from app.migrate import upgrade_head

    _logging()
    settings = get_settings()
    try:
        check_secret_key(settings)
    except InsecureSecretKey as exc:
        typer.secho(f"refusing to start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    upgrade_head()
    children = []
    if worker:
        for queues in ("cpu", "predict"):
            command = [sys.executable, "-m", "app.cli", "worker", f"--queues={queues}"]
            children.append(subprocess.Popen(command))
    # uvicorn re-raises the signal that stopped it once it has shut down; make SIGTERM an
    # exception, as SIGINT already is, so the worker is stopped below rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = host or settings.host, port or settings.port
    typer.secho(f"Tuneboard is at http://{host}:{port}", fg=typer.colors.GREEN, bold=True)
    try:
        uvicorn.run("app.main:app", host=host, port=port, log_level="info")
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
        "(the playground)",
    ),
    concurrency: int = typer.Option(1, help="Jobs trained at once by this worker"),
) -> None:
    """Run a Celery worker that trains queued jobs (or answers playground questions)."""
    _logging()
    # The CLI is the one place the web package reaches into the worker, and only to start it.
    from worker.main import run_worker

    run_worker(queues=queues, concurrency=concurrency)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
