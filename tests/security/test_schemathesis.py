"""Schemathesis against the live site's /api/schema/: every operation, the examples, coverage, fuzzing and
stateful phases (it follows the links it infers between operations), as a creator, a fan and a vendor.

Pass criterion: zero 5xx and zero responses that violate the schema (status code, content type, headers,
body), and no operation that ignores authentication or serves an object after it was deleted. The number
of examples is bounded so each run takes about a minute; SECURITY_SCHEMATHESIS_EXAMPLES raises it for a
longer hunt, SECURITY_SCHEMATHESIS_SEED changes the seed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.security.live import ROOT

pytestmark = pytest.mark.security

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
]
SCHEMATHESIS = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "st"


@pytest.mark.parametrize("identity", ["creator_key", "fan_key", "vendor_key"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_site, identity, tmp_path) -> None:
    examples = os.environ.get("SECURITY_SCHEMATHESIS_EXAMPLES", "6")
    seed = os.environ.get("SECURITY_SCHEMATHESIS_SEED", "20261121")
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{live_site.url}/api/schema/?format=json",
        "--header",
        f"Authorization: Bearer {live_site.data[identity]}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        examples,
        "--seed",
        seed,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    before = live_site.server.log_text()
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)
    output = result.stdout + result.stderr
    server_log = live_site.server.log_text()[len(before) :]

    assert "Tested: " in output, output[-3000:]
    assert result.returncode == 0, output[-12000:]
    assert "Internal Server Error" not in server_log, server_log[-6000:]
    tested = int(output.split("Tested: ", 1)[1].split()[0])
    assert tested >= 40  # every operation of the schema was exercised
