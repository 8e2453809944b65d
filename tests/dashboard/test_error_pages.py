"""Error pages are ours, styled like the rest of the site, with DEBUG off: never Django's debug page, never
a traceback; API addresses keep answering problem+json."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import path

from accounts.models import User
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def crash(request):
    raise RuntimeError("secret detail that must not be shown")


urlpatterns = [path("crash/", crash)]


def test_an_unknown_page_gets_the_styled_404_with_a_way_back() -> None:
    visitor = Client().get("/no/such/page/")
    member = client_for(factories.fan()).get("/dashboard/works/999999/")

    for response in (visitor, member):
        body = response.content.decode()
        assert response.status_code == 404
        assert 'data-error-page="404"' in body and "/static/css/site.css" in body
        assert "Using the URLconf" not in body and "Page not found at" not in body
    assert 'href="/dashboard/">Back to your dashboard' in member.content.decode()


def test_an_api_address_that_matches_nothing_answers_problem_json() -> None:
    response = Client().get("/api/v1/no-such-thing")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"


def test_a_page_for_another_role_gets_a_403_page_with_no_data() -> None:
    response = client_for(factories.fan()).get("/dashboard/balance/")
    assert response.status_code == 403 and "/static/css/site.css" in response.content.decode()


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_a_crash_gets_the_styled_500_page_without_the_exception() -> None:
    client = Client(raise_request_exception=False)

    response = client.get("/crash/")

    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body and "/static/css/site.css" in body
    assert "secret detail" not in body and "Traceback" not in body and "RuntimeError" not in body


def test_a_form_posted_without_its_token_gets_the_styled_form_expired_page() -> None:
    client = Client(enforce_csrf_checks=True)

    response = client.post("/accounts/login/", {"username": "x", "password": "y"})

    body = response.content.decode()
    assert response.status_code == 403 and "This form has expired" in body and "Nothing was saved" in body
