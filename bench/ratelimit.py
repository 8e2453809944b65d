"""What the rate limiter costs the metered access call, measured in one process with the limiter on and off
in alternating blocks, so a busy machine slows both alike.

    PYTHONPATH=platform:. python bench/ratelimit.py [--blocks 20] [--per-block 200]

Sets up a scratch SQLite database (a creator's published work, a funded vendor key), then sends
POST /api/v1/access through Django's WSGI handler (the whole middleware stack and the view's fast path, no
network), --per-block calls with RATELIMIT_ENABLE on, then as many off, --blocks times. Prints the median
microseconds per call of each, the difference, and the limiter's own cost per call (its two counters).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


MEASURE = """
import os, statistics, time, uuid
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client, RequestFactory
call_command("migrate", verbosity=0)
from accounts import ratelimits
from accounts.models import ApiKey
from accounts.services import api_key_create, user_create
from catalog.services import Terms, offer_publish, work_create
from common.money import Money
from royalties.funding import prepaid_fund

BLOCKS, PER_BLOCK = int(os.environ["BENCH_BLOCKS"]), int(os.environ["BENCH_PER_BLOCK"])
creator = user_create(username="c", email="c@b.invalid", password=None, role="creator", email_verified=True)
vendor = user_create(username="v", email="v@b.invalid", password=None, role="vendor", organisation_name="B")
work = work_create(user=creator, title="Bench", kind="image")
offer_publish(work=work, user=creator, terms=Terms(currency="USD", uses={"ai-train": 1}))
prepaid_fund(organisation=vendor.organisations.get(), amount=Money(10**12, "USD"), external_ref="b")
secret = api_key_create(user=vendor, name="bench", scopes=["access"]).secret
client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_HOST="127.0.0.1")
body = f'{{"work": {work.pk}, "use": "ai-train", "territory": "US"}}'


def block(enabled):
    settings.RATELIMIT_ENABLE = enabled
    started = time.perf_counter()
    for _ in range(PER_BLOCK):
        response = client.post(
            "/api/v1/access", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
        )
        assert response.status_code == 200, response.content
    return (time.perf_counter() - started) / PER_BLOCK * 1e6


block(True)
block(False)
on, off = [], []
for _ in range(BLOCKS):
    on.append(block(True))
    off.append(block(False))
settings.RATELIMIT_ENABLE = True
api_key = ApiKey.objects.select_related("organisation").get(user=vendor)
request = RequestFactory().post("/api/v1/access")
started = time.perf_counter()
for _ in range(20_000):
    ratelimits.api_usage(request, user=None, api_key=api_key)
counters_us = (time.perf_counter() - started) / 20_000 * 1e6
on_us, off_us = statistics.median(on), statistics.median(off)
print(f"access call, limiter on:  median {on_us:7.0f} us per call ({BLOCKS} blocks of {PER_BLOCK})")
print(f"access call, limiter off: median {off_us:7.0f} us per call")
print(f"difference: {on_us - off_us:+.0f} us per call ({(on_us - off_us) / off_us * 100:+.1f}%)")
print(f"the limiter's two counters alone (api_usage, local-memory cache): {counters_us:.1f} us per call")
print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--per-block", type=int, default=200)
    arguments = parser.parse_args()
    var_dir = tempfile.mkdtemp(prefix="tribute-bench-ratelimit-")
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + uuid.uuid4().hex,
        RECEIPT_SIGNING_KEY=_receipt_key(),
        TRIBUTE_VAR_DIR=var_dir,
        SQLITE_PATH=str(Path(var_dir) / "bench.sqlite3"),
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        BENCH_BLOCKS=str(arguments.blocks),
        BENCH_PER_BLOCK=str(arguments.per_block),
    )
    # A process of its own, started in the checkout: this folder's access.py would shadow the app.
    subprocess.run([sys.executable, "-c", MEASURE], env=env, cwd=ROOT, check=True)


def _receipt_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


if __name__ == "__main__":
    main()
