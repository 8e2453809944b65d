"""Retrieval over text passages: embedding (indexing) rate, index memory and search latency at 100,000
passages, and the latency of whole retrieve calls (with their charge and signed receipt) (docs/text.md).

    python -m bench.text_retrieval                     # 2,000 passages embedded, 100,000 in the index
    python -m bench.text_retrieval --embed 500 --calls 30

Real passages: `media.samples.text` documents cut by `media.text.passages.split`, embedded with
all-MiniLM-L6-v2 on the CPU. Embedding 100,000 passages here would take most of an hour, so the index is
filled to 100,000 with the real vectors plus copies of them moved by Gaussian noise and normalised again:
an exact inner-product index costs the same per vector whatever the vectors hold, so the search time and
the memory are those of 100,000 real passages. Whole calls: a throwaway SQLite database (the test
settings), `--works` text works registered and fingerprinted as uploads are, offers priced per 1,000
tokens, a funded vendor, and the service `retrieval_request` called `--calls` times, one after another,
each with its own Idempotency-Key, on the index padded to 100,000 passages.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embed", type=int, default=2_000, help="real passages to embed")
    parser.add_argument("--passages", type=int, default=100_000, help="passages in the index")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--works", type=int, default=200)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import torch

    from media.samples.text import documents
    from media.text import embedding, passages

    rng = random.Random(args.seed)
    docs = [text for _, text in documents(min_words=60, max_words=250)]
    rng.shuffle(docs)
    bodies: list[str] = []
    for text in docs:
        bodies += [text[p.start : p.end] for p in passages.split(text)]
        if len(bodies) >= args.embed + args.queries:
            break
    queries = [
        " ".join(b.split()[: rng.randrange(8, 20)]) for b in bodies[args.embed : args.embed + args.queries]
    ]
    bodies = bodies[: args.embed]
    embedding.embed(bodies[:8])  # load the model
    print(
        f"torch threads: {torch.get_num_threads()}; passages: {len(bodies)} real, mean "
        f"{np.mean([len(b.split()) for b in bodies]):.0f} words"
    )

    started, cpu = time.perf_counter(), time.process_time()
    tokens = passages.count_tokens(bodies)
    token_seconds = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    vectors = embedding.embed(bodies)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"indexing (embedding) rate: {len(bodies) / wall:.0f} passages/s wall, "
        f"{len(bodies) / cpu:.0f}/s of CPU time (mean {np.mean(tokens):.0f} tokens); "
        f"token counting {len(bodies) / token_seconds:.0f} passages/s"
    )

    noise = np.random.default_rng(args.seed)
    before = rss_mib()
    index = embedding.PassageIndex()
    filled = 0
    while filled < args.passages:
        take = min(len(vectors), args.passages - filled)
        block = vectors[:take] + noise.normal(0, 0.04, size=(take, vectors.shape[1])).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        index.add(
            f"pad:{filled}",
            embedding.PassageEmbeddings(
                np.zeros(take, np.int32), np.zeros(take, np.int32), np.zeros(take, np.int32), block
            ),
        )
        filled += take
    print(
        f"index of {len(index)} passages: {rss_mib() - before:.0f} MiB more resident memory "
        f"(vectors {len(index) * embedding.DIMENSIONS * 4 / 2**20:.0f} MiB)"
    )
    embed_times, search_times = [], []
    for query in queries:
        started = time.perf_counter()
        vector = embedding.embed([query])
        embed_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        index.search(vector, limit=200)
        search_times.append(time.perf_counter() - started)
    print(
        f"query embedding p50 {1000 * percentile(embed_times, 0.5):.1f} ms, "
        f"p95 {1000 * percentile(embed_times, 0.95):.1f} ms; "
        f"exact search of {len(index)} p50 {1000 * percentile(search_times, 0.5):.1f} ms, "
        f"p95 {1000 * percentile(search_times, 0.95):.1f} ms"
    )
    if args.calls:
        whole_calls(args, docs, queries, vectors, noise)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def whole_calls(args, docs, queries, vectors, noise) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    from access import services
    from accounts.models import Role
    from accounts.services import api_key_create, user_create
    from catalog import tracing
    from catalog.services import Terms, asset_upload, offer_publish, work_create
    from common.money import Money
    from media import index as media_index
    from media.text import embedding
    from royalties.services import prepaid_fund

    password = "bench password not for use"  # noqa: S105
    creator = user_create(username="writer", email="w@example.org", password=password, role=Role.CREATOR)
    vendor = user_create(
        username="vendor",
        email="v@example.org",
        password=password,
        role=Role.VENDOR,
        organisation_name="Bench AI",
    )
    started = time.perf_counter()
    for n, text in enumerate(docs[: args.works]):
        work = work_create(user=creator, title=f"Text {n}", kind="article")
        offer_publish(
            work=work,
            user=creator,
            terms=Terms(currency="USD", uses={"ai-input": 0}, token_prices={"ai-input": 10}),
        )
        asset = asset_upload(
            work=work, user=creator, data=text.encode(), filename="t.txt", fingerprint_later=False
        )
        tracing.asset_fingerprint(asset_id=asset.asset.pk)
    print(f"registered and fingerprinted {args.works} works in {time.perf_counter() - started:.0f} s")
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(10**9, "USD"), external_ref="bench")
    api_key = api_key_create(user=vendor, name="bench", scopes=["access"], organisation=organisation).api_key
    indexes = media_index.current()
    pad = args.passages - len(indexes.passages)
    filled = 0
    while filled < pad:
        take = min(len(vectors), pad - filled)
        block = vectors[:take] + noise.normal(0, 0.04, size=(take, vectors.shape[1])).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        zeros = np.zeros(take, np.int32)
        indexes.passages.add(f"pad:{filled}", embedding.PassageEmbeddings(zeros, zeros, zeros, block))
        filled += take
    print(f"index: {len(indexes.passages)} passages ({pad} padding)")
    times, sold, spent = [], 0, 0
    for n in range(args.calls):
        request = services.RetrievalRequest(
            query=queries[n % len(queries)],
            max_tokens=600,
            use_class="ai-input",
            territory="US",
            currency="USD",
        )
        started = time.perf_counter()
        result = services.retrieval_request(
            organisation=organisation, api_key=api_key, idempotency_key=f"bench-{n}", request=request
        )
        times.append(time.perf_counter() - started)
        import json

        body = json.loads(result.body)
        sold += len(body["passages"])
        spent += body["total_minor"]
    print(
        f"retrieve calls (service, SQLite, {args.calls} in a row): "
        f"p50 {1000 * percentile(times, 0.5):.0f} ms, "
        f"p95 {1000 * percentile(times, 0.95):.0f} ms, {len(times) / sum(times):.1f} calls/s; "
        f"{sold / len(times):.1f} passages and {spent / len(times):.1f} minor units per call"
    )
    connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
