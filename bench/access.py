"""Load the metered access API the way production runs it and print what it sustains: POST /api/v1/access,
and the paid content GET through the delivery links it answers, in the same run.

    python bench/access.py [--seconds 30] [--clients 50] [--workers 3] [--database sqlite|postgres]
                           [--rate 400] [--paced-first] [--durable-commit]

Starts gunicorn with the production settings (config/gunicorn.py: several single-threaded workers that keep
connections open; DEBUG off, a real receipt key) on 127.0.0.1 against a fresh database (a temporary SQLite
file, or a scratch database on the PostgreSQL server), drives POST /api/v1/access from two load-generator
processes (asyncio, raw HTTP/1.1, each client on its own kept-alive connection as an API client's HTTP
library would, a unique Idempotency-Key per request), then does the same against GET /api/v1/health (DRF,
no database) as the baseline, and GET of each work's file through a delivery link from an access (a
small PNG: the paid content GET). Prints requests/s, p50, p99, errors, the ratio to the
baseline, and whether the ledger still balances. Also times API key verification in-process, and how long
this machine's disk takes to flush a small write, which bounds a durable commit (--durable-commit makes
PostgreSQL's access commits wait for it: ACCESS_DURABLE_COMMIT, docs/access.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A free port (and below, a database of its own) per run: two engineers' runs on one machine must not load
# each other's servers. The load processes are forked, so they see the same value.
PORT = int(os.environ.get("BENCH_PORT") or _free_port())


def _env(database_url: str, var_dir: str, key_pem: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + uuid.uuid4().hex,
        RECEIPT_SIGNING_KEY=key_pem,
        TRIBUTE_VAR_DIR=var_dir,
        LOG_LEVEL="WARNING",
    )
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    else:
        env["SQLITE_PATH"] = str(Path(var_dir) / "bench.sqlite3")
    return env


SETUP = """
import django, json
django.setup()
from common.money import Money
from accounts.services import user_create, api_key_create
from catalog.services import Terms, asset_upload, offer_publish, work_create
from tests.factories import png_bytes
from royalties.funding import prepaid_fund
creator = user_create(
    username="c", email="c@bench.invalid", password=None, role="creator", email_verified=True
)
vendor = user_create(
    username="v", email="v@bench.invalid", password=None, role="vendor", organisation_name="Bench AI"
)
works = []
for i in range(20):
    work = work_create(user=creator, title=f"Bench work {i}", kind="image")
    asset_upload(work=work, user=creator, data=png_bytes(size=(64, 48), color=(i, 40, 90)), filename="b.png")
    terms = Terms(currency="USD", uses={"ai-train": 1, "ai-generate": 2})
    offer_publish(work=work, user=creator, terms=terms)
    works.append(work.pk)
organisation = vendor.organisations.get()
prepaid_fund(organisation=organisation, amount=Money(10**12, "USD"), external_ref="bench")
key = api_key_create(user=vendor, name="bench", scopes=["access"]).secret
print(json.dumps({"key": key, "works": works}))
"""

CHECK = """
import django, json
django.setup()
from django.db.models import Sum
from access.models import AccessEvent
from royalties.models import Entry, LedgerAccount, NON_NEGATIVE_KINDS
from royalties.selectors import prepaid_available
from accounts.models import Organisation
organisation = Organisation.objects.get()
events = AccessEvent.objects.aggregate(n=Sum(1), spent=Sum("price_minor"))
negative = LedgerAccount.objects.filter(kind__in=NON_NEGATIVE_KINDS, balance_minor__lt=0).count()
entries = Entry.objects.aggregate(total=Sum("amount_minor"))["total"] or 0
print(json.dumps({
    "events": AccessEvent.objects.count(),
    "spent": events["spent"] or 0,
    "available": prepaid_available(organisation=organisation, currency="USD"),
    "negative_accounts": negative,
    "entries_sum": entries,
}))
"""


def _run_python(code: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([PYTHON, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _client(
    args: tuple[str, str, list[int], float, int, int, int, float],
) -> tuple[list[float], dict[int, int]]:
    """One load-generator process: `connections` clients on one asyncio loop, each with its own socket,
    numbered from `first` among all the load processes' clients.

    Requests are written as raw bytes and responses read by Content-Length, so the generator spends a
    few tens of microseconds per request and leaves the CPUs to the server it measures."""
    path, key, works, deadline, connections, first, clients, interval_s = args
    run = uuid.uuid4().hex[:8]  # each load run uses new Idempotency-Keys, so none is answered as a replay
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def request(index: int, count: int) -> bytes:
        if path == "content":  # `works` holds the delivery links' paths
            return f"GET {works[count % len(works)]} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        if path != "access":
            return b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        body = json.dumps({"work": works[count % len(works)], "use": "ai-train", "territory": "US"}).encode()
        return (
            f"POST /api/v1/access HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {run}-{first + index}-{count}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def exchange(streams: list[Any], payload: bytes) -> int:
        if not streams:
            streams.extend(await asyncio.open_connection("127.0.0.1", PORT))
        reader, writer = streams
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        pairs = (line.partition(":") for line in lines[1:])
        fields = {name.strip().lower(): value.strip() for name, _, value in pairs}
        await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            writer.close()
            streams.clear()
        return int(lines[0].split()[1])

    async def client(index: int) -> None:
        streams: list[Any] = []
        count = 0
        # Paced clients start spread evenly over one interval, across all the load processes, so the
        # offered rate is steady rather than a burst at the start of every interval.
        next_at = time.perf_counter() + interval_s * (first + index) / clients
        while time.time() < deadline:
            count += 1
            if interval_s:
                # Open loop: each client sends at a fixed pace, so the latency measured is the service's,
                # not the time spent queueing behind the other clients.
                pause = next_at - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                next_at += interval_s
            payload = request(index, count)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(30):
                    status = await exchange(streams, payload)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                status = 599
                if streams:
                    streams[1].close()
                    streams.clear()
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
        if streams:
            streams[1].close()

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(connections)))

    asyncio.run(main())
    return latencies, statuses


def _delivery_links(key: str, works: list[int]) -> list[str]:
    """One paid access per work, and the path of the delivery link each answers (valid for 5 minutes)."""
    links = []
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    for work in works:
        body = json.dumps({"work": work, "use": "ai-train", "territory": "US"})
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"links-{uuid.uuid4()}",
        }
        connection.request("POST", "/api/v1/access", body=body, headers=headers)
        answer = json.loads(connection.getresponse().read())
        url = answer["content"][0]["url"]
        links.append(url[url.index("/works/") :])
    connection.close()
    return links


def _load(
    path: str, key: str, works: list[Any], seconds: float, clients: int, rate: float = 0.0
) -> dict[str, float]:
    processes = 2
    per_process = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    deadline = time.time() + seconds
    interval_s = clients / rate if rate else 0.0
    with multiprocessing.Pool(processes) as pool:
        results = pool.map(
            _client,
            [
                (path, key, works, deadline, n, sum(per_process[:i]), clients, interval_s)
                for i, n in enumerate(per_process)
                if n
            ],
        )
    latencies = sorted(x for lat, _ in results for x in lat)
    statuses: dict[int, int] = {}
    for _, counts in results:
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies),
        "ok": ok,
        "errors": len(latencies) - ok,
        "rps": ok / seconds,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0,
        "statuses": statuses,  # type: ignore[dict-item]
    }


def _wait_up() -> None:
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            connection.request("GET", "/api/v1/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not come up")


def _key_verification_us() -> float:
    from accounts import keys

    secret = keys.generate_key()
    stored = keys.hash_key(secret)
    rounds = 100_000
    started = time.perf_counter()
    for _ in range(rounds):
        keys.is_well_formed(secret) and keys.matches(secret, stored)
    return (time.perf_counter() - started) / rounds * 1e6


def _disk_flush_ms(directory: str, seconds: float = 5.0) -> tuple[float, float, float]:
    """p50, p99 and the longest time to write 8 KiB and fdatasync it, a few hundred times."""
    path = Path(directory) / "flush-probe"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    flushes: list[float] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            os.pwrite(descriptor, os.urandom(8192), 8192 * (len(flushes) % 64))
            started = time.perf_counter()
            os.fdatasync(descriptor)
            flushes.append(1000 * (time.perf_counter() - started))
            time.sleep(0.005)
    finally:
        os.close(descriptor)
        path.unlink()
    flushes.sort()
    return flushes[len(flushes) // 2], flushes[int(len(flushes) * 0.99)], flushes[-1]


def run(database: str, arguments: argparse.Namespace) -> None:
    seconds, clients, workers, rate = arguments.seconds, arguments.clients, arguments.workers, arguments.rate
    # (Not imported from access.receipts: this script's own name shadows the `access` package.)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    var_dir = tempfile.mkdtemp(prefix="tribute-bench-")
    database_url = ""
    if database == "postgres":
        name = f"bench_access_{os.getpid()}"
        admin = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c"]
        subprocess.run([*admin, f"DROP DATABASE IF EXISTS {name}"], check=True)
        subprocess.run([*admin, f"CREATE DATABASE {name}"], check=True)
        database_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    env = _env(database_url, var_dir, key_pem.decode())
    env["ACCESS_DURABLE_COMMIT"] = "1" if arguments.durable_commit else "0"
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    setup = _run_python(SETUP, env)
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "-c",
            "python:config.gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        _wait_up()
        accesses = functools.partial(_load, "access", str(setup["key"]), list(setup["works"]))
        accesses(3, clients)  # warm-up
        if arguments.paced_first:
            paced = accesses(seconds, clients, rate)
        access = accesses(seconds, clients)
        if not arguments.paced_first:
            paced = accesses(seconds, clients, rate)
        links = _delivery_links(str(setup["key"]), list(setup["works"]))
        _load("content", "", links, 3, clients)  # warm-up
        delivered = _load("content", "", links, seconds, clients)
        bare = _load("health", "", [], seconds, clients)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    ledger = _run_python(CHECK, env)
    balanced = (
        ledger["negative_accounts"] == 0
        and ledger["entries_sum"] == 0
        and ledger["available"] == 10**12 - int(ledger["spent"])
    )
    commit = "each waits for the disk" if arguments.durable_commit else "do not wait for the disk"
    if database == "sqlite":
        commit = "WAL, synchronous=NORMAL"
    print(
        f"\n== {database}: {clients} clients, {workers} gunicorn workers, {seconds:.0f} s; commits: {commit}"
    )
    print(
        f"access, as fast as {clients} clients can: {access['rps']:7.1f} req/s  "
        f"p50 {access['p50_ms']:6.1f} ms  "
        f"p99 {access['p99_ms']:6.1f} ms  errors {access['errors']}  statuses {access['statuses']}"
    )
    print(
        f"access, {clients} clients offering {rate:.0f} req/s: {paced['rps']:7.1f} req/s  "
        f"p50 {paced['p50_ms']:6.1f} ms  "
        f"p99 {paced['p99_ms']:6.1f} ms  errors {paced['errors']}"
    )
    print(
        f"baseline: {bare['rps']:7.1f} req/s  p50 {bare['p50_ms']:6.1f} ms  p99 {bare['p99_ms']:6.1f} ms  "
        f"(GET /api/v1/health, DRF without the database)"
    )
    print(
        f"paid content GET (delivery link, {clients} clients, a 64x48 PNG): {delivered['rps']:7.1f} req/s  "
        f"p50 {delivered['p50_ms']:6.1f} ms  p99 {delivered['p99_ms']:6.1f} ms  errors {delivered['errors']}"
    )
    print(f"ratio access/baseline: {access['rps'] / bare['rps']:.2f}")
    print(f"ratio content GET/access: {delivered['rps'] / access['rps']:.2f} (goal: at least 0.80)")
    print(
        f"ledger: {ledger['events']} access events, {ledger['spent']} minor units spent, "
        f"balanced: {'yes' if balanced else 'NO'}"
    )
    if database == "postgres":
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
                f"DROP DATABASE IF EXISTS bench_access_{os.getpid()}",
            ],
            check=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=400, help="offered rate of the paced run (req/s)")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--paced-first", action="store_true", help="make the paced run first, on a fresh database"
    )
    parser.add_argument(
        "--durable-commit",
        action="store_true",
        help="PostgreSQL: each access commit waits for the disk (ACCESS_DURABLE_COMMIT=1)",
    )
    arguments = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    print(f"API key verification (checksum + SHA-256 compare): {_key_verification_us():.1f} µs per key")
    with tempfile.TemporaryDirectory(prefix="tribute-bench-") as directory:
        flush = _disk_flush_ms(directory)
    print(
        "disk flush of 8 KiB (fdatasync, a durable commit waits for one): p50 {:.2f} ms  p99 {:.2f} ms  "
        "longest {:.1f} ms".format(*flush)
    )
    for database in ["sqlite", "postgres"] if arguments.database == "both" else [arguments.database]:
        run(database, arguments)


if __name__ == "__main__":
    main()
