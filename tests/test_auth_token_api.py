"""POST /api/v1/auth/token, what `tuneboard login` calls: a password makes a token; a token
never does; no session cookie is read or made."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.accounts import PASSWORD, ensure_user


def test_a_password_makes_a_token_that_works(anonymous: TestClient) -> None:
    ensure_user("dora")
    made = anonymous.post(
        "/api/v1/auth/token", json={"username": "dora", "password": PASSWORD, "name": "laptop"}
    )
    assert made.status_code == 201, made.text
    assert "set-cookie" not in made.headers and not anonymous.cookies
    token = made.json()["token"]
    assert token.startswith("tb_") and made.json()["username"] == "dora"
    bearer = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/v1/datasets", headers=bearer).status_code == 200

    # A token cannot mint another, with or without a password beside it.
    body = {"username": "dora", "password": PASSWORD}
    assert anonymous.post("/api/v1/auth/token", json=body, headers=bearer).status_code == 403
    wrong = anonymous.post("/api/v1/auth/token", json={**body, "password": "not it at all"})
    assert wrong.status_code == 401 and "token" not in wrong.json()
    unknown = anonymous.post("/api/v1/auth/token", json={**body, "username": "nobody-here"})
    assert unknown.status_code == 401
    assert anonymous.post("/api/v1/auth/token", json={"username": "dora"}).status_code == 422


def test_a_signed_in_session_is_no_credential_here(client: TestClient) -> None:
    """The alice session (cookie and CSRF header) without her password gets nothing."""
    response = client.post("/api/v1/auth/token", json={"username": "alice", "password": "x"})
    assert response.status_code == 401
