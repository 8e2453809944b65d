"""A throwaway Django project for a benchmark: a fresh SQLite database in its own folder, migrated, this
checkout's code, and Django set up in the calling process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def django_setup(var_dir: str, **settings: str) -> dict[str, str]:
    """Migrate a fresh SQLite database under `var_dir` and set Django up here (development settings, with
    `settings` as extra environment); returns the environment, for processes the bench starts."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + uuid.uuid4().hex,
        TRIBUTE_VAR_DIR=var_dir,
        SQLITE_PATH=str(Path(var_dir) / "bench.sqlite3"),
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),  # this checkout's code
        **settings,
    )
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    os.environ.update(env)
    import django

    django.setup()
    return env
