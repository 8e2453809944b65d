"""Quotes in text: recall at zero false positives of lightly edited passages hidden in unrelated text,
over an index of real documents, for our winnowed shingles and two baselines (docs/text.md).

    python -m bench.text_quotes                  # 10,000 indexed documents, 300 queries per length
    python -m bench.text_quotes --quick          # 2,000 documents, 100 queries per length

Corpus: `media.samples.text` (Python 3.11 docs, PostgreSQL 15 manual, Debian Reference, GNU standards,
from Debian packages), cut into documents of 40-100 words. The first N documents (seeded shuffle) are
indexed; the rest are only used to build the 300-word host texts, so a host never shares a document with
the index. A positive query hides a passage of 50 (or 30) words of an indexed document, with 10% of its
words changed (a third substituted by a corpus word, a third dropped, a third with a word inserted after
them) plus case noise (a fifth of the words upper- or title-cased) and punctuation noise (commas and full
stops dropped or added), at a random word of a host. A negative query is a host alone.

Scores: for each method, a positive counts as found at threshold t when the right document scores above
t; every score of a wrong document (in positives) and every score in negatives is a false pair. Recall at
zero false positives is at t = the highest false score of the run (for that method and length).

Methods: ours (`media.text.quotes`, winnowed 3-word shingles chained along a diagonal); exact shingles
(every 8-word shingle of each document in a hash table, score = shared 8-word shingles); plain
MinHash-Jaccard (datasketch MinHash, 128 permutations, of each whole document's and the whole query's
3-word shingles; score = estimated Jaccard, computed against every document).
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections import Counter, defaultdict

import numpy as np
from datasketch import MinHash

from media.samples.text import documents
from media.text import quotes


def edit(words: list[str], rng: random.Random, vocabulary: list[str], rate: float = 0.10) -> list[str]:
    """Change `rate` of the words (substitute / drop / insert after), then case and punctuation noise."""
    count = max(1, round(len(words) * rate))
    chosen = set(rng.sample(range(len(words)), count))
    out: list[str] = []
    for i, word in enumerate(words):
        if i in chosen:
            action = rng.randrange(3)
            if action == 0:
                out.append(rng.choice(vocabulary))
            elif action == 1:
                continue
            else:
                out.extend([word, rng.choice(vocabulary)])
        else:
            out.append(word)
    noisy = []
    for word in out:
        roll = rng.random()
        if roll < 0.1:
            word = word.upper()
        elif roll < 0.2:
            word = word.title()
        roll = rng.random()
        if roll < 0.08:
            word = word.rstrip(",.;:")
        elif roll < 0.12:
            word = word + rng.choice(",.")
        noisy.append(word)
    return noisy


def host(pool: list[str], rng: random.Random, words: int = 300) -> list[str]:
    out: list[str] = []
    while len(out) < words:
        out.extend(rng.choice(pool).split())
    return out[:words]


class ExactShingles:
    K = 8

    def __init__(self) -> None:
        self.table: dict[int, list[int]] = defaultdict(list)

    @staticmethod
    def shingles(text: str) -> np.ndarray:
        return np.unique(quotes.shingle_hashes(quotes.words(text), ExactShingles.K))

    def add(self, doc: int, text: str) -> None:
        for value in self.shingles(text).tolist():
            self.table[value].append(doc)

    def scores(self, text: str) -> Counter[int]:
        found: Counter[int] = Counter()
        for value in self.shingles(text).tolist():
            found.update(self.table.get(value, ()))
        return found


class MinHashJaccard:
    def __init__(self) -> None:
        self.signatures: list[np.ndarray] = []

    @staticmethod
    def signature(text: str) -> np.ndarray:
        values = np.unique(quotes.shingle_hashes(quotes.words(text), 3))
        minhash = MinHash(num_perm=128, seed=1)
        minhash.update_batch([int(v).to_bytes(8, "little") for v in values.tolist()])
        return np.asarray(minhash.hashvalues, dtype=np.uint64)

    def add(self, text: str) -> None:
        self.signatures.append(self.signature(text))

    def scores(self, text: str) -> np.ndarray:
        matrix = np.vstack(self.signatures)
        return (matrix == self.signature(text)).mean(axis=1)


def distinct(corpus: list[str], run_words: int = 12) -> list[str]:
    """Documents in order, leaving out any that shares a run of 12 words with one kept before it: manuals
    repeat sentences (boilerplate, notes copied between pages), and a host text that really contains a
    passage of an indexed document would be a true quote, not a false positive. Shorter shared runs (set
    phrases) stay: they are what a quote finder must not mistake for a quote."""
    seen: set[int] = set()
    kept = []
    for text in corpus:
        shingles = set(np.unique(quotes.shingle_hashes(quotes.words(text), run_words)).tolist())
        if shingles & seen:
            continue
        seen |= shingles
        kept.append(text)
    return kept


def recall_at_zero_fp(positive: list[float], false_scores: list[float]) -> tuple[float, float]:
    threshold = max(false_scores) if false_scores else 0.0
    return sum(score > threshold for score in positive) / len(positive), threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300, help="positive queries per passage length")
    parser.add_argument("--negatives", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--hosts",
        choices=["other", "same"],
        default="other",
        help="hosts from other manuals than the index (default) or from held-out documents of the same ones",
    )
    args = parser.parse_args()
    if args.quick:
        args.documents, args.queries, args.negatives = 2_000, 100, 100
    rng = random.Random(args.seed)
    everything = documents(min_words=40, max_words=100)
    rng.shuffle(everything)
    if args.hosts == "other":
        # Index the Python and PostgreSQL manuals; hosts come from the Debian Reference and GNU standards.
        manuals = distinct(
            [text for source, text in everything if source.startswith(("python:", "postgresql:"))]
        )
        others = [text for source, text in everything if not source.startswith(("python:", "postgresql:"))]
        indexed, pool = manuals[: args.documents], others
        print(f"corpus: {len(manuals)} manual documents sharing no 12-word run; {len(pool)} host documents")
    else:
        corpus = distinct([text for _, text in everything])
        print(f"corpus: {len(everything)} documents, {len(corpus)} sharing no 12-word run with another")
        indexed, pool = corpus[: args.documents], corpus[args.documents :]
    if len(indexed) < args.documents or len(pool) < 50:
        raise SystemExit(f"corpus too small: {len(corpus)} documents")
    vocabulary = [w for text in pool[:200] for w in text.split() if w.isalpha()]
    print(f"indexed {len(indexed)} ({sum(len(t.split()) for t in indexed)} words)")

    ours: quotes.QuoteIndex[int] = quotes.QuoteIndex()
    exact, minhash = ExactShingles(), MinHashJaccard()
    started = time.process_time()
    for doc, text in enumerate(indexed):
        ours.add(doc, quotes.compute(text))
    ours_seconds = time.process_time() - started
    before = ours.entries
    for doc, text in enumerate(indexed):
        exact.add(doc, text)
        minhash.add(text)
    print(
        f"ours: {before} index entries ({ours.nbytes / 2**20:.1f} MiB), "
        f"fingerprinting {len(indexed) / ours_seconds:.0f} documents/s CPU"
    )

    long_enough = [i for i, text in enumerate(indexed) if len(text.split()) >= 60]
    queries: list[tuple[int | None, int, str]] = []
    for length in (50, 30):
        for _ in range(args.queries):
            doc = rng.choice(long_enough)
            words = indexed[doc].split()
            start = rng.randrange(0, len(words) - length + 1)
            passage = edit(words[start : start + length], rng, vocabulary)
            host_words = host(pool, rng)
            at = rng.randrange(0, len(host_words) + 1)
            queries.append((doc, length, " ".join(host_words[:at] + passage + host_words[at:])))
    for _ in range(args.negatives):
        queries.append((None, 0, " ".join(host(pool, rng))))

    results: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in ("ours", "exact", "minhash")}
    false: dict[str, list[float]] = {m: [] for m in results}
    worst: tuple[float, str, str] = (0.0, "", "")
    timings = []
    for truth, length, text in queries:
        started = time.perf_counter()
        found = ours.query(text, limit=10, min_score=0.0)
        timings.append(time.perf_counter() - started)
        scores = {m.ref_id: m.score for m in found}
        for m in found:
            if m.ref_id != truth and m.score > worst[0]:
                worst = (m.score, text[m.query_start : m.query_end], indexed[m.ref_id])
        exact_scores = exact.scores(text)
        jaccard = minhash.scores(text)
        for method, table in (("ours", scores), ("exact", exact_scores)):
            if truth is not None:
                results[method][length].append(float(table.get(truth, 0.0)))
            false[method].extend(float(v) for k, v in table.items() if k != truth)
        if truth is not None:
            results["minhash"][length].append(float(jaccard[truth]))
            false["minhash"].append(float(np.delete(jaccard, truth).max()))
        else:
            false["minhash"].append(float(jaccard.max()))

    print(f"\nqueries: {args.queries} positives per length, {args.negatives} negatives (hosts of 300 words)")
    print("| method | 50 words, recall @0FP | 30 words, recall @0FP | highest false score |")
    print("|---|---:|---:|---:|")
    names = {
        "ours": "winnowed shingles + diagonal chain (ours)",
        "exact": "exact 8-word shingles",
        "minhash": "MinHash-Jaccard, whole texts",
    }
    for method in ("ours", "exact", "minhash"):
        recall50, threshold = recall_at_zero_fp(results[method][50], false[method])
        recall30, _ = recall_at_zero_fp(results[method][30], false[method])
        print(f"| {names[method]} | {recall50:.3f} | {recall30:.3f} | {threshold:.3f} |")
    shipped50 = sum(s >= quotes.MATCH_SCORE for s in results["ours"][50]) / len(results["ours"][50])
    shipped30 = sum(s >= quotes.MATCH_SCORE for s in results["ours"][30]) / len(results["ours"][30])
    shipped_false = sum(s >= quotes.MATCH_SCORE for s in false["ours"])
    print(
        f"\nours at the shipped threshold (score >= {quotes.MATCH_SCORE}): "
        f"recall {shipped50:.3f} (50 words), "
        f"{shipped30:.3f} (30 words), {shipped_false} false pairs"
    )
    positives50 = sorted(results["ours"][50])
    positives30 = sorted(results["ours"][30])
    print(
        f"ours: positive scores, 5th percentile: {positives50[len(positives50) // 20]:.2f} (50 words), "
        f"{positives30[len(positives30) // 20]:.2f} (30 words); highest false: {max(false['ours']):.2f}"
    )
    print(f"ours, highest false pair ({worst[0]:.2f}): query passage “{worst[1][:300]}”")
    timings.sort()
    print(
        f"ours: query (300-350 words) p50 {1000 * timings[len(timings) // 2]:.2f} ms, "
        f"p95 {1000 * timings[int(len(timings) * 0.95)]:.2f} ms"
    )
    print(f"peak RSS of the run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
