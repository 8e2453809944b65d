"""Works released before releasing published them: a draft with a release on sale becomes published, as
release_set now makes it (the work is on sale to everyone, so it is no private draft)."""

from django.db import migrations


def publish_released_drafts(apps, schema_editor):  # type: ignore[no-untyped-def]
    Release = apps.get_model("studio", "Release")
    Work = apps.get_model("catalog", "Work")
    on_sale = Release.objects.filter(status="on_sale").values("work_id")
    Work.objects.filter(pk__in=on_sale, status="draft").update(status="published")


class Migration(migrations.Migration):
    dependencies = [
        ("studio", "0003_voice_composition_and_release_approval"),
        ("catalog", "0012_watches"),
    ]

    operations = [migrations.RunPython(publish_released_drafts, migrations.RunPython.noop)]
