"""Accounts and the attacks of ../shared/RELIABILITY.md that the web answers itself, each with
a real crafted request: sign-in and tokens, isolation between users (row 9), CSRF and
foreign origins (row 10), unauthenticated requests (row 11), payloads in labels and names
(row 6), hostile download paths (row 8), quotas (row 14), the secret key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from tests.accounts import PASSWORD, csrf_of, ensure_user, sign_in
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv
from tests.processes import ROOT

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "<div hx-get=/api/v1/jobs hx-trigger=load>x</div>",
]


def _dataset(client: TestClient, tmp_path: Path, name: str = "d") -> dict:
    return upload_csv(client, write_csv(tmp_path / f"{name}.csv", labelled_texts(12)), name=name)


# ---------------------------------------------------------------- sign-in, tokens, setup


def test_sign_in_sets_a_hardened_session_cookie(anonymous: TestClient) -> None:
    ensure_user("carol")
    token = csrf_of(anonymous, "/login")
    wrong = anonymous.post(
        "/login", data={"username": "carol", "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    right = anonymous.post(
        "/login",
        data={
            "username": "carol",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example",
        },
        follow_redirects=False,
    )
    assert right.status_code == 303 and right.headers["location"] == "/"  # no open redirect
    cookie = right.headers["set-cookie"].lower()
    assert "tuneboard_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert anonymous.get("/", follow_redirects=False).status_code == 200
    out = anonymous.post("/logout", data={"csrf_token": csrf_of(anonymous, "/")})
    assert out.status_code == 200 and "Sign in" in out.text
    assert anonymous.get("/", follow_redirects=False).status_code == 303


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(
    client: TestClient, anonymous: TestClient
) -> None:
    page = client.post("/account/tokens", data={"name": "script", "password": PASSWORD}).text
    token = re.search(r'<p class="token">(tb_[^<]+)</p>', page).group(1)
    from app.accounts.models import ApiToken
    from app.db import get_sessionmaker

    with get_sessionmaker()() as session:
        stored = [t.token_hash for t in session.query(ApiToken).all()]
    assert token not in stored and all(len(h) == 64 for h in stored)

    bearer = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/v1/datasets", headers=bearer).status_code == 200
    # A token needs no CSRF token: it is not an ambient credential.
    body = {"dataset_id": 999999, "model": "minilm-l6", "strategy": "transfer_frozen"}
    assert anonymous.post("/api/v1/jobs", json=body, headers=bearer).status_code == 422
    # The newest token on the page is this one (other tests made alice tokens before).
    token_id = re.findall(r"/account/tokens/(\d+)/revoke", client.get("/account").text)[-1]
    client.post(f"/account/tokens/{token_id}/revoke")
    assert anonymous.get("/api/v1/datasets", headers=bearer).status_code == 401
    wrong = {"Authorization": "Bearer tb_not-a-real-token"}
    assert anonymous.get("/api/v1/datasets", headers=wrong).status_code == 401


def test_admin_adds_and_disables_users(admin_client: TestClient, client: TestClient) -> None:
    assert client.get("/admin/users").status_code == 404  # not for ordinary users
    made = admin_client.post(
        "/admin/users", data={"username": "dave", "password": PASSWORD}, follow_redirects=False
    )
    assert made.status_code == 303
    short = admin_client.post("/admin/users", data={"username": "eve", "password": "short"})
    assert short.status_code == 422 and "10 characters" in short.text
    page = admin_client.get("/admin/users").text
    dave = re.search(r'/admin/users/(\d+)/disabled"[^>]*>(?:(?!</form>).)*', page, re.S)
    user_id = re.findall(r"/admin/users/(\d+)/disabled", page)[-1]
    assert dave is not None
    with TestClient(client.app) as browser:
        sign_in(browser, "dave")
        assert browser.get("/api/v1/datasets").status_code == 200
        admin_client.post(f"/admin/users/{user_id}/disabled", data={"disabled": "true"})
        assert browser.get("/api/v1/datasets").status_code == 401  # the session dies with it


def test_first_visit_without_users_offers_setup_then_never_again(tmp_path: Path) -> None:
    """In a fresh database (a new process, as on a first `make run`): every page leads to
    /setup, which makes the first admin; afterwards /setup is gone."""
    code = f"""
import os, sys
os.environ["TUNEBOARD_DATABASE_URL"] = "sqlite:///{tmp_path}/fresh.db"
os.environ["TUNEBOARD_DATA_DIR"] = "{tmp_path}/data"
sys.path.insert(0, {str(ROOT)!r})
from app.migrate import upgrade_head
upgrade_head()
from fastapi.testclient import TestClient
from app.main import app
from tests.accounts import csrf_of
with TestClient(app) as c:
    first = c.get("/", follow_redirects=False)
    assert first.headers["location"] == "/setup", first.headers
    assert c.get("/login", follow_redirects=False).headers["location"] == "/setup"
    made = c.post("/setup", data={{"username": "admin", "password": "a long password",
                  "csrf_token": csrf_of(c, "/setup")}}, follow_redirects=False)
    assert made.status_code == 303, made.text
    assert "admin" in c.get("/").text
    assert c.get("/setup", follow_redirects=False).headers["location"] == "/login"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_create_user_command(tmp_path: Path) -> None:
    env = {
        "TUNEBOARD_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "TUNEBOARD_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
    }
    command = [sys.executable, "-m", "app.cli", "create-user", "ann", "--admin", "--password-stdin"]
    made = subprocess.run(
        command, input=PASSWORD + "\n", env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert made.returncode == 0 and "admin ann created" in made.stdout, made.stderr
    again = subprocess.run(
        command, input=PASSWORD + "\n", env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert again.returncode == 2 and "taken" in again.stderr


# ---------------------------------------------------------------- row 9: isolation


def test_users_cannot_see_each_others_anything(
    client: TestClient, bob_client: TestClient, admin_client: TestClient, tmp_path: Path
) -> None:
    alice_data = _dataset(client, tmp_path, "alice-private")
    job = client.post(
        "/api/v1/jobs",
        json={"dataset_id": alice_data["id"], "model": "minilm-l6", "strategy": "transfer_frozen"},
    ).json()
    comparison = client.post(
        "/api/v1/comparisons",
        json={
            "dataset_id": alice_data["id"],
            "model": "minilm-l6",
            "strategies": ["transfer_frozen", "lp_ft"],
        },
    ).json()
    for job_id in [job["id"], *comparison["job_ids"]]:
        client.post(f"/api/v1/jobs/{job_id}/cancel")  # nothing to train here
    theirs = [
        f"/api/v1/datasets/{alice_data['id']}",
        f"/api/v1/datasets/{alice_data['id']}/images/0/thumbnail",
        f"/api/v1/jobs/{job['id']}",
        f"/api/v1/jobs/{job['id']}/metrics",
        f"/api/v1/jobs/{job['id']}/logs",
        f"/api/v1/jobs/{job['id']}/export",
        f"/api/v1/jobs/{job['id']}/misclassified?true=a&predicted=b",
        f"/api/v1/comparisons/{comparison['id']}",
        f"/datasets/{alice_data['id']}",
        f"/jobs/{job['id']}",
        f"/jobs/{job['id']}/status",
        f"/comparisons/{comparison['id']}",
        f"/api/v1/recommendation?dataset_id={alice_data['id']}&model=minilm-l6",
    ]
    missing = "/api/v1/datasets/987654"
    for url in theirs:
        response = bob_client.get(url)
        assert response.status_code in (404, 422), (url, response.status_code)
        assert "alice-private" not in response.text
    # The same answer as for an id that does not exist: existence is not revealed.
    assert bob_client.get(missing).json()["detail"].replace("987654", "X") == bob_client.get(
        theirs[0]
    ).json()["detail"].replace(str(alice_data["id"]), "X")
    assert bob_client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 404
    assert (
        bob_client.post(f"/api/v1/jobs/{job['id']}/predict", data={"text": "hi"}).status_code == 404
    )
    body = {"dataset_id": alice_data["id"], "model": "minilm-l6", "strategy": "transfer_frozen"}
    assert bob_client.post("/api/v1/jobs", json=body).status_code == 422  # not his dataset
    for listing in ("/api/v1/datasets", "/api/v1/jobs", "/api/v1/comparisons"):
        assert all(
            row.get("owner_id", None) != alice_data["owner_id"]
            for row in bob_client.get(listing).json()
        )
    for page in ("/", "/datasets", "/jobs", "/comparisons", "/jobs/new"):
        assert "alice-private" not in bob_client.get(page).text
    # Admins see everything.
    assert admin_client.get(f"/api/v1/datasets/{alice_data['id']}").status_code == 200
    assert any(d["id"] == alice_data["id"] for d in admin_client.get("/api/v1/datasets").json())


# ---------------------------------------------------------------- row 10: CSRF, origins


def test_unsafe_requests_need_the_csrf_token_and_our_origin(client: TestClient, tmp_path) -> None:
    path = write_csv(tmp_path / "c.csv", labelled_texts(5))
    token = client.headers["X-CSRF-Token"]
    before = len(client.get("/api/v1/datasets").json())
    attempts = [
        {"X-CSRF-Token": ""},
        {"X-CSRF-Token": "forged"},
        {"X-CSRF-Token": token, "Origin": "https://evil.example"},
        {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"},
    ]
    for headers in attempts:
        response = client.post(
            "/api/v1/datasets", files={"file": ("c.csv", path.read_bytes())}, headers=headers
        )
        assert response.status_code == 403, headers
    # A plain form without its hidden field: refused too.
    no_field = client.post("/jobs", data={"dataset_id": "1"}, headers={"X-CSRF-Token": ""})
    assert no_field.status_code == 403
    assert len(client.get("/api/v1/datasets").json()) == before
    ok = client.post(
        "/api/v1/datasets",
        files={"file": ("c.csv", path.read_bytes())},
        headers={"Origin": "http://testserver"},
    )
    assert ok.status_code == 202  # stored; the ingest worker checks it
    # No GET changes state: the unsafe routes answer GET with 405.
    job_id = ok.json()["id"]
    assert client.get(f"/api/v1/jobs/{job_id}/cancel").status_code == 405
    assert client.get("/logout").status_code == 405


# ---------------------------------------------------------------- row 11: unauthenticated


def test_without_signing_in_there_is_only_the_login_page_and_401s(
    anonymous: TestClient, client: TestClient
) -> None:
    for page in ("/", "/datasets", "/jobs", "/jobs/new", "/comparisons", "/account", "/docs"):
        response = anonymous.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    for url in ("/api/v1/datasets", "/api/v1/jobs", "/api/v1/models", "/api/v1/workers",
                "/api/v1/jobs/1/export", "/openapi.json"):  # fmt: skip
        response = anonymous.get(url, follow_redirects=False)
        assert response.status_code in (401, 303), url
        if url.startswith("/api/"):
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/static/app.css").status_code == 200  # the login page's own style


# ---------------------------------------------------------------- row 6: payloads as text


def _elements(html: str) -> list[tuple[str, dict[str, str | None], str]]:
    """(tag, attributes, text inside) of every element, by the standard library's parser."""
    from html.parser import HTMLParser

    found: list[tuple[str, dict[str, str | None], str]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs), ""))

        def handle_data(self, data: str) -> None:
            if found:
                tag, attrs, text = found[-1]
                found[-1] = (tag, attrs, text + data)

    Collect().feed(html)
    return found


def test_payloads_in_labels_and_names_render_as_text(client: TestClient, tmp_path: Path) -> None:
    rows = [(f"text number {i} about things", PAYLOADS[i % 3]) for i in range(30)]
    path = write_csv(tmp_path / "<img src=x onerror=alert(3)>.csv", rows)
    dataset = upload_csv(client, path, name=PAYLOADS[0])
    pages = [
        client.get(f"/datasets/{dataset['id']}").text,
        client.get("/datasets").text,
        client.get("/").text,
        client.get(f"/jobs/new?dataset_id={dataset['id']}").text,
    ]
    for html in pages:
        for payload in PAYLOADS:
            assert payload not in html
        elements = _elements(html)
        # Parsed as a browser would: no element the payloads would have made.
        assert not any(tag == "script" and "alert" in text for tag, _, text in elements)
        assert not any("onerror" in attrs for _, attrs, _ in elements)
        assert not any(attrs.get("hx-trigger") == "load" for _, attrs, _ in elements)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]


# ---------------------------------------------------------------- row 8: download paths


def test_hostile_download_paths_never_reach_the_file_system(client: TestClient) -> None:
    hostile = [
        "/api/v1/jobs/../../../etc/passwd/export",
        "/api/v1/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd/export",
        "/api/v1/jobs/%252e%252e%252fetc/export",
        "/api/v1/jobs/1;rm -rf/export",
        "/api/v1/jobs/1%23/export",
        "/api/v1/jobs/..%5c..%5cwindows/export",
        "/api/v1/jobs/1/export/../../../../etc/passwd",
        "/api/v1/jobs/10/export",  # a sibling id that is not alice's or does not exist
        "/api/v1/predictions/..%2f..%2fpasswd/download",
        "/api/v1/datasets/1/images/..%2f..%2fetc%2fpasswd/thumbnail",
    ]
    for url in hostile:
        response = client.get(url)
        assert response.status_code in (404, 422), (url, response.status_code)
        assert "root:" not in response.text


# ---------------------------------------------------------------- row 14: quotas


def test_quotas_answer_429_and_touch_nothing(tmp_path: Path) -> None:
    """In a process of its own, with tiny quotas: storage, then jobs queued at once."""
    code = f"""
import os, sys
os.environ["TUNEBOARD_DATABASE_URL"] = "sqlite:///{tmp_path}/q.db"
os.environ["TUNEBOARD_DATA_DIR"] = "{tmp_path}/data"
os.environ["TUNEBOARD_BROKER_URL"] = "sqla+sqlite:///{tmp_path}/broker.db"
os.environ["TUNEBOARD_MAX_STORAGE_BYTES_PER_USER"] = "3000"
os.environ["TUNEBOARD_MAX_ACTIVE_JOBS_PER_USER"] = "2"
sys.path.insert(0, {str(ROOT)!r})
from app.migrate import upgrade_head
upgrade_head()
from fastapi.testclient import TestClient
from app.main import app
from tests.accounts import ensure_user, sign_in
ensure_user("q")
rows = [b"some words here %d,%s\\n" % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(60)]
csv = b"text,label\\n" + b"".join(rows)
with TestClient(app) as c:
    sign_in(c, "q")
    first = c.post("/api/v1/datasets", files={{"file": ("a.csv", csv)}})
    assert first.status_code == 202, first.text
    from worker.ingest import check
    check(first.json()["id"])  # the ingest worker's task, run here: no worker in this process
    second = c.post("/api/v1/datasets", files={{"file": ("b.csv", csv * 2)}})
    assert second.status_code == 429 and "storage quota" in second.json()["detail"], second.text
    assert len(c.get("/api/v1/datasets").json()) == 1
    body = {{"dataset_id": first.json()["id"], "model": "minilm-l6", "strategy": "transfer_frozen"}}
    assert c.post("/api/v1/jobs", json=body).status_code == 201
    assert c.post("/api/v1/jobs", json=body).status_code == 201
    third = c.post("/api/v1/jobs", json=body)
    assert third.status_code == 429 and "at most 2" in third.json()["detail"], third.text
    jobs = c.get("/api/v1/jobs").json()
    assert len(jobs) == 2 and all(j["status"] == "queued" for j in jobs)
    assert not list((__import__("pathlib").Path("{tmp_path}") / "data" / "uploads").glob("*"))
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# ---------------------------------------------------------------- row 7: spreadsheet formulas


def test_csv_cells_that_spreadsheets_would_run_are_neutralised(tmp_path: Path) -> None:
    import csv

    from app.predictions.batch_csv import write_csv as write_predictions

    labels = ["=SUM(A1:A9)", "+cmd", "-2+3", "@import", "\tTAB", "plain", "a=b", "42"]
    write_predictions(tmp_path / "p.csv", ["label", "n"], [[label, 1.5] for label in labels])
    with (tmp_path / "p.csv").open(newline="", encoding="utf-8") as f:
        cells = [row["label"] for row in csv.DictReader(f)]
    assert cells[:5] == ["'" + label for label in labels[:5]]
    assert cells[5:] == labels[5:]  # everything else round-trips exactly
