"""Partner verdicts at catalogue scale: how many image verdicts a second the API answers, and how fast.

    python -m bench.partner_verdicts [--works 10000] [--seconds 30] [--clients 4] [--workers 3]

Builds a catalogue of --works published image works from real pictures: the sample wallpapers and art of
``media.samples.images``, each whole and cut into a grid of tiles, every one a work of its own with its
fingerprint computed by the platform's own code, in a fresh SQLite database. Two packages' pictures are
kept out of the catalogue altogether. Then starts gunicorn with the production settings, warms each
worker's index, and has --clients clients post verdicts back to back for --seconds: copies of whole
pictures in the catalogue (mirrored, cropped to 80%, or recompressed) and the pictures of packages kept
out (unrelated). Prints verdicts/s, latency percentiles, and whether each verdict was right: a copy names
its source picture's work, an unrelated picture no work.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SEED = 20261207
GRIDS = ((7, 5), (4, 3))  # tiles per picture, across and down, at two scales
# Pictures of these packages stay out of the catalogue: the unrelated queries. Whole packages, because
# inside one package some pictures are variants of one artwork (recoloured, retouched), which the
# matcher rightly pairs.
KEPT_OUT_PACKAGES = ("gnome-backgrounds", "mate-backgrounds")


def _pictures(packages: tuple[str, ...]) -> list[bytes]:
    """The distinct sample pictures of these packages as RGB JPEG bytes, longest side 1024 px, in a fixed
    shuffled order."""
    from media.samples.images import ensure_images

    pictures = []
    for path in ensure_images(packages=packages):
        with Image.open(path) as source:
            image = source.convert("RGB")
        image.thumbnail((1024, 1024))
        if min(image.size) < 200:
            continue
        pictures.append(_jpeg(image, 90))
    pictures = list({hashlib.sha256(data).digest(): data for data in pictures}.values())
    random.Random(SEED).shuffle(pictures)
    return pictures


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _tiles(picture: bytes) -> list[bytes]:
    with Image.open(io.BytesIO(picture)) as image:
        width, height = image.size
        return [
            _jpeg(
                image.crop(
                    (
                        x * width // across,
                        y * height // down,
                        (x + 1) * width // across,
                        (y + 1) * height // down,
                    )
                ),
                90,
            )
            for across, down in GRIDS
            for y in range(down)
            for x in range(across)
        ]


def _copy(picture: bytes, how: str) -> bytes:
    with Image.open(io.BytesIO(picture)) as source:
        image = source.convert("RGB")
    if how == "mirrored":
        return _jpeg(ImageOps.mirror(image), 85)
    if how == "cropped":
        width, height = image.size
        return _jpeg(image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10)), 85)
    return _jpeg(image, 40)


def _fingerprint(data: bytes) -> tuple[str, bytes]:
    from media.fingerprint import image

    return hashlib.sha256(data).hexdigest(), image.compute(data).to_bytes()


def build_catalogue(works: int, contents: list[bytes]) -> dict[str, object]:
    """Runs in a Django process: the works, their files and fingerprints, and a partner's key."""
    import multiprocessing

    from accounts.services import api_key_create, user_create
    from catalog.models import Asset, FingerprintStatus, Work, WorkStatus
    from catalog.storage import blob_store
    from matching.index import CURRENT
    from matching.models import Fingerprint, FingerprintKind
    from media.validation import inspect

    creator = user_create(
        username="painter", email="p@bench.invalid", password=None, role="creator", email_verified=True
    )
    partner = user_create(
        username="streamco",
        email="s@bench.invalid",
        password=None,
        role="vendor",
        organisation_name="StreamCo",
    )
    started = time.perf_counter()
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        fingerprints = pool.map(_fingerprint, contents[:works], chunksize=32)
    fingerprinted = time.perf_counter() - started
    made = Work.objects.bulk_create(
        [
            Work(title=f"Picture {i}", kind="image", status=WorkStatus.PUBLISHED, created_by=creator)
            for i in range(works)
        ]
    )
    assets = []
    for work, data in zip(made, contents[:works], strict=True):
        blob, _ = blob_store(data=data, info=inspect(data))
        assets.append(
            Asset(
                work=work,
                blob=blob,
                filename="picture.jpg",
                uploaded_by=creator,
                fingerprint_status=FingerprintStatus.DONE,
                fingerprint_progress=100,
            )
        )
    Asset.objects.bulk_create(assets)
    algorithm = CURRENT[FingerprintKind.IMAGE]
    Fingerprint.objects.bulk_create(
        [
            Fingerprint(sha256=sha, kind=FingerprintKind.IMAGE, algorithm=algorithm, data=data)
            for sha, data in fingerprints
        ],
        batch_size=500,
    )
    key = api_key_create(user=partner, name="bench", scopes=["partner"]).secret
    return {"key": key, "work_ids": [work.pk for work in made], "fingerprint_s": fingerprinted}


def _multipart(reference: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="reference"\r\n\r\n{reference}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode(),
        data,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _post(connection: http.client.HTTPConnection, key: str, data: bytes) -> tuple[int, dict]:
    body, content_type = _multipart(uuid.uuid4().hex, data)
    connection.request(
        "POST",
        "/api/v1/partner/verdicts",
        body=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--works", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=0, help="gunicorn workers (default: config.gunicorn's)"
    )
    arguments = parser.parse_args()

    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    from bench.django_env import django_setup
    from media.samples.images import ALL_PACKAGES

    kept_out = _pictures(KEPT_OUT_PACKAGES)
    sources = _pictures(tuple(package for package in ALL_PACKAGES if package not in KEPT_OUT_PACKAGES))
    contents = list(sources)  # work i is source picture i
    seen = {hashlib.sha256(data).digest() for data in contents}
    for tile in (tile for picture in sources for tile in _tiles(picture)):
        digest = hashlib.sha256(tile).digest()
        if digest not in seen:  # a plain tile can repeat
            seen.add(digest)
            contents.append(tile)
    if len(contents) < arguments.works:
        raise SystemExit(f"only {len(contents)} distinct pictures and tiles; ask for fewer --works")
    var_dir = tempfile.mkdtemp(prefix="tribute-bench-partner-")
    env = django_setup(var_dir, RATE_LIMITS_ENABLED="0")
    built = build_catalogue(arguments.works, contents)
    print(
        f"catalogue: {arguments.works} published image works ({len(sources)} pictures and their tiles), "
        f"fingerprinted in {built['fingerprint_s']:.0f} s on {os.cpu_count()} processes"
    )

    rng = random.Random(SEED)
    queries: list[tuple[str, bytes, int | None]] = []
    work_ids = list(built["work_ids"])  # type: ignore[call-overload]
    for index in rng.sample(range(len(sources)), min(60, len(sources))):
        for how in ("mirrored", "cropped", "recompressed"):
            queries.append((how, _copy(sources[index], how), work_ids[index]))
    queries += [("unrelated", picture, None) for picture in kept_out]
    rng.shuffle(queries)

    port = _free_port()
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "-c",
        "python:config.gunicorn",
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    if arguments.workers:
        command += ["--workers", str(arguments.workers)]
    server = subprocess.Popen([*command, "--log-level", "warning", "--timeout", "120"], env=env, cwd=ROOT)
    try:
        for _ in range(600):
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                probe.request("GET", "/api/v1/health")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        key = str(built["key"])
        # Each worker loads the index on its first verdict: rounds of parallel verdicts until a whole round
        # is quick, so that no worker is still loading when the measurement starts.
        started = time.perf_counter()
        warm = [http.client.HTTPConnection("127.0.0.1", port, timeout=300) for _ in range(8)]
        for _ in range(20):
            began = time.perf_counter()
            threads = [threading.Thread(target=_post, args=(c, key, queries[0][1])) for c in warm]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if time.perf_counter() - began < 3:
                break
            warm = [http.client.HTTPConnection("127.0.0.1", port, timeout=300) for _ in range(8)]
        print(f"warm-up (each worker loads the index): {time.perf_counter() - started:.1f} s")

        latencies: list[float] = []
        outcomes: dict[str, list[bool]] = {}
        errors = 0
        lock = threading.Lock()
        deadline = time.perf_counter() + arguments.seconds

        def client(offset: int) -> None:
            nonlocal errors
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            position = offset
            while time.perf_counter() < deadline:
                how, data, expected = queries[position % len(queries)]
                position += arguments.clients
                sent = time.perf_counter()
                status, body = _post(connection, key, data)
                took = time.perf_counter() - sent
                named = [
                    m["work"] for m in body.get("verdict", {}).get("matches", []) if m["confidence"] >= 0.9
                ]
                right = expected in named if expected is not None else not named
                with lock:
                    latencies.append(took)
                    errors += status != 201
                    outcomes.setdefault(how, []).append(right)

        began = time.perf_counter()
        runners = [threading.Thread(target=client, args=(i,)) for i in range(arguments.clients)]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait()

    latencies.sort()

    def percentile(share: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    print(
        f"{len(latencies)} verdicts in {elapsed:.1f} s from {arguments.clients} clients: "
        f"{len(latencies) / elapsed:.1f} verdicts/s; p50 {percentile(0.5):.0f} ms, "
        f"p95 {percentile(0.95):.0f} ms, p99 {percentile(0.99):.0f} ms, "
        f"mean {1000 * statistics.fmean(latencies):.0f} ms; errors {errors}"
    )
    for how, results in sorted(outcomes.items()):
        print(f"  {how:13} {sum(results)}/{len(results)} right")


if __name__ == "__main__":
    main()
