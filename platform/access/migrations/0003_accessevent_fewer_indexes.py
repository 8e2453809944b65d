"""Access events keep no index per foreign key: each was one more page written by every access, and the
composite indexes already serve the organisation's and the work's lookups. The indexes are dropped by name
(the same on SQLite and PostgreSQL), so SQLite does not rebuild the table."""

import django.db.models.deletion
from django.db import migrations, models

_FOREIGN_KEYS = {
    "api_key": ("accounts.apikey", django.db.models.deletion.SET_NULL, "4a8d23df"),
    "grant": ("catalog.grant", django.db.models.deletion.PROTECT, "e5e71632"),
    "offer": ("catalog.offer", django.db.models.deletion.PROTECT, "c78f64a3"),
    "organisation": ("accounts.organisation", django.db.models.deletion.PROTECT, "3a858599"),
    "work": ("catalog.work", django.db.models.deletion.PROTECT, "8300d211"),
}


def _drop(name: str, digest: str) -> migrations.RunSQL:
    index = f"access_accessevent_{name}_id_{digest}"
    return migrations.RunSQL(
        f"DROP INDEX {index}", reverse_sql=f"CREATE INDEX {index} ON access_accessevent ({name}_id)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0002_access_count_and_hold"),
        ("accounts", "0003_wallet_challenge_and_stripe_state"),
        ("catalog", "0003_output_claim_subject_output"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="accessevent",
                    name=name,
                    field=models.ForeignKey(
                        db_index=False,
                        null=name == "api_key",
                        on_delete=on_delete,
                        related_name="accesses",
                        to=to,
                    ),
                )
                for name, (to, on_delete, _) in _FOREIGN_KEYS.items()
            ],
            database_operations=[_drop(name, digest) for name, (_, _, digest) in _FOREIGN_KEYS.items()],
        )
    ]
