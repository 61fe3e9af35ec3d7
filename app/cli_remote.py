"""`tuneboard login` and `logout`, and the `delete` commands: the part of the command line
that keeps a token for a server and removes things on it. app/cli.py adds them with
`register`, beside `datasets upload` and `jobs run`."""

from __future__ import annotations

import socket
import sys

import typer

SERVER = typer.Option(None, "--server", help="Default: TUNEBOARD_SERVER or 127.0.0.1:8000")
TOKEN = typer.Option(None, "--token", help="Default: TUNEBOARD_TOKEN, else the login's token")
YES = typer.Option(False, "--yes", "-y", help="Do not ask first (scripts)")


def _server(server: str | None) -> str:
    from app.api_client import DEFAULT_SERVER
    from app.config import ClientSettings

    return (server or ClientSettings().server or DEFAULT_SERVER).rstrip("/")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def login(
    server: str | None = SERVER,
    username: str | None = typer.Option(None, "--username", help="Asked for when not given"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (scripts)"
    ),
) -> None:
    """Make an API token with your password, kept (mode 0600) for later commands."""
    from app import credentials
    from app.config import ClientSettings

    base = _server(server)
    name = username or typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    label = f"tuneboard login on {socket.gethostname()}"
    try:
        made = credentials.request_token(base, username=name, password=password, name=label)
    except credentials.LoginRefused as exc:
        raise _fail(f"not logged in: {exc}") from exc
    path = ClientSettings().credentials_file
    credentials.save(path, base, token=made["token"], username=made["username"])
    typer.secho(f"logged in to {base} as {made['username']}; token kept in {path}", fg="green")


def logout(server: str | None = SERVER) -> None:
    """Forget the token kept for this server (revoke it on the account page to end it)."""
    from app import credentials
    from app.config import ClientSettings

    base = _server(server)
    if credentials.forget(ClientSettings().credentials_file, base):
        typer.echo(f"forgot the token for {base}; revoke it on the account page to end it")
    else:
        typer.echo(f"no token kept for {base}")


WHAT_GOES = {
    "datasets": "its jobs with their exported models and checkpoints, its comparisons and "
    "predictions",
    "jobs": "its checkpoints, exported model, metrics, log and predictions",
    "comparisons": "its jobs with their exported models and checkpoints (the dataset stays)",
    "predictions": "its input and results",
}


def _deleter(kind: str):  # noqa: ANN202 - a typer command
    noun = kind.removesuffix("s")

    def delete(
        object_id: int = typer.Argument(..., help=f"The {noun}'s id"),
        yes: bool = YES,
        server: str | None = SERVER,
        token: str | None = TOKEN,
    ) -> None:
        from app.api_client import ApiError, Client

        if not yes:
            typer.confirm(f"Delete {noun} {object_id} with {WHAT_GOES[kind]}?", abort=True)
        try:
            Client(server, token).delete(kind, object_id)
        except ApiError as exc:
            raise _fail(f"refused: {exc}") from exc
        typer.echo(f"deleted {noun} {object_id}")

    delete.__doc__ = f"Delete a {noun} with {WHAT_GOES[kind]}; a running job is stopped first."
    return delete


def register(app: typer.Typer, *, datasets: typer.Typer, jobs: typer.Typer) -> None:
    """Add login and logout to `app`, `delete` to the datasets and jobs groups, and the
    comparisons and predictions groups, which have only that."""
    app.command()(login)
    app.command()(logout)
    groups = {"datasets": datasets, "jobs": jobs}
    for kind in ("comparisons", "predictions"):
        groups[kind] = typer.Typer(help=f"{kind.capitalize()} on a running server.")
        app.add_typer(groups[kind], name=kind)
    for kind, group in groups.items():
        group.command("delete")(_deleter(kind))
