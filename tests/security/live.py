"""Real processes for the security suite: a scratch database, gunicorn on a free 127.0.0.1 port, Python
snippets run against the same database. Nothing here talks to anything beyond 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def receipt_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def server_env(var_dir: Path, database_url: str = "", **extra: str) -> dict[str, str]:
    """The environment of a production-like process: DEBUG off, a throwaway secret and receipt key."""
    env = dict(os.environ)
    # (The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE for their own process; a server never has it.)
    for name in (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "SQLITE_PATH",
        "STRIPE_SECRET_KEY",
        "CHAIN_RPC_URL",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    ):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="security-suite-" + uuid.uuid4().hex,
        RECEIPT_SIGNING_KEY=receipt_key_pem(),
        TRIBUTE_VAR_DIR=str(var_dir),
        MEDIA_ROOT=str(var_dir / "uploads"),
        LOG_LEVEL="WARNING",
        # Load and fuzzing runs send thousands of requests with one key; a test of the limits turns them on.
        RATE_LIMITS_ENABLED="0",
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    else:
        env["SQLITE_PATH"] = str(var_dir / "db.sqlite3")
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str]) -> Any:
    """Run a snippet with Django set up against the server's database; answer the JSON it prints last."""
    prelude = "import django, json\ndjango.setup()\n"
    out = subprocess.run(
        [PYTHON, "-c", prelude + code], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"snippet failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--no-input", "-v0"], env=env, cwd=ROOT, check=True)


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped afterwards: its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Gunicorn:
    """gunicorn serving `app` (config.wsgi unless told) on a free port; `stop()` ends it (and only it)."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        log: Path | None = None,
        options: tuple[str, ...] = (),
        production: bool = False,
        app: str = "config.wsgi",
    ) -> None:
        """`production`: with the production settings (config/gunicorn.py: threaded workers that keep
        connections open) rather than sync workers, which close each connection after its response."""
        self.port = free_port()
        server = (
            ("-c", "python:config.gunicorn")
            if production
            else ("--worker-class", "sync", "--keep-alive", "30")
        )
        self.log_path = log
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                *server,
                app,
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                "120",
                "--log-level",
                "warning",
                *options,
            ],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        self._wait_up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/api/v1/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
            finally:
                connection.close()
        raise AssertionError("gunicorn did not come up within 60 s")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.log is not subprocess.DEVNULL:
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def rss_peak_reset(pid: int) -> None:
    """Reset the process's peak resident set (VmHWM) so the next reading covers only what follows."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak since the last reset) resident set of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]
