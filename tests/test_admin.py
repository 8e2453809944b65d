import pytest
from django.contrib import admin
from django.test import Client

from accounts.models import User
from tests import factories

pytestmark = pytest.mark.django_db


def test_every_model_of_our_apps_is_in_the_admin_and_its_pages_open() -> None:
    ours = {"accounts", "catalog", "media", "access", "royalties"}
    registered = {model._meta.label for model in admin.site._registry if model._meta.app_label in ours}
    # Rows that only make sense inside their parent (offer uses, shares, memberships) are inlines.
    registered |= {
        inline.model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in ours
        for inline in model_admin.inlines
    }
    from django.apps import apps

    expected = {m._meta.label for app in ours for m in apps.get_app_config(app).get_models()}
    assert registered == expected

    creator = factories.creator()
    factories.offer(creator, factories.work(creator))
    staff = User.objects.create_superuser(username="op", email="op@example.com", password="pw-123456789")
    client = Client()
    client.force_login(staff)
    for model in admin.site._registry:
        if model._meta.app_label not in ours:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url


def test_history_models_are_read_only_in_the_admin() -> None:
    from catalog.models import Grant, Offer, SplitSheet

    staff = User.objects.create_superuser(username="op", email="op@example.com", password="pw-123456789")
    client = Client()
    client.force_login(staff)
    for model in (Offer, SplitSheet, Grant):
        assert client.get(f"/admin/catalog/{model._meta.model_name}/add/").status_code == 403
