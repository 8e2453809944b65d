"""Retrieval over text passages: how fast passages enter the indexes, how well each index ranks, the
memory and search time at 100,000 passages, and whole retrieve calls (charge and signed receipt), one after
another and from concurrent processes (docs/text.md).

    python -m bench.text_retrieval                                # the defaults below, on SQLite
    DATABASE_URL=postgres://... python -m bench.text_retrieval --clients 2 --seconds 20

Real passages: `media.samples.text` documents cut by `media.text.passages.split`. Two embeddings: the
static one of the retrieval index (`media.text.static`, every real passage of the corpus) and
all-MiniLM-L6-v2 (`--embed` passages: about 24 a second of one core). Ranking: `--quality` passages, and
for 300 of them a query of two kinds: the passage's first 8-19 words ("first"), and 8-15 words from inside
it with three in ten dropped ("inside"); recall at 1 and 5 of the passage among all `--quality`, by each
index alone and by the relevance the service uses (mean of the MiniLM cosine and the static cosine on
MiniLM's scale). Scale: the indexes are filled to 100,000 passages with the real vectors plus copies moved
by Gaussian noise and normalised again (an exact inner-product scan costs the same whatever the vectors
hold). Whole calls: a throwaway test database (SQLite, or the server in DATABASE_URL), `--works` text works
registered and fingerprinted as uploads are, offers priced per 1,000 tokens, a funded vendor, and the
service `retrieval_request` called `--calls` times in a row, each with its own Idempotency-Key, then by
`--clients` processes at once for `--seconds`.
"""

from __future__ import annotations

import argparse
import multiprocessing
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


def pad(index, vectors, count: int, noise, prefix: str) -> None:
    from media.text import embedding

    filled = 0
    while filled < count:
        take = min(len(vectors), count - filled)
        block = vectors[:take] + noise.normal(0, 0.04, size=(take, vectors.shape[1])).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        zeros = np.zeros(take, np.int32)
        index.add(f"{prefix}:{filled}", embedding.PassageEmbeddings(zeros, zeros, zeros, block))
        filled += take


def ranking(bodies: list[str], rng: random.Random) -> None:
    from media.text import embedding, static

    picked = rng.sample(range(len(bodies)), min(300, len(bodies)))

    def first(body: str) -> str:
        return " ".join(body.split()[: rng.randrange(8, 20)])

    def inside(body: str) -> str:
        words = body.split()
        start = rng.randrange(0, max(1, len(words) - 20))
        return " ".join(w for w in words[start : start + rng.randrange(8, 16)] if rng.random() > 0.3)

    minilm, fast = embedding.embed(bodies), static.embed(bodies)
    for name, make in (("first", first), ("inside", inside)):
        queries = [make(bodies[i]) for i in picked]
        by_minilm = embedding.embed(queries) @ minilm.T
        by_static = static.embed(queries) @ fast.T
        moved = by_static + np.array([[static.shift(q)] for q in queries])
        line = []
        for label, scores in (
            ("MiniLM", by_minilm),
            ("static", by_static),
            ("both", (by_minilm + moved) / 2),
        ):
            ranks = np.array([(scores[k] > scores[k, i]).sum() for k, i in enumerate(picked)])
            line.append(f"{label} {np.mean(ranks < 1):.3f}/{np.mean(ranks < 5):.3f}")
        print(f"ranking, {name} words of a passage (recall at 1/5 of {len(bodies)}): " + ", ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embed", type=int, default=500, help="real passages to embed with MiniLM")
    parser.add_argument("--quality", type=int, default=2_000, help="passages ranked (0: skip)")
    parser.add_argument("--passages", type=int, default=100_000, help="passages in each index")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--works", type=int, default=60)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--clients", type=int, default=2, help="processes calling at once (0: skip)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import torch

    from media.samples.text import documents
    from media.text import embedding, passages, static

    rng = random.Random(args.seed)
    docs = [text for _, text in documents(min_words=60, max_words=250)]
    rng.shuffle(docs)
    bodies: list[str] = [text[p.start : p.end] for text in docs for p in passages.split(text)]
    queries = [" ".join(b.split()[: rng.randrange(8, 20)]) for b in bodies[-args.queries :]]
    embedding.embed(bodies[:8])  # load the models
    static.embed(bodies[:8])
    print(
        f"torch threads: {torch.get_num_threads()}; corpus: {len(bodies)} real passages, mean "
        f"{np.mean([len(b.split()) for b in bodies]):.0f} words"
    )

    started = time.perf_counter()
    tokens = passages.count_tokens(bodies[: args.embed])
    token_rate = args.embed / (time.perf_counter() - started)
    # The retrieval index's fingerprint as the upload path computes it: cut, count tokens, embed.
    started, cpu = time.perf_counter(), time.process_time()
    fingerprints = [embedding.compute(text, embedder=static.embed) for text in docs]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    fast = np.vstack([f.vectors for f in fingerprints])
    print(
        f"retrieval index (static) fingerprints: {len(fast) / wall:.0f} passages/s wall, "
        f"{len(fast) / cpu:.0f}/s of CPU time ({len(docs)} documents, {len(fast)} passages: cut, tokens "
        f"counted, embedded)"
    )
    started, cpu = time.perf_counter(), time.process_time()
    vectors = embedding.embed(bodies[: args.embed])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"MiniLM embedding: {args.embed / wall:.0f} passages/s wall, {args.embed / cpu:.0f}/s of CPU time "
        f"(mean {np.mean(tokens):.0f} tokens); token counting {token_rate:.0f} passages/s"
    )
    if args.quality:
        ranking(bodies[: args.quality], rng)

    noise = np.random.default_rng(args.seed)
    before = rss_mib()
    minilm_index = embedding.PassageIndex()
    pad(minilm_index, vectors, args.passages, noise, "pad")
    middle = rss_mib()
    static_index = embedding.PassageIndex(dimensions=static.DIMENSIONS)
    pad(static_index, fast, args.passages, noise, "pad")
    print(
        f"indexes of {args.passages} passages: MiniLM {middle - before:.0f} MiB, static "
        f"{rss_mib() - middle:.0f} MiB more resident memory"
    )
    times: dict[str, list[float]] = {"MiniLM query": [], "static query": [], "both searches": []}
    for query in queries:
        started = time.perf_counter()
        by_minilm = embedding.embed([query])
        times["MiniLM query"].append(time.perf_counter() - started)
        started = time.perf_counter()
        by_static = static.embed([query])
        times["static query"].append(time.perf_counter() - started)
        started = time.perf_counter()
        minilm_index.search(by_minilm, limit=200)
        static_index.search(by_static, limit=200)
        times["both searches"].append(time.perf_counter() - started)
    print(
        "; ".join(
            f"{name} p50 {1000 * percentile(values, 0.5):.1f} ms, "
            f"p95 {1000 * percentile(values, 0.95):.1f} ms"
            for name, values in times.items()
        )
        + f" (searches of {args.passages} passages each, 200 nearest)"
    )
    del minilm_index, static_index
    if args.calls:
        whole_calls(args, docs, queries, vectors, fast, noise)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def whole_calls(args, docs, queries, vectors, fast, noise) -> None:
    import django

    django.setup()
    from django.db import connection, connections
    from django.test.utils import setup_test_environment

    setup_test_environment()
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    from access import services
    from accounts.models import Role
    from accounts.services import api_key_create, user_create
    from catalog import fingerprinting
    from catalog.services import Terms, asset_upload, offer_publish, work_create
    from common.money import Money
    from matching import index as media_index
    from royalties.funding import prepaid_fund

    def person(name: str, role: str, **extra):
        return user_create(
            username=name,
            email=f"{name}@bench.invalid",
            password=None,
            role=role,
            email_verified=True,
            **extra,
        )

    creator = person("writer", Role.CREATOR)
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
        fingerprinting.asset_fingerprint(asset_id=asset.asset.pk)
    print(f"registered and fingerprinted {args.works} works in {time.perf_counter() - started:.0f} s")
    vendors = []
    for n in range(max(1, args.clients)):
        vendor = person(f"vendor{n}", Role.VENDOR, organisation_name=f"Bench AI {n}")
        organisation = vendor.organisations.get()
        prepaid_fund(organisation=organisation, amount=Money(10**9, "USD"), external_ref=f"bench-{n}")
        key = api_key_create(user=vendor, name="bench", scopes=["access"], organisation=organisation).api_key
        vendors.append((organisation, key))
    indexes = media_index.current()
    pad(indexes.passages, vectors, args.passages - len(indexes.passages), noise, "pad")
    pad(indexes.search, fast, args.passages - len(indexes.search), noise, "pad")
    print(f"indexes: {len(indexes.passages)} and {len(indexes.search)} passages (padded)")

    def call(organisation, key, n: int) -> tuple[float, int, int]:
        request = services.RetrievalRequest(
            query=queries[n % len(queries)],
            max_tokens=600,
            use_class="ai-input",
            territory="US",
            currency="USD",
        )
        began = time.perf_counter()
        result = services.retrieval_request(
            organisation=organisation,
            api_key=key,
            idempotency_key=f"bench-{organisation.pk}-{n}",
            request=request,
        )
        import json

        body = json.loads(result.body)
        return time.perf_counter() - began, len(body["passages"]), body["total_minor"]

    done = [call(*vendors[0], n) for n in range(args.calls)]
    times = [d[0] for d in done]
    print(
        f"retrieve calls ({connection.vendor}, {args.calls} in a row): "
        f"p50 {1000 * percentile(times, 0.5):.0f} ms, p95 {1000 * percentile(times, 0.95):.0f} ms, "
        f"{len(times) / sum(times):.1f} calls/s; {np.mean([d[1] for d in done]):.1f} passages and "
        f"{np.mean([d[2] for d in done]):.1f} minor units per call"
    )
    if args.clients:
        connections.close_all()
        results = multiprocessing.get_context("fork").Queue()

        def client(number: int) -> None:
            organisation, key = vendors[number]
            mine, n, deadline = [], args.calls, time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                mine.append(call(organisation, key, n)[0])
                n += 1
            connections.close_all()
            results.put(mine)

        workers = [
            multiprocessing.get_context("fork").Process(target=client, args=(n,)) for n in range(args.clients)
        ]
        for worker in workers:
            worker.start()
        together = [t for _ in workers for t in results.get()]
        for worker in workers:
            worker.join()
        print(
            f"retrieve calls ({connection.vendor}, {args.clients} processes at once, {args.seconds:.0f} s): "
            f"{len(together) / args.seconds:.1f} calls/s, p50 {1000 * percentile(together, 0.5):.0f} ms, "
            f"p95 {1000 * percentile(together, 0.95):.0f} ms"
        )
    connection.creation.destroy_test_db(test_name, verbosity=0)


if __name__ == "__main__":
    main()
