import pytest
from django.core.exceptions import ImproperlyConfigured

from common.env import env_bool, env_int, env_list, env_secret


def test_env_helpers_read_typed_values(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("T_BOOL", "yes")
    monkeypatch.setenv("T_INT", " 42 ")
    monkeypatch.setenv("T_LIST", "a, b,,c")
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    monkeypatch.setenv("T_SECRET_FILE", str(secret_file))
    assert env_bool("T_BOOL") is True
    assert env_int("T_INT", 1) == 42
    assert env_list("T_LIST") == ["a", "b", "c"]
    assert env_secret("T_SECRET", required=True) == "s3cret"
    assert env_int("T_MISSING", 7) == 7


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("T_BOOL", "maybe", lambda: env_bool("T_BOOL")),
        ("T_INT", "ten", lambda: env_int("T_INT", 1)),
        ("T_INT", "-3", lambda: env_int("T_INT", 1, minimum=0)),
    ],
)
def test_env_helpers_refuse_malformed_values_naming_the_variable(monkeypatch, name, value, read) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        read()


def test_a_required_secret_must_be_set(monkeypatch) -> None:
    monkeypatch.delenv("T_ABSENT", raising=False)
    monkeypatch.delenv("T_ABSENT_FILE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="T_ABSENT"):
        env_secret("T_ABSENT", required=True)


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE"}}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
