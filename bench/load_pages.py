"""Page loads and progress polling under load, through the real product: `tuneboard serve`
(web server and its embedded workers) on a temporary SQLite database and broker, BBC News
uploaded through the JSON API.

    .venv/bin/python bench/load_pages.py [--clients 50] [--seconds 60] [--port 0] [--think 0]
        [--compare-priority | --nice N [N ...]] [--torch-threads N]

1. Idle: one client requests a fixed mix of pages and API reads one after another (no job
   running; the job URLs point at a small frozen-features job that has already finished).
2. Load: a full fine-tuning job trains on BBC News; once it is running, its training rate
   is taken alone for a few seconds, then `--clients` asyncio clients each upload a small
   CSV and then loop over the same mix (the job URLs now point at the training job: the
   detail page, its htmx status and outcome fragments, its JSON and its metric series) for
   `--seconds`: back to back (`--think 0`), or each polling once every `--think` seconds
   from a random phase of its own, as browser tabs do.
3. Idle again, after the training job is cancelled (same database contents as under load).

Prints per phase the requests, errors (any status >= 400, exception or 30 s timeout) and
p50/p95/p99 latency, load/idle ratios, requests/s, every route's latency, whether every
upload became a dataset, and the job's progress and training rate before and during load.

`--nice 0 10 idle` runs all of it once per worker priority, one after another on fresh
servers (`--compare-priority` is exactly that: the workers at the web server's CPU priority,
as before they gave way; at nice 10 alone; then the default, nice 10 in Linux's idle
scheduling class), and ends with a table of them: p99
load/idle, for all requests and for the polling alone (the 50 uploads all arrive in the first
second of the load, and no idle request is an upload), and what each costs the training job
(its steps/s under load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from signed_in import CSRF_META, PASSWORD, USER, create_user  # bench/signed_in.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import bbc_news_rows  # noqa: E402 - needs ROOT on the path

TIMEOUT = 30.0
# Read by every client in turn; "{d}" is BBC News's dataset id, "{j}" the polled job's id.
MIX = (
    "/",
    "/datasets",
    "/datasets/{d}",
    "/jobs",
    "/jobs/{j}",
    "/jobs/{j}/status",
    "/jobs/{j}/outcome",
    "/api/v1/jobs",
    "/api/v1/jobs/{j}",
    "/api/v1/jobs/{j}/metrics",
)


@dataclass
class Sample:
    route: str
    at: float  # time.monotonic() when sent
    seconds: float
    error: str | None  # None: answered with a 2xx or 3xx


def to_csv(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([("text", "label"), *rows])
    return out.getvalue().encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **extra,
        "TUNEBOARD_DATABASE_URL": f"sqlite:///{tmp}/db.sqlite",
        "TUNEBOARD_BROKER_URL": f"sqla+sqlite:///{tmp}/broker.sqlite",
        "TUNEBOARD_DATA_DIR": str(tmp / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    create_user(ROOT, env)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=(tmp / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers are stopped with it
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # any worker left behind
    server.wait()


async def wait_job(
    client: httpx.AsyncClient, job_id: int, until: tuple[str, ...], limit: float = 900
) -> dict:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        if job["status"] in until or job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job['status']} after {limit:.0f} s")


async def timed(client: httpx.AsyncClient, route: str, method: str, url: str, **kw) -> Sample:
    at, started = time.monotonic(), time.perf_counter()
    try:
        response = await client.request(method, url, **kw)
        error = None if response.status_code < 400 else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__} {exc}".strip()
    return Sample(route, at, time.perf_counter() - started, error)


async def idle_phase(client: httpx.AsyncClient, n: int, dataset: int, job: int) -> list[Sample]:
    for route in MIX:  # untimed: the first render of each template pays one-off costs
        await client.get(route.format(d=dataset, j=job))
    return [
        await timed(client, r, "GET", r.format(d=dataset, j=job))
        for r in (MIX[i % len(MIX)] for i in range(n))
    ]


async def load_client(
    client: httpx.AsyncClient,
    number: int,
    upload: bytes,
    dataset: int,
    job: int,
    deadline: float,
    think: float,
) -> list[Sample]:
    files = {"file": (f"upload-{number}.csv", upload, "text/csv")}
    samples = [
        await timed(client, "POST /api/v1/datasets", "POST", "/api/v1/datasets", files=files)
    ]
    i = number  # clients start at different places in the mix
    # With think time, each client polls once every `think` seconds from a phase of its own,
    # as browser tabs opened at different moments do. (Sleeping `think` after each answer
    # kept all 50 in step once their uploads were through: 50 requests at the same instant
    # every 2 s, whose last waits for the other 49 however idle the machine is.)
    next_at = time.monotonic() + random.Random(number).uniform(0, think)
    while time.monotonic() < deadline:
        if think:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += think
        route = MIX[i % len(MIX)]
        samples.append(await timed(client, route, "GET", route.format(d=dataset, j=job)))
        i += 1
    return samples


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def summary(samples: list[Sample]) -> tuple[float, float, float]:
    seconds = [s.seconds for s in samples]
    return percentile(seconds, 50), percentile(seconds, 95), percentile(seconds, 99)


async def sign_in_async(client: httpx.AsyncClient) -> None:
    """bench/signed_in.py's sign-in for the one shared async client (all load clients share
    its session, as tabs of one browser would)."""

    async def csrf(page: str) -> str:
        match = CSRF_META.search((await client.get(page)).text)
        if match is None:
            raise RuntimeError(f"no CSRF token on {page}")
        return match.group(1)

    form = {"username": USER, "password": PASSWORD, "csrf_token": await csrf("/login")}
    response = await client.post("/login", data=form)
    if response.status_code not in (200, 303):
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    client.headers["X-CSRF-Token"] = await csrf("/account")


async def run(args: argparse.Namespace, base_url: str) -> tuple[int, dict[str, float]]:
    """Returns the number of errors, and the figures the comparison table needs."""
    rows = bbc_news_rows()  # tests/factories.py: all 2,225, shuffled by seed 0
    # uvicorn closes a connection idle for 5 s, and httpx's default keep-alive expiry is also
    # 5 s: a pooled connection reused just as the server closes it fails with ReadError before
    # the server reads the request (about 10 in 6,000 requests here). Browsers retry those;
    # expiring idle connections at 2 s keeps the race out of the measurement.
    limits = httpx.Limits(
        max_connections=args.clients + 8,
        max_keepalive_connections=args.clients + 8,
        keepalive_expiry=2.0,
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, limits=limits) as client:
        for _ in range(240):
            try:
                if (await client.get("/login")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError("tuneboard serve did not answer GET /login within 120 s")
        await sign_in_async(client)

        async def upload(name: str, data: bytes) -> int:
            response = await client.post(  # answered once the ingest worker has checked it
                "/api/v1/datasets", files={"file": (name, data, "text/csv")}, params={"wait": 60}
            )
            response.raise_for_status()
            return response.json()["id"]

        bbc = await upload("bbc.csv", to_csv(rows))
        small = await upload("bbc-small.csv", to_csv(rows[:100]))
        tiny = (
            await client.post(
                "/api/v1/jobs",
                json={
                    "dataset_id": small,
                    "model": "minilm-l6",
                    "strategy": "transfer_frozen",
                    "params": {"epochs": 2, "max_length": 32},
                },
            )
        ).json()
        tiny = await wait_job(client, tiny["id"], ())
        print(
            f"BBC News, {len(rows)} articles (dataset {bbc}); idle job URLs: job {tiny['id']}, "
            f"a finished frozen-features job on 100 rows ({tiny['status']})"
        )
        machine = [os.getloadavg()[0]]  # other processes on the machine skew every figure
        idle = await idle_phase(client, args.idle_requests, bbc, tiny["id"])

        job = (
            await client.post(
                "/api/v1/jobs",
                json={
                    "dataset_id": bbc,
                    "model": "minilm-l6",
                    "strategy": "finetune_full",
                    "params": {"epochs": args.epochs, "max_length": 64},
                },
            )
        ).json()
        job_id = job["id"]
        while True:  # running and past loading and tokenising: training steps are counted
            job = await wait_job(client, job_id, ("running",))
            if job["status"] != "running" or job["step"] > 0:
                break
            await asyncio.sleep(0.5)
        if job["status"] != "running":
            raise RuntimeError(f"training job {job_id} ended before the load: {job['status']}")
        t0, before = time.monotonic(), job
        await asyncio.sleep(args.train_window)
        alone = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        alone_rate = (alone["step"] - before["step"]) / (time.monotonic() - t0)

        upload_rows = to_csv(rows[100:140])
        started, cpu_started = time.monotonic(), time.process_time()
        deadline = started + args.seconds
        per_client = await asyncio.gather(
            *(
                load_client(client, n, upload_rows, bbc, job_id, deadline, args.think)
                for n in range(args.clients)
            )
        )
        load_wall = time.monotonic() - started
        client_cpu = (time.process_time() - cpu_started) / load_wall
        load = [s for samples in per_client for s in samples]
        machine.append(os.getloadavg()[0])
        after = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        load_rate = (after["step"] - alone["step"]) / load_wall

        n_datasets = len((await client.get("/api/v1/datasets")).json())
        uploads = [s for s in load if s.route.startswith("POST")]
        answered = sum(s.error is None for s in uploads)

        await client.post(f"/api/v1/jobs/{job_id}/cancel")
        cancelled = await wait_job(client, job_id, (), limit=180)
        idle_after = await idle_phase(client, args.idle_requests, bbc, job_id)
        machine.append(os.getloadavg()[0])

    print(
        f"\n{args.clients} clients for {args.seconds:.0f} s (think time {args.think:g} s) while "
        f"job {job_id} fine-tunes MiniLM on BBC News (finetune_full, max_length 64)\n"
    )
    base = summary(idle)
    print("| phase | requests | errors | p50 ms | p95 ms | p99 ms | requests/s |")
    print("|---|---|---|---|---|---|---|")
    for name, samples, wall in (
        ("idle, 1 client", idle, sum(s.seconds for s in idle)),
        (f"load, {args.clients} clients", load, load_wall),
        ("idle again, job cancelled", idle_after, sum(s.seconds for s in idle_after)),
    ):
        p = summary(samples)
        errors = sum(s.error is not None for s in samples)
        print(
            f"| {name} | {len(samples)} | {errors} | {p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} "
            f"| {len(samples) / wall:.0f} |"
        )
    p = summary(load)
    polling = [s for s in load if not s.route.startswith("POST")]
    polls = summary(polling)
    # The 50 uploads all arrive in the load's first second and take seconds to parse; polls
    # sent once they are through show what a job's training alone does to the pages.
    uploads_done = max(s.at + s.seconds for s in load if s.route.startswith("POST"))
    steady = summary([s for s in polling if s.at >= uploads_done])
    print(
        f"\nload / idle: p50 {p[0] / base[0]:.1f}×, p95 {p[1] / base[1]:.1f}×, "
        f"p99 {p[2] / base[2]:.1f}×; polling alone (no uploads): p99 {polls[2]:.1f} ms, "
        f"{polls[2] / base[2]:.1f}×; polling after the last upload was answered "
        f"({uploads_done - started:.1f} s into the load): p50 {steady[0]:.1f}, p95 "
        f"{steady[1]:.1f}, p99 {steady[2]:.1f} ms, {steady[2] / base[2]:.1f}× idle p99"
    )

    print("\n| route | idle p50 ms | load p50 ms | load p95 ms | load p99 ms | load errors |")
    print("|---|---|---|---|---|---|")
    for route in ("POST /api/v1/datasets", *MIX):
        mine = [s for s in load if s.route == route]
        idle_mine = [s.seconds for s in idle if s.route == route]
        idle_p50 = f"{percentile(idle_mine, 50):.1f}" if idle_mine else "–"
        q = summary(mine)
        errors = sum(s.error is not None for s in mine)
        print(f"| {route} | {idle_p50} | {q[0]:.1f} | {q[1]:.1f} | {q[2]:.1f} | {errors} |")

    figures = {
        "idle_p99": base[2],
        "load_p99": p[2],
        "poll_p99": polls[2],
        "steady_p99": steady[2],
        "errors": sum(s.error is not None for s in load),
        "alone_rate": alone_rate,
        "load_rate": load_rate,
    }
    failed = [s for s in idle + load + idle_after if s.error]
    for s in failed[:20]:
        print(
            f"  error at {s.at - started:+.1f} s from the start of the load, after "
            f"{s.seconds * 1000:.0f} ms: {s.route}: {s.error}"
        )
    print(
        f"\nuploads: {len(uploads)} sent, {answered} answered (202: stored, to be checked), "
        f"datasets now {n_datasets} "
        f"(expected {2 + len(uploads)}): {2 + len(uploads) - n_datasets} lost"
    )
    print(
        f"job {job_id}: step {before['step']} → {alone['step']} alone ({alone_rate:.2f} steps/s "
        f"over {args.train_window:.0f} s) → {after['step']} at the end of the load "
        f"({load_rate:.2f} steps/s, {load_rate / alone_rate:.0%} of alone); progress "
        f"{alone['progress']:.1%} → {after['progress']:.1%}, still {after['status']}; "
        f"then {cancelled['status']}"
    )
    print(
        f"1-minute load average ({os.cpu_count()} CPUs): {machine[0]:.1f} before the idle phase, "
        f"{machine[1]:.1f} at the end of the load, {machine[2]:.1f} after the second idle phase; "
        f"this load generator itself used {client_cpu:.0%} of one CPU during the load"
    )
    return len(failed), figures


def once(args: argparse.Namespace, extra: dict[str, str]) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="tuneboard-load-"))
    port = args.port or free_port()
    server = start_server(tmp, port, extra)
    errors = 0
    try:
        errors, figures = asyncio.run(run(args, f"http://127.0.0.1:{port}"))
    except BaseException:
        print(f"--- last lines of {tmp / 'serve.log'}:", file=sys.stderr)
        print((tmp / "serve.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        stop_server(server)
        if errors:
            kept = Path(tempfile.gettempdir()) / f"tuneboard-load-{port}.log"
            shutil.copy(tmp / "serve.log", kept)
            print(f"server log kept: {kept}")
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def compare(results: list[tuple[str, dict[str, float]]]) -> None:
    base = results[0][1]
    print(f"\n## Comparison ({len(results)} servers, one after another)\n")
    print(
        "| workers | idle p99 ms | load p99 ms: all / polling / polling after the uploads "
        "| the same / idle p99 | load errors | training alone, steps/s | under load, steps/s "
        "| under load vs first row |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, f in results:
        ratios = " / ".join(
            f"{f[k] / f['idle_p99']:.1f}×" for k in ("load_p99", "poll_p99", "steady_p99")
        )
        print(
            f"| {name} | {f['idle_p99']:.1f} | {f['load_p99']:.1f} / {f['poll_p99']:.1f} / "
            f"{f['steady_p99']:.1f} | {ratios} | {f['errors']:.0f} | {f['alone_rate']:.2f} "
            f"| {f['load_rate']:.2f} | {f['load_rate'] / base['load_rate']:.0%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--think", type=float, default=0, help="seconds between requests")
    parser.add_argument("--idle-requests", type=int, default=200)
    parser.add_argument("--train-window", type=float, default=20, help="job alone, seconds")
    parser.add_argument("--epochs", type=int, default=3, help="enough to outlast the load")
    parser.add_argument(
        "--compare-priority",
        action="store_true",
        help="--nice 0 10 idle: workers at the web's CPU priority, at nice 10 alone, then at "
        "the default (nice 10 in the idle scheduling class)",
    )
    parser.add_argument(
        "--nice",
        nargs="+",
        help="TUNEBOARD_WORKER_NICE values (the idle class off), or 'idle' for the default",
    )
    parser.add_argument("--torch-threads", type=int, help="TUNEBOARD_TORCH_THREADS")
    args = parser.parse_args()

    common = (
        {} if args.torch_threads is None else {"TUNEBOARD_TORCH_THREADS": str(args.torch_threads)}
    )
    nices = ["0", "10", "idle"] if args.compare_priority else args.nice or [None]
    variants = [_priority(n, common) for n in nices]
    results = []
    for name, extra in variants:
        if len(variants) > 1:
            print(f"\n# Workers: {name}\n", flush=True)
        results.append((name, once(args, extra)))
    if len(results) > 1:
        compare(results)


def _priority(nice: str | None, common: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A variant's name and environment: the defaults, idle (the default, named), or a nice
    value with the idle scheduling class off."""
    if nice is None:
        return "default settings", common
    if nice == "idle":
        return "TUNEBOARD_WORKER_SCHED_IDLE=true (nice 10)", {
            **common,
            "TUNEBOARD_WORKER_SCHED_IDLE": "true",
        }
    env = {"TUNEBOARD_WORKER_NICE": str(int(nice)), "TUNEBOARD_WORKER_SCHED_IDLE": "false"}
    return f"TUNEBOARD_WORKER_NICE={int(nice)}", {**common, **env}


if __name__ == "__main__":
    main()
