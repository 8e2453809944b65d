"""The database stops enforcing the access event's organisation, key, work and offer (see AccessEvent): on
PostgreSQL each took a shared lock on a row every access of the vendor also locks. The grant stays enforced."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0003_accessevent_fewer_indexes"),
        ("accounts", "0003_wallet_challenge_and_stripe_state"),
        ("catalog", "0003_output_claim_subject_output"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accessevent",
            name="api_key",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="accesses",
                to="accounts.apikey",
            ),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="offer",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="accesses",
                to="catalog.offer",
            ),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="organisation",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="accesses",
                to="accounts.organisation",
            ),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="work",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="accesses",
                to="catalog.work",
            ),
        ),
    ]
