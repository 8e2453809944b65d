"""An independent x402 checker (PyPI x402-conformance, `x402conf resource`) against a live server: every
check of the unpaid GET of a content URL passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.security.live import Gunicorn, migrate, run_python, server_env

SETUP = """
from catalog.services import asset_upload
from tests import factories
creator = factories.creator()
work = factories.work(creator)
asset_upload(work=work, user=creator, data=factories.png_bytes(), filename="a.png")
factories.offer(creator, work, uses={"ai-generate": 25, "ai-train": 40})
print(json.dumps({"work": work.pk}))
"""


def test_x402conf_passes_every_check_on_a_content_url(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    migrate(env)
    work = run_python(SETUP, env)["work"]
    server = Gunicorn(env, workers=1, log=tmp_path / "gunicorn.log")
    try:
        checked = subprocess.run(
            [
                str(Path(sys.executable).with_name("x402conf")),
                "resource",
                "--fail-on-error",
                f"{server.url}/works/{work}/content",
                f"{server.url}/works/{work}/content?use=ai-train",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    report = json.loads(checked.stdout)
    assert len(report["results"]) == 2
    for target in report["results"]:
        ran = {check["check"][:2]: check["pass"] for check in target["checks"]}
        assert ran == dict.fromkeys(["P1", "P2", "P3", "P4", "P5", "P6", "P7"], True), target
