"""`tuneboard datasets upload`, `jobs run` and `jobs export` against a real `tuneboard serve`
(web server and worker), with an API token made on the account page, as a user would."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from tests.accounts import PASSWORD, sign_in
from tests.factories import labelled_texts, make_tiny_bert, write_csv
from tests.processes import ROOT, embedded_env, free_port, stop_group, wait_for


def test_the_cli_uploads_runs_follows_and_exports(tmp_path: Path) -> None:
    port = free_port()
    make_tiny_bert(tmp_path / "models" / "tiny-bert")
    env = embedded_env(tmp_path, port)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # where `tuneboard login` keeps tokens
    cli = [sys.executable, "-m", "app.cli"]
    made = subprocess.run(
        [*cli, "create-user", "cli", "--password-stdin"],
        input=PASSWORD + "\n", env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [*cli, "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as browser:
                wait_for(lambda: _answers(browser), timeout=90, what="the server")
                sign_in(browser, "cli")
                page = browser.post(
                    "/account/tokens", data={"name": "cli test", "password": PASSWORD}
                ).text
                token = re.search(r'<p class="token">(tb_[^<]+)</p>', page).group(1)
            env_token = {**env, "TUNEBOARD_SERVER": base, "TUNEBOARD_TOKEN": token}

            def run(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [*cli, *args], env=env_token, cwd=tmp_path, capture_output=True,
                    text=True, timeout=240,
                )  # fmt: skip

            csv = write_csv(tmp_path / "topics.csv", labelled_texts(30))
            uploaded = run("datasets", "upload", str(csv), "--name", "topics")
            assert uploaded.returncode == 0, uploaded.stderr
            dataset_id = re.search(r"dataset (\d+):", uploaded.stdout).group(1)
            assert "90 examples, 3 classes" in uploaded.stdout

            bad = tmp_path / "bad.csv"
            bad.write_text("text,label\nonly,one\nclass,one\n")
            refused = run("datasets", "upload", str(bad))
            assert refused.returncode == 2 and "refused: " in refused.stderr  # by the check
            assert "class" in refused.stderr

            job = run(
                "jobs", "run", "--dataset", dataset_id, "--model", "local/tiny-bert",
                "--strategy", "transfer_frozen", "--param", "epochs=8",
                "--param", "learning_rate=0.003",
            )  # fmt: skip
            assert job.returncode == 0, (job.stdout, job.stderr)
            assert "succeeded: test macro f1" in job.stdout and "headline: macro_f1" in job.stdout
            job_id = re.search(r"job (\d+) queued", job.stdout).group(1)

            exported = run("jobs", "export", job_id, "-o", "model.zip")
            assert exported.returncode == 0, exported.stderr
            with zipfile.ZipFile(tmp_path / "model.zip") as archive:
                assert "model/model.safetensors" in archive.namelist()

            no_token = subprocess.run(
                [*cli, "jobs", "export", job_id], env={**env, "TUNEBOARD_SERVER": base},
                cwd=tmp_path, capture_output=True, text=True,
            )  # fmt: skip
            assert no_token.returncode == 2 and "no API token" in no_token.stderr
            _login_then_delete(cli, {**env, "TUNEBOARD_SERVER": base}, tmp_path, job_id)
        finally:
            stop_group(server)


def _login_then_delete(cli: list[str], env: dict[str, str], home: Path, job_id: str) -> None:
    """`tuneboard login` keeps a token (0600) that later commands use without --token or
    TUNEBOARD_TOKEN; `delete` asks first unless --yes; `logout` forgets the token."""

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env=env, cwd=home, input=stdin, capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip

    logged = run("login", "--username", "cli", "--password-stdin", stdin=PASSWORD + "\n")
    assert logged.returncode == 0, logged.stderr
    kept = home / "config" / "tuneboard" / "credentials.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    wrong = run("login", "--username", "cli", "--password-stdin", stdin="not the password\n")
    assert wrong.returncode == 2 and "401" in wrong.stderr

    uploaded = run("datasets", "upload", str(home / "topics.csv"), "--name", "again")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset_id = re.search(r"dataset (\d+)", uploaded.stdout).group(1)
    asked = run("datasets", "delete", dataset_id, stdin="n\n")
    assert asked.returncode == 1 and f"Delete dataset {dataset_id}" in asked.stdout
    assert run("jobs", "delete", job_id, "--yes").returncode == 0
    assert not (home / "data" / "jobs" / job_id).exists()
    gone = run("jobs", "export", job_id)
    assert gone.returncode == 2 and "404" in gone.stderr
    assert run("datasets", "delete", dataset_id, "--yes").returncode == 0
    assert not (home / "data" / "datasets" / dataset_id).exists()

    assert run("logout").returncode == 0 and not kept.exists()
    assert "no API token" in run("datasets", "delete", dataset_id, "--yes").stderr


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/login").status_code == 200
    except httpx.HTTPError:
        return False
