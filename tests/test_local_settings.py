"""`./dev up` serves with config.settings.local: DEBUG off, our error pages, no /uploads/ route, hashed
static files through whitenoise. Started here as `./dev up` starts it (migrate, collectstatic, gunicorn),
on a scratch var directory."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.security.live import PYTHON, ROOT, Gunicorn


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (127.0.0.1)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_served_demo_runs_with_debug_off_real_error_pages_and_no_uploads_route(tmp_path: Path) -> None:
    # given the local settings on a fresh var directory, prepared as `./dev up` prepares them
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SECRET_KEY", "SQLITE_PATH")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        TRIBUTE_VAR_DIR=str(tmp_path),
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
    )
    for command in (["migrate", "--no-input", "-v0"], ["collectstatic", "--no-input", "-v0"]):
        subprocess.run([PYTHON, "manage.py", *command], env=env, cwd=ROOT, check=True)
    blob = tmp_path / "uploads" / "blobs" / "ab" / "cd" / "abcd.png"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"stored bytes")
    server = Gunicorn(env, workers=1, production=True)
    try:
        # when pages are asked for
        missing_status, missing = _get(server.url + "/no-such-page/")
        upload_status, _ = _get(server.url + "/uploads/blobs/ab/cd/abcd.png")
        home_status, home = _get(server.url + "/")
        stylesheet = home.split('href="/static/css/', 1)[1].split('"', 1)[0]
        static_status, _ = _get(server.url + "/static/css/" + stylesheet)
    finally:
        server.stop()

    # then the 404 is ours and lists no URL configuration, stored files have no public route,
    # and static files are collectstatic's hashed copies
    assert missing_status == 404
    assert "Nothing here" in missing
    assert "URLconf" not in missing and "urlpatterns" not in missing and "DEBUG" not in missing
    assert upload_status == 404
    assert home_status == 200
    assert stylesheet.startswith("site.") and stylesheet.endswith(".css") and stylesheet != "site.css"
    assert static_status == 200
    # and the secret made for this machine is kept private
    assert (tmp_path / "keys" / "django-secret-key").stat().st_mode & 0o777 == 0o600
