"""The CPU time one metered access costs inside the Django process: POST /api/v1/access through the Django
test client (middleware, URL routing, the view, the charge, the receipt), N times in a row.

    python bench/access_cpu.py [--accesses 2000] [--database sqlite|postgres|both] [--tree PATH]

It counts the process's own CPU time (time.process_time), not the wall clock, so it is less disturbed by
other work on a loaded machine than bench/access.py; the database server's own CPU (PostgreSQL's) is not
in it. Each run uses a fresh database (a temporary SQLite file, or a scratch database on the PostgreSQL
server at 127.0.0.1), the production-like settings (config.settings.dev, DEBUG off) and one API key making
accesses with a new Idempotency-Key each. `--tree` measures another checkout of the project with this
script (its platform/ and root on the import path), so a branch and its base are measured alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _setup_code() -> str:
    """bench/access.py's SETUP (the works, offers, funded vendor and key), read by path: this folder's
    access.py would shadow the `access` package if it were imported by name."""
    spec = importlib.util.spec_from_file_location("bench_access", ROOT / "bench" / "access.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.SETUP)


MIGRATE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""

MEASURE = """
import os, time, uuid
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")
count = int(os.environ["BENCH_ACCESSES"])
def access(index):
    body = json.dumps({"work": works[index % len(works)], "use": "ai-train", "territory": "US"})
    response = client.post(
        "/api/v1/access", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
    )
    assert response.status_code == 200, (response.status_code, response.content[:300])
for index in range(len(works) * 2):  # warm-up: grants accepted, caches and prepared statements filled
    access(index)
started = time.process_time()
for index in range(count):
    access(index)
cpu = time.process_time() - started
print(json.dumps({"cpu_us": cpu * 1e6 / count}))
"""


def _scratch_postgres(name: str, action: str) -> None:
    admin = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c"]
    guard = "IF EXISTS " if action == "DROP" else ""
    quiet = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
    subprocess.run([*admin, f"{action} DATABASE {guard}{name}"], check=True, env=quiet)


def measure(tree: Path, database: str, accesses: int) -> float:
    """The CPU microseconds per access of the checkout at `tree` on a fresh database."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory(prefix="tribute-bench-cpu-") as var_dir:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.dev",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="bench-" + uuid.uuid4().hex,
            RECEIPT_SIGNING_KEY=key_pem.decode(),
            TRIBUTE_VAR_DIR=var_dir,
            LOG_LEVEL="WARNING",
            PYTHONPATH=f"{tree / 'platform'}{os.pathsep}{tree}",
            BENCH_ACCESSES=str(accesses),
        )
        env.pop("DATABASE_URL", None)
        name = f"bench_access_cpu_{os.getpid()}"
        if database == "postgres":
            _scratch_postgres(name, "DROP")
            _scratch_postgres(name, "CREATE")
            env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
        else:
            env["SQLITE_PATH"] = str(Path(var_dir) / "bench.sqlite3")
        try:
            out = subprocess.run(
                [sys.executable, "-c", MIGRATE + _setup_code() + MEASURE],
                env=env,
                cwd=tree,
                capture_output=True,
                text=True,
            )
        finally:
            if database == "postgres":
                _scratch_postgres(name, "DROP")
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["cpu_us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accesses", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    arguments = parser.parse_args()
    if not 1 <= arguments.accesses <= 100_000:
        parser.error("--accesses is 1 to 100000")
    databases = ["sqlite", "postgres"] if arguments.database == "both" else [arguments.database]
    for database in databases:
        cpu_us = measure(arguments.tree.resolve(), database, arguments.accesses)
        count = arguments.accesses
        print(f"{database}: {cpu_us:7.1f} µs CPU per access in the Django process ({count} accesses)")


if __name__ == "__main__":
    main()
