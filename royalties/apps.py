from django.apps import AppConfig


class RoyaltiesConfig(AppConfig):
    name = "royalties"
    default_auto_field = "django.db.models.BigAutoField"
