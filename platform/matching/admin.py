from django.contrib import admin

from common.admin import ReadOnlyAdmin
from matching.models import Fingerprint


@admin.register(Fingerprint)
class FingerprintAdmin(ReadOnlyAdmin):
    list_display = ("sha256", "kind", "algorithm", "created_at")
    list_filter = ("kind", "algorithm")
    search_fields = ("sha256",)
    exclude = ("data",)
