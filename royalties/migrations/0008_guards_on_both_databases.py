"""The same ledger guards on both databases (royalties.db_guards), and payout periods of one form.

SQLite gains what PostgreSQL had (no DELETE of entries or transactions; a transaction's entries summing
to zero, checked before commit) and both gain that an entry's currency is its account's and that an
account's currency never changes.
"""

from django.db import migrations, models


def forward(apps, schema_editor):
    from royalties import db_guards

    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(db_guards.POSTGRESQL, params=None)
    elif vendor == "sqlite":
        for name in db_guards.SQLITE_REPLACED:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in db_guards.SQLITE:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    from royalties import db_guards

    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(db_guards.POSTGRESQL_BACKWARD, params=None)
    elif vendor == "sqlite":
        for name in ("entry_no_delete", "journaltransaction_no_delete", "journaltransaction_no_update"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS royalties_{name}")
        for name in ("entry_currency", "entry_balanced", "account_currency_fixed"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS royalties_{name}")


class Migration(migrations.Migration):
    dependencies = [("royalties", "0007_parents_unenforced")]

    operations = [
        migrations.AddConstraint(
            model_name="payout",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    period__regex="^[0-9]{4}-((0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?|W(0[1-9]|[1-4][0-9]|5[0-3]))$"
                ),
                name="payout_period_form",
            ),
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
