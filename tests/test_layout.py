"""The platform/ source root must never become a package: it would shadow the standard library's module."""

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_platform_folder_has_no_init_file() -> None:
    assert (ROOT / "platform").is_dir()
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_top_level_layout_is_in_place() -> None:
    for name in ("platform", "royalties", "media", "contracts", "tests", "manage.py", "pyproject.toml"):
        assert (ROOT / name).exists(), name


def test_platform_module_is_the_standard_librarys() -> None:
    import platform

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert Path(platform.__file__).parent == stdlib
    assert platform.python_version().startswith("3.11")


def test_stripe_celery_and_uuid_import_inside_the_django_process() -> None:
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings.test');"
        "django.setup(); import platform, uuid, stripe, celery; from config import celery_app;"
        "print(platform.python_version(), uuid.uuid4().version, celery_app.main, bool(stripe.VERSION))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    version, uuid_version, app_name, has_stripe = result.stdout.split()
    assert version.startswith("3.11")
    assert (uuid_version, app_name, has_stripe) == ("4", "tribute", "True")
