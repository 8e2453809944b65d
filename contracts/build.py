"""Compile every Vyper source under `contracts/src/` into `contracts/build/<Name>.json`.

    python -m contracts.build            # (re)write the artifacts
    python -m contracts.build --check    # rebuild in memory; exit 1 if the committed ones differ

The compiler runs in-process (the `vyper` package, pinned by VYPER_VERSION and by each
source's `# pragma version`). Output is deterministic: the same sources give
byte-identical JSON, so `--check` in CI catches a source edited without a rebuild.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.artifacts import BUILD_DIR, CONTRACTS_DIR, SOURCE_DIR

VYPER_VERSION = "0.4.3"


class BuildError(Exception):
    pass


def source_files() -> list[Path]:
    return sorted(SOURCE_DIR.rglob("*.vy"))


def artifact_name(source: Path) -> str:
    """contracts/src/sub/Name.vy -> "sub/Name" (a source in a subfolder)."""
    return source.relative_to(SOURCE_DIR).with_suffix("").as_posix()


def compile_source(source: Path) -> dict[str, Any]:
    import vyper
    from vyper.compiler import compile_code

    if vyper.__version__ != VYPER_VERSION:
        raise BuildError(f"vyper {VYPER_VERSION} is required, found {vyper.__version__}")
    text = source.read_text(encoding="utf-8")
    # A path relative to the repository: the artifact must not depend on where it was built.
    relative_path = source.relative_to(CONTRACTS_DIR.parent).as_posix()
    output = compile_code(
        text,
        contract_path=relative_path,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    return {
        "contract_name": source.stem,
        "source_path": relative_path,
        "source_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "compiler": f"vyper {VYPER_VERSION}",
        "abi": output["abi"],
        "bytecode": output["bytecode"],
        "bytecode_runtime": output["bytecode_runtime"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def build_all() -> dict[Path, str]:
    """Compile everything; answer {artifact path: file text}."""
    return {
        BUILD_DIR / f"{artifact_name(source)}.json": render(compile_source(source))
        for source in source_files()
    }


def _shown(path: Path) -> str:
    try:
        return path.relative_to(CONTRACTS_DIR.parent).as_posix()
    except ValueError:
        return str(path)


def differences(built: dict[Path, str]) -> list[str]:
    problems = []
    for path, text in sorted(built.items()):
        if not path.exists():
            problems.append(f"missing: {_shown(path)}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"out of date: {_shown(path)}")
    for path in sorted(BUILD_DIR.rglob("*.json")):
        if path not in built:
            problems.append(f"no source for: {_shown(path)}")
    return problems


def write(built: dict[Path, str]) -> None:
    for path, text in built.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.build", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="compare a fresh build with the committed artifacts"
    )
    args = parser.parse_args(argv)
    built = build_all()
    if args.check:
        problems = differences(built)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `python -m contracts.build` and commit contracts/build/", file=sys.stderr)
            return 1
        print(f"{len(built)} artifacts up to date")
        return 0
    write(built)
    print(f"wrote {len(built)} artifacts to {BUILD_DIR.relative_to(CONTRACTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
