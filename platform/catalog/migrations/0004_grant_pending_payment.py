"""Grants wait for their licence fee (`pending_payment`) until it is paid.

Active grants whose fee was never recorded (made before fees were charged where licences are granted)
wait for it from now on; accepting the offer again pays it.
"""

from django.conf import settings
from django.db import migrations, models


def unpaid_grants_wait(apps, schema_editor):
    grant_model = apps.get_model("catalog", "Grant")
    revenue_model = apps.get_model("royalties", "RevenueItem")
    paid = revenue_model.objects.filter(source="licence_fee").values_list("source_key", flat=True)
    paid_ids = {int(key.split(":", 1)[1]) for key in paid.iterator()}
    unpaid = grant_model.objects.filter(status="active", fee_minor__gt=0).exclude(pk__in=paid_ids)
    unpaid.update(status="pending_payment")


class Migration(migrations.Migration):
    dependencies = [
        ("royalties", "0007_parents_unenforced"),
        ("accounts", "0003_wallet_challenge_and_stripe_state"),
        ("catalog", "0003_output_claim_subject_output"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="grant",
            name="grant_one_open_per_offer_and_licensee",
        ),
        migrations.AlterField(
            model_name="grant",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending_approval", "Waiting for the owner's approval"),
                    ("pending_payment", "Waiting for the licence fee"),
                    ("active", "Active"),
                    ("rejected", "Rejected"),
                    ("revoked", "Revoked"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddConstraint(
            model_name="grant",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["pending_approval", "pending_payment", "active"])),
                fields=("offer", "licensee"),
                name="grant_one_open_per_offer_and_licensee",
            ),
        ),
        migrations.RunPython(unpaid_grants_wait, migrations.RunPython.noop),
    ]
