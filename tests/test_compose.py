"""docker-compose.yml and the Dockerfile agree with the code. Docker is not needed: the files
are parsed, and every setting, command and queue they name is looked up in the code itself."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy.engine import make_url

import app.cli
from app import catalog
from app.config import Settings
from app.queue import (
    INGEST_QUEUE,
    PREDICT_BATCH_QUEUE,
    PREDICT_QUEUE,
    PREDICT_QUEUES,
    celery_app,
)

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
ENV_PREFIX: str = Settings.model_config["env_prefix"]

try:  # the queue names the web routes training jobs to
    from app.workers.service import CPU_QUEUE, GPU_QUEUE
except ImportError:  # pragma: no cover - before worker routing existed
    CPU_QUEUE, GPU_QUEUE = "cpu", "gpu"
TRAINING_QUEUES = {celery_app.conf.task_default_queue, CPU_QUEUE, GPU_QUEUE}
KNOWN_QUEUES = TRAINING_QUEUES | set(PREDICT_QUEUES) | {INGEST_QUEUE}

TUNEBOARD = {
    "web",
    "worker-cpu",
    "worker-gpu",
    "worker-predict",
    "worker-predict-batch",
    "worker-ingest",
}
STORES = {"postgres", "redis"}


# --- reading the files ---------------------------------------------------------------------


def interpolate(value: str) -> str:
    """Compose's variable interpolation with no variables set: ${X:-default} and ${X-default}
    give the default, $$ is a literal $."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        assert match.group("sep"), f"{match.group(0)} has no default: `config` would need it set"
        return match.group("default")

    pattern = r"\$\$|\$\{(?P<name>\w+)(?:(?P<sep>:?-)(?P<default>[^}]*))?\}"
    return re.sub(pattern, one, value)


def command(service: str) -> list[str]:
    cmd = SERVICES[service].get("command")
    assert cmd is not None, f"service {service!r} has no command"
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def mounts(service: str) -> dict[str, str]:
    """Container path -> source (a named volume, or a host path) for each volume."""
    found = {}
    for entry in SERVICES[service].get("volumes") or []:
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        found[str(PurePosixPath(target))] = source
    return found


def gpu_reservations(service: str) -> list[dict[str, Any]]:
    resources = (SERVICES[service].get("deploy") or {}).get("resources") or {}
    devices = (resources.get("reservations") or {}).get("devices") or []
    return [d for d in devices if "gpu" in d.get("capabilities", []) or d.get("driver")]


def healthcheck_test(service: str) -> str:
    check = SERVICES[service].get("healthcheck") or {}
    test = check.get("test")
    assert test and not check.get("disable"), f"service {service!r} has no healthcheck"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), f"{service}: healthcheck test {test!r}"
        return " ".join(test[1:])
    return test


def parse_cli(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a `tuneboard ...` command line with the real typer app, without running it:
    (subcommand, its parsed parameters)."""
    assert argv, "empty command"
    assert argv[0] in SCRIPTS, f"{argv[0]!r} is not a script of pyproject.toml ({sorted(SCRIPTS)})"
    assert SCRIPTS[argv[0]] == "app.cli:main", f"{argv[0]} runs {SCRIPTS[argv[0]]}, not app.cli"
    group = typer.main.get_command(app.cli.app)
    try:
        ctx = group.make_context(argv[0], argv[1:])
        name, sub, rest = group.resolve_command(ctx, argv[1:])  # type: ignore[attr-defined]
        params = sub.make_context(name, rest, parent=ctx).params
    except typer.TyperException as error:
        message = getattr(error, "format_message", error.__str__)()
        pytest.fail(f"`{shlex.join(argv)}` does not parse: {message}")
    return name, params


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def pip_installs() -> list[tuple[int, list[str]]]:
    """(instruction index, arguments after `pip install`) for each pip install in a RUN."""
    found = []
    for index, (instruction, args) in enumerate(dockerfile()):
        if instruction != "RUN":
            continue
        for part in re.split(r"&&|;", args):
            words = shlex.split(part)
            for at in range(len(words) - 1):
                if words[at].endswith("pip") and words[at + 1] == "install":
                    found.append((index, words[at + 2 :]))
    return found


def dockerfile_cmd() -> list[str]:
    cmds = [args for instruction, args in dockerfile() if instruction == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    return json.loads(cmds[-1])


def worker_queues() -> dict[str, set[str]]:
    queues = {}
    for service in SERVICES:
        if service in TUNEBOARD or "build" in SERVICES[service]:
            name, params = parse_cli(command(service))
            if name == "worker":
                queues[service] = {q.strip() for q in params["queues"].split(",") if q.strip()}
    return queues


# --- services and images ---------------------------------------------------------------------


def test_services_present() -> None:
    missing = (TUNEBOARD | STORES) - set(SERVICES)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_third_party_images_are_pinned() -> None:
    images = {s: SERVICES[s]["image"] for s in SERVICES if "build" not in SERVICES[s]}
    from_images = [args.split()[0] for instruction, args in dockerfile() if instruction == "FROM"]
    for where, image in [*images.items(), *(("Dockerfile FROM", i) for i in from_images)]:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{where}: image {image!r} is not pinned to a version"
        assert tag[0].isdigit(), f"{where}: image {image!r} is not pinned to a major version"
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")


def test_tuneboard_services_share_one_image() -> None:
    ours = {
        s: (SERVICES[s]["build"], SERVICES[s].get("image"))
        for s in SERVICES
        if "build" in SERVICES[s]
    }
    missing = TUNEBOARD - set(ours)
    assert not missing, f"not built from the Dockerfile: {sorted(missing)}"
    assert len({repr(b) for b in ours.values()}) == 1, (
        f"Tuneboard services differ in build/image: {ours}"
    )
    for service in set(SERVICES) - set(ours):
        if "command" in SERVICES[service]:
            assert command(service)[0] not in SCRIPTS, (
                f"{service} runs Tuneboard but is not built from the Dockerfile"
            )


# --- settings --------------------------------------------------------------------------------


def test_every_tuneboard_variable_is_a_setting() -> None:
    for service in SERVICES:
        for name in environment(service):
            if name.startswith(ENV_PREFIX):
                field = name.removeprefix(ENV_PREFIX).lower()
                assert field in Settings.model_fields, (
                    f"{service}: {name} is not a setting (no field {field!r} in "
                    "app.config.Settings); Tuneboard would ignore it"
                )


def test_tuneboard_services_share_one_environment() -> None:
    needed = {f"{ENV_PREFIX}{f.upper()}" for f in ("database_url", "broker_url", "data_dir")}
    envs = {s: environment(s) for s in SERVICES if "build" in SERVICES[s]}
    for service, env in envs.items():
        assert needed <= set(env), f"{service} lacks {sorted(needed - set(env))}"
    assert len({tuple(sorted(env.items())) for env in envs.values()}) == 1, (
        f"Tuneboard services are configured differently: {envs}"
    )


def test_database_url_points_at_the_postgres_service() -> None:
    raw = environment("web")[f"{ENV_PREFIX}DATABASE_URL"]
    url = make_url(interpolate(raw))
    assert url.drivername == "postgresql+psycopg", (
        f"TUNEBOARD_DATABASE_URL {raw!r} is not postgresql+psycopg (psycopg 3 is what "
        "pyproject.toml installs)"
    )
    assert url.host in SERVICES and SERVICES[url.host]["image"].startswith("postgres:"), (
        f"TUNEBOARD_DATABASE_URL's host {url.host!r} is not the postgres service"
    )
    assert url.port in (None, 5432), f"postgres listens on 5432, not {url.port}"
    pg = {k: interpolate(v) for k, v in environment(url.host).items()}
    assert url.username == pg["POSTGRES_USER"], (
        f"database user {url.username!r} is not POSTGRES_USER {pg['POSTGRES_USER']!r}"
    )
    assert url.password == pg["POSTGRES_PASSWORD"], "database password is not POSTGRES_PASSWORD"
    assert url.database == pg.get("POSTGRES_DB", pg["POSTGRES_USER"]), (
        f"database {url.database!r} is not POSTGRES_DB {pg.get('POSTGRES_DB')!r}"
    )
    # The same interpolation on both sides, so setting POSTGRES_PASSWORD changes both.
    password_source = urlsplit(raw).password
    assert password_source == environment(url.host)["POSTGRES_PASSWORD"], (
        f"the URL's password {password_source!r} is not written as POSTGRES_PASSWORD is"
    )


def test_broker_url_points_at_the_redis_service() -> None:
    url = urlsplit(interpolate(environment("web")[f"{ENV_PREFIX}BROKER_URL"]))
    assert url.scheme == "redis", f"TUNEBOARD_BROKER_URL scheme is {url.scheme!r}, not redis"
    assert url.hostname in SERVICES and SERVICES[url.hostname]["image"].startswith("redis:"), (
        f"TUNEBOARD_BROKER_URL's host {url.hostname!r} is not the redis service"
    )
    assert url.port in (None, 6379), f"redis listens on 6379, not {url.port}"


# --- commands and queues ---------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(TUNEBOARD))
def test_commands_are_real_cli_commands(service: str) -> None:
    parse_cli(command(service))


def test_dockerfile_cmd_is_a_real_cli_command() -> None:
    name, params = parse_cli(dockerfile_cmd())
    assert name == "serve" and params["host"] == "0.0.0.0", (
        "the image's default command should serve on all interfaces (a container's loopback "
        f"is unreachable from outside): {dockerfile_cmd()}"
    )


def test_the_image_starts_in_production_mode() -> None:
    """RELIABILITY row 24: the image as shipped must not run as a development install (no
    Secure cookies, no HSTS). Its session key comes from its data volume, never the source."""
    env = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    assert env.get("TUNEBOARD_ENV") == "production", env
    assert env.get("TUNEBOARD_DATA_DIR") == "/data"
    assert "TUNEBOARD_SECRET_KEY" not in env
    for service in TUNEBOARD:
        assert environment(service)["TUNEBOARD_ENV"] == "production", service
    hosts = json.loads(interpolate(environment("web")["TUNEBOARD_ALLOWED_HOSTS"]))
    assert "localhost" in hosts and "*" not in hosts


def test_web_serves_without_embedded_workers_on_a_published_port() -> None:
    name, params = parse_cli(command("web"))
    assert name == "serve", f"web runs `{name}`, not serve"
    assert params["worker"] is False, "web must run --no-worker: the workers are services"
    assert params["host"] == "0.0.0.0", "web must listen on 0.0.0.0 to be reachable"
    port = params["port"] or Settings.model_fields["port"].default
    published = [str(p).rsplit(":", 1)[-1].split("/")[0] for p in SERVICES["web"]["ports"]]
    assert str(port) in published, f"web serves on {port} but publishes {published}"
    assert port == 8000, f"web serves on {port}, not 8000"


def test_worker_queues_are_known_and_predict_is_alone() -> None:
    queues = worker_queues()
    assert {"worker-cpu", "worker-gpu", "worker-predict"} <= set(queues), queues
    for service, names in queues.items():
        assert names <= KNOWN_QUEUES, f"{service} consumes unknown queues {names - KNOWN_QUEUES}"
        for lane in (*PREDICT_QUEUES, INGEST_QUEUE):
            if lane in names:
                assert names == {lane}, (
                    f"{service}: the {lane!r} queue needs a worker of its own "
                    f"(worker/main.py refuses it beside {sorted(names - {lane})})"
                )
    consumed = set().union(*queues.values())
    assert consumed >= KNOWN_QUEUES, f"no worker consumes {sorted(KNOWN_QUEUES - consumed)}"
    assert queues["worker-cpu"] == {CPU_QUEUE}
    assert queues["worker-gpu"] == {GPU_QUEUE}
    assert queues["worker-predict"] == {PREDICT_QUEUE}
    assert queues["worker-predict-batch"] == {PREDICT_BATCH_QUEUE}
    assert queues["worker-ingest"] == {INGEST_QUEUE}


def test_gpu_worker_takes_every_gpu_as_its_device_slots() -> None:
    for service, names in worker_queues().items():
        if GPU_QUEUE in names:
            _, params = parse_cli(command(service))
            # No --concurrency: the worker has one slot per GPU it sees (device_slots.py).
            assert params["concurrency"] is None, f"{service}: slots come from its GPUs"
            reserved = gpu_reservations(service)
            assert len(reserved) == 1, f"{service} reserves {reserved}, not one NVIDIA entry"
            device = reserved[0]
            assert device.get("driver") == "nvidia", f"{service}: driver {device.get('driver')}"
            assert device.get("count") == "all", f"{service}: count {device.get('count')}"
            assert "gpu" in device.get("capabilities", []), f"{service}: no gpu capability"
    for service in SERVICES:
        if GPU_QUEUE not in worker_queues().get(service, set()):
            assert not gpu_reservations(service), f"{service} reserves a GPU it never uses"
            assert "gpus" not in SERVICES[service], f"{service} asks for GPUs it never uses"


# --- volumes ---------------------------------------------------------------------------------


def test_data_volume_is_shared_at_the_data_dir() -> None:
    data_dir = environment("web")[f"{ENV_PREFIX}DATA_DIR"]
    assert PurePosixPath(data_dir).is_absolute(), f"TUNEBOARD_DATA_DIR {data_dir!r} is relative"
    sources = {}
    for service in sorted(TUNEBOARD | set(worker_queues())):
        found = mounts(service)
        assert str(PurePosixPath(data_dir)) in found, (
            f"{service} has no volume at TUNEBOARD_DATA_DIR {data_dir!r} (mounts: {found})"
        )
        sources[service] = found[str(PurePosixPath(data_dir))]
    assert len(set(sources.values())) == 1, f"services see different data volumes: {sources}"
    assert next(iter(sources.values())) in (COMPOSE.get("volumes") or {}), (
        f"the data volume {sources} is not a named volume"
    )


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for service in SERVICES:
        for target, source in mounts(service).items():
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{service}: volume {source!r} ({target}) undeclared"


def test_stores_keep_their_data() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for service, path in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        source = mounts(service).get(path)
        assert source in declared, f"{service} has no named volume at {path}: data lost on rm"


def test_redis_keeps_and_never_evicts_messages() -> None:
    argv = command("redis")
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "redis-server", f"redis runs {argv[0]!r}"
    assert options.get("--appendonly") == "yes", (
        "redis needs --appendonly yes: queued jobs would be lost when it restarts"
    )
    assert options.get("--maxmemory-policy") == "noeviction", (
        "redis needs --maxmemory-policy noeviction: evicting a queued message loses a job"
    )


# --- start order and health ------------------------------------------------------------------


def test_tuneboard_services_wait_for_healthy_stores() -> None:
    for service in sorted(TUNEBOARD | set(worker_queues())):
        depends = SERVICES[service].get("depends_on") or {}
        assert isinstance(depends, dict), f"{service}: depends_on without conditions"
        for store in sorted(STORES):
            condition = (depends.get(store) or {}).get("condition")
            assert condition == "service_healthy", (
                f"{service} does not wait for {store} to be healthy ({condition=})"
            )
    assert "pg_isready" in healthcheck_test("postgres")
    assert "redis-cli" in healthcheck_test("redis") and "ping" in healthcheck_test("redis")


def test_dependencies_exist_and_one_shots_do_not_restart() -> None:
    for service, spec in SERVICES.items():
        for target, how in (spec.get("depends_on") or {}).items():
            assert target in SERVICES, f"{service} depends on unknown service {target!r}"
            condition = (how or {}).get("condition")
            if condition == "service_healthy":
                healthcheck_test(target)
            if condition == "service_completed_successfully":
                assert SERVICES[target].get("restart", "no") in ("no", "on-failure"), (
                    f"{target} is awaited to complete but restarts after it does"
                )
                assert parse_cli(command(target))[0] == "migrate", target


def test_web_healthcheck_asks_the_server() -> None:
    test = healthcheck_test("web")
    port = parse_cli(command("web"))[1]["port"]
    assert f"127.0.0.1:{port}" in test or f"localhost:{port}" in test, (
        f"web's healthcheck does not ask the server on port {port}: {test!r}"
    )
    installed = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    for tool in ("curl", "wget"):
        if re.search(rf"\b{tool}\b", test):
            assert re.search(rf"install\b.*\b{tool}\b", installed), (
                f"web's healthcheck uses {tool}, which the python slim image lacks"
            )


# --- the Dockerfile --------------------------------------------------------------------------


def _requirements() -> dict[str, Requirement]:
    reqs = (Requirement(r) for r in PYPROJECT["project"]["dependencies"])
    return {canonicalize_name(r.name): r for r in reqs}


def test_dockerfile_installs_pinned_torch_before_the_project() -> None:
    pin = str(_requirements()["torch"].specifier)
    assert pin.startswith("=="), f"pyproject.toml's torch is not pinned: {pin!r}"
    installs = pip_installs()
    torch_at = [i for i, args in installs if f"torch{pin}" in args]
    assert torch_at, f"the Dockerfile does not install torch{pin} (pyproject.toml's pin)"
    project_at = [i for i, args in installs if "." in args or any(a.startswith(".[") for a in args)]
    assert project_at, "the Dockerfile does not install the project (pip install .)"
    assert min(torch_at) < min(project_at), (
        "torch must be installed before the project, or the project's install picks a build"
    )


def test_dockerfile_puts_the_cli_on_path() -> None:
    # The project is installed into the image's own Python (no venv, no --user/--prefix), so
    # its scripts land in /usr/local/bin, which is on PATH: `tuneboard` runs as a command.
    for _, args in pip_installs():
        elsewhere = {"--user", "--prefix", "--target", "-t"} & set(args)
        assert not elsewhere, f"pip install {elsewhere} puts scripts off PATH: {args}"
    instructions = dockerfile()
    assert not any(i == "ENTRYPOINT" for i, _ in instructions), (
        "an ENTRYPOINT would be prepended to every compose command"
    )
    assert "tuneboard" in SCRIPTS


def test_dockerfile_copies_what_the_app_needs() -> None:
    copied = set()
    for instruction, args in dockerfile():
        if instruction == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            copied.update(sources)
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    needed = {"pyproject.toml", "app", "worker", "templates", "static", "migrations", "alembic.ini"}
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"


def test_packaged_models_are_installed_in_the_image() -> None:
    installed = set(_requirements())
    for _, args in pip_installs():
        for arg in args:
            if re.match(r"^[A-Za-z0-9][\w.-]*(==|>=|$)", arg) and arg != ".":
                installed.add(canonicalize_name(Requirement(arg).name))
    for model in catalog.PACKAGED:
        package = canonicalize_name(model.module)
        assert package in installed, (
            f"packaged model {model.id!r} needs {package}, which the image does not install"
        )


def test_data_dir_is_writable_by_the_image_user() -> None:
    users = [args for instruction, args in dockerfile() if instruction == "USER"]
    if not users or users[-1] in ("root", "0"):
        return
    data_dir = environment("web")[f"{ENV_PREFIX}DATA_DIR"]
    runs = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    assert re.search(rf"chown\b[^&;]*\s{re.escape(data_dir)}\b", runs), (
        f"the image runs as {users[-1]!r} but does not chown {data_dir}: a fresh named volume "
        "there would not be writable"
    )
