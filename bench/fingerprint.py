"""All three fingerprint benchmarks in one command: images, audio, voices (docs/fingerprinting.md).

    python -m bench.fingerprint                  # the full runs in turn (about 15 minutes once rendered)
    python -m bench.fingerprint --quick          # the short image and audio runs, and the voice run
    python -m bench.fingerprint audio --seed 11  # one of them; what follows its name goes to it

Each benchmark builds its own corpus from registry packages and prints its figures side by side with its
anchors (pHash and PDQ for images, Chromaprint for audio); see each module for its options.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = {
    "image": "bench.fingerprint_image",
    "audio": "bench.fingerprint_audio",
    "voice": "bench.fingerprint_voice",
}
QUICK = {"image": ["--quick"], "audio": ["--quick"], "voice": []}


def main(argv: list[str]) -> int:
    if argv and argv[0] in BENCHMARKS:
        chosen, extra = [argv[0]], argv[1:]
    elif argv in ([], ["--quick"]):
        chosen, extra = list(BENCHMARKS), []
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for name in chosen:
        options = extra or (QUICK[name] if argv == ["--quick"] else [])
        print(f"== {name}: python -m {BENCHMARKS[name]} {' '.join(options)}", flush=True)
        status = subprocess.run([sys.executable, "-m", BENCHMARKS[name], *options], check=False).returncode
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
