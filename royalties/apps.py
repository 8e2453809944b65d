from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

# SQLite rebuilds a table to alter it (a new CHECK constraint, a changed column) and the rebuild drops the
# table's triggers, so the append-only guards of migration 0002 are put back after every migrate.
SQLITE_GUARDS = [
    f"""CREATE TRIGGER IF NOT EXISTS royalties_{name}_no_update BEFORE UPDATE ON royalties_{table}
       BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE on royalties_{table} refused'); END"""
    for name, table in (("entry", "entry"), ("journal", "journaltransaction"))
]


def _restore_sqlite_guards(using: str = "default", **kwargs: Any) -> None:
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = set(connection.introspection.table_names())
    if {"royalties_entry", "royalties_journaltransaction"} <= tables:
        with connection.cursor() as cursor:
            for statement in SQLITE_GUARDS:
                cursor.execute(statement)


class RoyaltiesConfig(AppConfig):
    name = "royalties"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_restore_sqlite_guards, sender=self)
