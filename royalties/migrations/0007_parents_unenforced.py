"""A revenue item's work is no longer a constraint the database enforces, like the access event's (see
access.AccessEvent): one row per access, each one locking the work's row on PostgreSQL."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_output_claim_subject_output"),
        ("royalties", "0006_payout_schedules"),
    ]

    operations = [
        migrations.AlterField(
            model_name="revenueitem",
            name="work",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="revenue_items",
                to="catalog.work",
            ),
        ),
    ]
