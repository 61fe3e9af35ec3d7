"""Training code stays pure: nothing under worker/training/ imports the web app, the database
or Celery, so a training run needs only its spec (and can run on a machine with no server).
Checked twice: by reading every import statement, and by importing every module in a fresh
interpreter and looking at what got loaded."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "worker" / "training"
FORBIDDEN = ("app", "sqlalchemy", "celery", "kombu", "fastapi", "starlette")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_training_module_imports_the_app_the_database_or_celery() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(TRAINING.glob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
        or (name.startswith("worker.") and not name.startswith("worker.training"))
    }
    assert not offenders, offenders


def test_importing_every_training_module_loads_none_of_them() -> None:
    modules = [f"worker.training.{p.stem}" for p in sorted(TRAINING.glob("*.py"))]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=TRAINING.parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    leaked = [m for m in loaded if m.split(".")[0] in FORBIDDEN or m == "worker.model_source"]
    assert not leaked, leaked
