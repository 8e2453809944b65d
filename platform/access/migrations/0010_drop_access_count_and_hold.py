"""PostgreSQL: the access_count_and_hold function goes. The one-statement charge (access.fastpath) now
counts the use and holds the price in plain SQL, each rule spliced from its one
definition (royalties.ledger.hold_sql, catalog.quota.usable_sql). Reversing re-creates the function with
the text of 0002, which stays as it was."""

import importlib

from django.db import migrations

_created = importlib.import_module("access.migrations.0002_access_count_and_hold")


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("access", "0009_access_refunds")]

    operations = [migrations.RunPython(_on_postgresql(_created.DROP), _on_postgresql(_created.CREATE))]
