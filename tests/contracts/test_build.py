"""The committed artifacts are exactly what the committed sources compile to."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contracts import build
from contracts.artifacts import BUILD_DIR, load_artifact


@pytest.fixture(scope="module")
def fresh_build() -> dict[Path, str]:
    return build.build_all()


def test_committed_artifacts_match_a_fresh_build(fresh_build: dict[Path, str]) -> None:
    assert build.differences(fresh_build) == []
    assert {path.relative_to(BUILD_DIR).as_posix() for path in fresh_build} == {
        "PayoutDistributor.json",
        "TestStablecoin.json",
    }


def test_artifacts_carry_abi_bytecode_and_compiler_but_no_machine_paths(fresh_build: dict[Path, str]) -> None:
    for path, text in fresh_build.items():
        artifact = json.loads(text)
        assert artifact["compiler"] == "vyper 0.4.3"
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2
        assert artifact["source_path"].startswith("contracts/src/")
        assert str(Path.home()) not in text and str(BUILD_DIR.parent.parent) not in text, path
    assert load_artifact("TestStablecoin").name == "TestStablecoin"


def test_check_reports_a_stale_or_orphaned_artifact(
    fresh_build: dict[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "build"
    shutil.copytree(BUILD_DIR, copy)
    monkeypatch.setattr(build, "BUILD_DIR", copy)
    relocated = {copy / path.relative_to(BUILD_DIR): text for path, text in fresh_build.items()}
    stale = copy / "TestStablecoin.json"
    stale.write_text(stale.read_text().replace('"vyper 0.4.3"', '"vyper 0.4.2"'))
    (copy / "Removed.json").write_text("{}")

    problems = build.differences(relocated)

    assert [problem.split(":")[0] for problem in problems] == ["out of date", "no source for"]
    assert problems[0].endswith("TestStablecoin.json") and problems[1].endswith("Removed.json")
