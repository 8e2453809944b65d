from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _restore_sqlite_guards(using: str = "default", **kwargs: Any) -> None:
    """SQLite rebuilds a table to alter it (a new CHECK constraint, a changed column) and the rebuild drops
    the table's triggers, so the ledger's guards (royalties.db_guards) are put back after every migrate."""
    from royalties import db_guards

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = set(connection.introspection.table_names())
    if {"royalties_entry", "royalties_journaltransaction", "royalties_ledgeraccount"} <= tables:
        with connection.cursor() as cursor:
            for name in db_guards.SQLITE_REPLACED:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            for statement in db_guards.SQLITE:
                cursor.execute(statement)


class RoyaltiesConfig(AppConfig):
    name = "royalties"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from common.sqlite.base import register_commit_check
        from royalties import db_guards

        register_commit_check(db_guards.JOURNAL, db_guards.journal_unbalanced)
        post_migrate.connect(_restore_sqlite_guards, sender=self)
