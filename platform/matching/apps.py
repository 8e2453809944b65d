from django.apps import AppConfig


class MediaConfig(AppConfig):
    name = "matching"
    label = "media"  # the label the tables and migrations were made under
    verbose_name = "Media fingerprints"
    default_auto_field = "django.db.models.BigAutoField"
