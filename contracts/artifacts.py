"""Built contract artifacts (ABI + bytecode) as committed under `contracts/build/`.

Reading an artifact needs no compiler; `contracts.build` writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parent
SOURCE_DIR = CONTRACTS_DIR / "src"
BUILD_DIR = CONTRACTS_DIR / "build"


class ArtifactNotFound(LookupError):
    """No built artifact of that name: run `python -m contracts.build`."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    bytecode_runtime: str
    compiler: str


def artifact_path(name: str) -> Path:
    """`TestStablecoin` -> build/TestStablecoin.json; `sub/Name` (a source in a subfolder) -> build/sub/..."""
    return BUILD_DIR / f"{name}.json"


@cache
def load_artifact(name: str) -> Artifact:
    path = artifact_path(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactNotFound(f"no artifact {name!r}: run `python -m contracts.build`") from None
    return Artifact(
        name=data["contract_name"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        bytecode_runtime=data["bytecode_runtime"],
        compiler=data["compiler"],
    )
