import os
import subprocess
import sys


def test_the_default_database_is_sqlite_in_wal_mode_with_immediate_transactions(tmp_path) -> None:
    code = (
        "import django; django.setup();"
        "from django.db import connection, transaction;"
        "cursor = connection.cursor(); cursor.execute('PRAGMA journal_mode'); print(cursor.fetchone()[0]);"
        "settings = connection.settings_dict;"
        "print(settings['OPTIONS']['transaction_mode'], settings['CONN_MAX_AGE'], settings['ENGINE'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "SQLITE_PATH": str(tmp_path / "t.db"),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "IMMEDIATE", "None", "common.sqlite"]


def test_a_sqlite_database_url_gets_the_sqlite_backend_the_ledger_guards_need(tmp_path) -> None:
    code = (
        "from django.conf import settings; database = settings.DATABASES['default'];"
        "print(database['ENGINE'], database['NAME'], database['OPTIONS']['transaction_mode'])"
    )
    path = tmp_path / "site.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": f"sqlite:///{path}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["common.sqlite", str(path), "IMMEDIATE"]


def test_database_url_switches_to_postgresql_and_keeps_the_urls_options() -> None:
    code = (
        "from django.conf import settings; database = settings.DATABASES['default'];"
        "print(database['ENGINE'], database['OPTIONS']['sslmode'], database['OPTIONS']['prepare_threshold'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.dev",
        "DATABASE_URL": "postgres://someone@db.invalid:5432/tribute?sslmode=require",
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["common.postgresql", "require", "0"]
    env["DB_PREPARED_STATEMENTS"] = "0"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.split() == ["common.postgresql", "require", "None"]
