"""The whole JSON API fuzzed from its own OpenAPI schema (schemathesis): no request a signed-in
user can send, valid or not, gets a 5xx. And nothing under /api/v1 answers anyone else.

The schema is served to signed-in users only, so it is fetched through a signed-in TestClient,
and every generated request is sent through that same client: its session cookie and its
X-CSRF-Token header go along, as they do for a browser. The fuzzing user is one of its own,
so what the fuzzer creates or cancels never shows in another test's lists.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.accounts import ensure_user, sign_in
from tests.factories import labelled_texts
from tests.image_factories import colour_zip
from tests.jobs_api import CHECKED

if TYPE_CHECKING:
    import httpx2  # what the TestClient is built on

FUZZ_USER = "fuzzer"
MAX_WAIT_SECONDS = 1  # POST .../predict waits up to `wait` seconds for an answer
EXAMPLES_PER_OPERATION = 25


def app_openapi() -> dict[str, Any]:
    from app.main import app

    return app.openapi()


@pytest.fixture(scope="module")
def fuzzer(ingester: Path) -> Iterator[TestClient]:
    from app.main import app

    ensure_user("root", admin=True)  # the first user: no first-run page in the way
    ensure_user(FUZZ_USER)
    # An address of its own: the fuzzed POST /api/v1/auth/token sends wrong passwords, and
    # failed sign-ins are throttled per client address; other tests sign in as "testclient".
    with TestClient(app, client=("10.77.0.1", 50000)) as client:
        sign_in(client, FUZZ_USER)
        yield client


@pytest.fixture(scope="module")
def openapi(fuzzer: TestClient) -> dict[str, Any]:
    response = fuzzer.get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def known_ids(fuzzer: TestClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """The fuzzing user's own rows, so generated requests reach real objects too: a text and
    an image dataset, and a job and a comparison, cancelled at once (a worker may be running
    in this session; it must not spend its time on them)."""
    body = "text,label\n" + "".join(f"{t},{y}\n" for t, y in labelled_texts(12))
    images = colour_zip(tmp_path_factory.mktemp("fuzz") / "colours.zip", 4)
    datasets = []
    for upload in (("fuzz.csv", body.encode()), ("colours.zip", images.read_bytes())):
        response = fuzzer.post("/api/v1/datasets", files={"file": upload}, params=CHECKED)
        assert response.status_code == 201, response.text
        datasets.append(response.json()["id"])
    models = fuzzer.get("/api/v1/models").json()
    text_model = next(m["id"] for m in models if m["modality"] == "text")  # packaged: no download
    spec = {"dataset_id": datasets[0], "model": text_model}
    response = fuzzer.post("/api/v1/jobs", json={**spec, "strategy": "transfer_frozen"})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    comparison = {**spec, "strategies": ["transfer_frozen", "transfer_top_k"]}
    response = fuzzer.post("/api/v1/comparisons", json=comparison)
    assert response.status_code == 201, response.text
    comparison_id = response.json()["id"]
    for job in fuzzer.get("/api/v1/jobs").json():
        assert fuzzer.post(f"/api/v1/jobs/{job['id']}/cancel").status_code in (200, 409)
    # As the dataset page does: the first thumbnail, which makes the thumbnail folder.
    assert fuzzer.get(f"/api/v1/datasets/{datasets[1]}/images/0/thumbnail").status_code == 200
    return {
        "dataset_id": datasets,
        "job_id": [job_id],
        "comparison_id": [comparison_id],
        "model": [text_model],
    }


@pytest.fixture(scope="module")
def api_schema(openapi: dict[str, Any]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(openapi)


def _form_part(value: tuple[Any, ...]) -> tuple[Any, ...]:
    """requests' (filename, content) part, with content httpx will send: text or bytes."""
    filename, content, *rest = value
    if not isinstance(content, str | bytes):
        content = str(content)
    return (filename, content, *rest)


def send(client: TestClient, case: schemathesis.Case) -> httpx2.Response:
    """Send a generated case through the signed-in TestClient.

    Schemathesis prepares keyword arguments for `requests`; they are translated for httpx here
    (`case.call(session=client)` wants a requests.Session, which a TestClient is not).
    """
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    method, url = kwargs.pop("method"), kwargs.pop("url")
    assert not kwargs.pop("cookies", None), "the schema declares no cookies"
    request: dict[str, Any] = {"headers": kwargs.pop("headers"), "params": kwargs.pop("params")}
    if "json" in kwargs:
        request["json"] = kwargs.pop("json")
    files, data = kwargs.pop("files", None), kwargs.pop("data", None)
    if files:
        request["files"] = [(name, _form_part(part)) for name, part in files]
    if isinstance(data, str | bytes):
        request["content"] = data
    elif data:
        request["data"] = data
    assert not kwargs, f"request arguments not translated: {sorted(kwargs)}"
    try:
        return client.request(method, url, **request)
    except Exception as exc:  # the app raised: TestClient re-raises what would be a 500
        raise AssertionError(
            f"{case.method} {url} raised {type(exc).__name__}: {exc}\nrequest: {request!r}"
        ) from exc


def cap_wait(case: schemathesis.Case) -> None:
    wait = case.query.get("wait") if isinstance(case.query, dict) else None
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_WAIT_SECONDS:
        case.query["wait"] = MAX_WAIT_SECONDS


def case_strategies(
    operation: schemathesis.APIOperation, known: dict[str, list[Any]]
) -> st.SearchStrategy[schemathesis.Case]:
    """Valid and invalid requests with generated ids, and valid ones naming known rows."""
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    names = {p.name: p.location for p in operation.iter_parameters()}
    fixed_path = [n for n, where in names.items() if where == "path" and n in known]
    for choice in itertools.product(*(known[n] for n in fixed_path)) if fixed_path else []:
        strategies.append(
            operation.as_strategy(path_parameters=dict(zip(fixed_path, choice, strict=True)))
        )
    if names.get("dataset_id") == "query":
        for query in itertools.product(known["dataset_id"], [None, *known["model"]]):
            fixed = dict(zip(("dataset_id", "model"), query, strict=True))
            strategies.append(operation.as_strategy(query={k: v for k, v in fixed.items() if v}))
    return st.one_of(strategies)


# Which operations there are is read from the app here, to name one test per operation; the
# schema the tests fuzz is the one /openapi.json serves to the signed-in fuzzer.
OPERATIONS = [
    (method.upper(), path)
    for path, item in app_openapi()["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_never_answers_5xx(
    method: str,
    path: str,
    fuzzer: TestClient,
    api_schema: schemathesis.BaseSchema,
    known_ids: dict[str, list[Any]],
) -> None:
    operation = api_schema[path][method]

    @given(case=case_strategies(operation, known_ids))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case: schemathesis.Case) -> None:
        cap_wait(case)
        case.validate_response(send(fuzzer, case), checks=[not_a_server_error])

    fuzz()


def test_fuzzed_schema_is_the_served_one(openapi: dict[str, Any]) -> None:
    served = [
        (method.upper(), path)
        for path, item in openapi["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert served == OPERATIONS


# Ids a client can send that fit no database integer (PostgreSQL's is 32-bit, SQLite's 64),
# and image numbers whose thumbnail file name would be too long: hypothesis seldom draws
# integers this large, so they are listed.
HUGE_IDS = [2**31, 2**63, -(2**63) - 1, 10**30]
HUGE_NUMBERS = [10**251, 10**300]


def status_of(client: TestClient, method: str, url: str, **kwargs: Any) -> str:
    """The status code, or what the app raised (TestClient re-raises a 500's exception)."""
    try:
        return str(client.request(method, url, **kwargs).status_code)
    except Exception as exc:
        return f"500 {type(exc).__name__}: {str(exc)[:80]}"


def _short(url: str) -> str:
    return re.sub(r"\d{25,}", lambda m: f"<{len(m[0])} digits>", url)


def test_out_of_range_ids_are_client_errors(
    fuzzer: TestClient, known_ids: dict[str, list[Any]]
) -> None:
    image_dataset = known_ids["dataset_id"][1]
    asked: list[tuple[str, str, dict[str, Any]]] = []
    for method, path in OPERATIONS:
        if "{" in path:
            asked += [(method, re.sub(r"\{[^}]+\}", str(i), path), {}) for i in HUGE_IDS]
    asked += [("GET", f"/api/v1/recommendation?model=x&dataset_id={i}", {}) for i in HUGE_IDS]
    for url in ("/api/v1/jobs", "/api/v1/comparisons"):
        body = {"dataset_id": HUGE_IDS[0], "model": "x", "strategy": "auto"}
        if url.endswith("comparisons"):
            del body["strategy"]
        asked.append(("POST", url, {"json": body}))
    thumbnail = f"/api/v1/datasets/{image_dataset}/images/{{}}/thumbnail"
    asked += [("GET", thumbnail.format(n), {}) for n in HUGE_NUMBERS]
    answers = {f"{m} {_short(u)}": status_of(fuzzer, m, u, **kw) for m, u, kw in asked}
    server_errors = {
        request: status for request, status in answers.items() if status.startswith("5")
    }
    assert not server_errors, "\n".join(f"{r} -> {s}" for r, s in server_errors.items())


# --- who may ask --------------------------------------------------------------------------------


# The one operation that takes credentials instead of a session or token: it signs in with
# a password (tuneboard login), so it answers the anonymous, and no cookie rides on it.
SIGN_IN = ("POST", "/api/v1/auth/token")


def _operations(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path with dummy ids) for every signed-in operation in the schema."""
    operations = [
        (method.upper(), "/".join("1" if p.startswith("{") else p for p in path.split("/")))
        for path, item in openapi["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert SIGN_IN in operations
    return [op for op in operations if op != SIGN_IN]


def test_anonymous_requests_get_401_on_every_api_operation(
    anonymous: TestClient, openapi: dict[str, Any]
) -> None:
    operations = _operations(openapi)
    assert len(operations) >= 20 and all(p.startswith("/api/v1/") for _, p in operations)
    assert all("{" not in p for _, p in operations)
    for method, path in operations:
        for headers in ({}, {"Authorization": "Bearer not-a-real-token"}):
            response = anonymous.request(method, path, headers=headers, follow_redirects=False)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "sign in" in response.json()["detail"]
    # A GET of every path, too: the paths that have none answer 405 (routing comes before
    # signing in), never anything but the method list.
    get_paths = {p for m, p in operations if m == "GET"}
    for path in {p for _, p in operations} - get_paths:
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 405, (path, response.status_code)


def test_unsafe_api_requests_need_the_csrf_token(
    fuzzer: TestClient, openapi: dict[str, Any]
) -> None:
    """Signed in with the session cookie, but without the session's token: 403 everywhere."""
    unsafe = [(m, p) for m, p in _operations(openapi) if m in {"POST", "PUT", "PATCH", "DELETE"}]
    assert unsafe
    for method, path in unsafe:
        for token in ("", "not-the-token"):
            response = fuzzer.request(method, path, headers={"X-CSRF-Token": token})
            assert response.status_code == 403, (method, path, token, response.text)


PAGES = [
    "/",
    "/datasets",
    "/datasets/1",
    "/jobs",
    "/jobs/new",
    "/jobs/1",
    "/jobs/1/status",
    "/comparisons",
    "/comparisons/1",
    "/predictions/1/answer",
    "/account",
    "/admin/users",
    "/docs",
]


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_pages_redirect_to_login(anonymous: TestClient, page: str) -> None:
    ensure_user("root", admin=True)  # with a user, the way in is /login (before any, /setup)
    response = anonymous.get(page, follow_redirects=False)
    assert response.status_code == 303, (page, response.status_code)
    assert response.headers["location"] == f"/login?next={quote(page)}"


def test_anonymous_openapi_schema_is_not_served(anonymous: TestClient) -> None:
    ensure_user("root", admin=True)
    response = anonymous.get("/openapi.json", follow_redirects=False)
    # Not under /api/, so it is answered like a page: a redirect to the login page.
    assert response.status_code == 303, response.status_code
    assert response.headers["location"] == "/login?next=/openapi.json"
    assert "paths" not in response.text
