"""The whole JSON API fuzzed from its own OpenAPI schema (schemathesis): no request a signed-in
user can send, valid or not, gets a 5xx. And nothing under /api/v1 answers anyone else.

The schema is served to signed-in users only, so it is fetched through a signed-in TestClient,
and every generated request is sent through that same client: its session cookie and its
X-CSRF-Token header go along, as they do for a browser. The fuzzing user is one of its own,
so what the fuzzer creates or cancels never shows in another test's lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx2
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

FUZZ_USER = "fuzzer"
MAX_WAIT_SECONDS = 1  # POST .../predict waits up to `wait` seconds for an answer
EXAMPLES_PER_OPERATION = 25


def app_openapi() -> dict[str, Any]:
    from app.main import app

    return app.openapi()


@pytest.fixture(scope="module")
def fuzzer() -> Iterator[TestClient]:
    from app.main import app

    ensure_user("root", admin=True)  # the first user: no first-run page in the way
    ensure_user(FUZZ_USER)
    with TestClient(app) as client:
        sign_in(client, FUZZ_USER)
        yield client


@pytest.fixture(scope="module")
def openapi(fuzzer: TestClient) -> dict[str, Any]:
    response = fuzzer.get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def known_ids(
    fuzzer: TestClient, tiny_model_id: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[int]]:
    """The fuzzing user's own rows, so generated requests reach real objects too: a text and
    an image dataset, and a job and a comparison, cancelled at once (a worker may be running
    in this session; it must not spend its time on them)."""
    body = "text,label\n" + "".join(f"{t},{y}\n" for t, y in labelled_texts(12))
    images = colour_zip(tmp_path_factory.mktemp("fuzz") / "colours.zip", 4)
    datasets = []
    for upload in (("fuzz.csv", body.encode()), ("colours.zip", images.read_bytes())):
        response = fuzzer.post("/api/v1/datasets", files={"file": upload})
        assert response.status_code == 201, response.text
        datasets.append(response.json()["id"])
    spec = {"dataset_id": datasets[0], "model": tiny_model_id}
    response = fuzzer.post("/api/v1/jobs", json={**spec, "strategy": "transfer_frozen"})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    comparison = {**spec, "strategies": ["transfer_frozen", "transfer_top_k"]}
    response = fuzzer.post("/api/v1/comparisons", json=comparison)
    assert response.status_code == 201, response.text
    comparison_id = response.json()["id"]
    for job in fuzzer.get("/api/v1/jobs").json():
        assert fuzzer.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
    return {
        "dataset_id": datasets,
        "job_id": [job_id],
        "comparison_id": [comparison_id],
        "number": [0],
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
            f"{case.method} {url} raised {type(exc).__name__}: {exc}\n"
            f"request: {request!r}\nas curl (add the session cookie and X-CSRF-Token): "
            f"{case.as_curl_command()}"
        ) from exc


def cap_wait(case: schemathesis.Case) -> None:
    wait = case.query.get("wait") if isinstance(case.query, dict) else None
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_WAIT_SECONDS:
        case.query["wait"] = MAX_WAIT_SECONDS


def case_strategies(
    operation: schemathesis.APIOperation, known: dict[str, list[int]]
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
        strategies += [operation.as_strategy(query={"dataset_id": i}) for i in known["dataset_id"]]
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
    known_ids: dict[str, list[int]],
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


# --- who may ask --------------------------------------------------------------------------------


def _operations(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path with dummy ids) for every operation in the schema."""
    return [
        (method.upper(), "/".join("1" if p.startswith("{") else p for p in path.split("/")))
        for path, item in openapi["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


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
        if method == "GET":  # a GET of every path too, as a browser or a script would start
            continue
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code in (401, 405), (path, response.status_code)


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
