"""The studio's dashboard pages ("Create"): terms in plain words, accepting, starting a job from the
form, progress by htmx polling, preview, manifest and release; other people's jobs are not found."""

from __future__ import annotations

import io

from django.test import Client

from studio.models import GenerationJob, Release
from studio.tasks import run_generation_job
from tests import factories


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_create_page_lists_offers_allowing_derivatives_and_the_wallet(image_catalogue):
    cat = image_catalogue
    page = logged_in(cat.fan).get("/dashboard/create/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-offer="{cat.offer.pk}"' in html and "10.00" in html  # the funded wallet
    assert 'href="/dashboard/create/"' in html  # the nav link


def test_a_vendor_is_told_the_studio_is_for_fans(db):
    page = logged_in(factories.vendor()).get("/dashboard/create/")
    assert page.status_code == 403


def test_from_terms_to_a_released_result(image_catalogue, photos):
    cat = image_catalogue
    client = logged_in(cat.fan)
    offer_page = client.get(f"/dashboard/create/offers/{cat.offer.pk}/").content.decode()
    assert "The licence costs 1.50" in offer_page and "30% of what your derivative earns" in offer_page
    assert "data-accept" in offer_page

    client.post(f"/dashboard/create/offers/{cat.offer.pk}/accept/")
    offer_page = client.get(f"/dashboard/create/offers/{cat.offer.pk}/").content.decode()
    assert "You hold this licence" in offer_page and 'data-generator="image-restyle"' in offer_page
    remix = offer_page.split('data-generator="audio-remix"', 1)[1].split("</article>", 1)[0]
    assert "data-not-applicable" in remix and "<form" not in remix  # an image has no instrumental
    photo = io.BytesIO(photos["Aqua"])
    photo.name = "me.jpg"
    started = client.post(
        f"/dashboard/create/offers/{cat.offer.pk}/start/",
        {"generator": "image-restyle", "title": "Aqua garden", "photo": photo},
    )
    job = GenerationJob.objects.get()
    assert started.status_code == 302 and started["Location"] == f"/dashboard/create/jobs/{job.pk}/"
    waiting = client.get(f"/dashboard/create/jobs/{job.pk}/").content.decode()
    assert (
        'hx-trigger="every 1s"' in waiting and f'hx-get="/dashboard/create/jobs/{job.pk}/status/"' in waiting
    )

    run_generation_job(job.pk)
    status = client.get(f"/dashboard/create/jobs/{job.pk}/status/", HTTP_HX_REQUEST="true")
    assert status["HX-Refresh"] == "true" and 'data-status="succeeded"' in status.content.decode()
    done = client.get(f"/dashboard/create/jobs/{job.pk}/").content.decode()
    assert "data-manifest" in done and "Trusted" in done and "trainedAlgorithmicMedia" in done
    assert f"/api/v1/generation-jobs/{job.pk}/result" in done and "<img" in done

    client.post(f"/dashboard/create/jobs/{job.pk}/release/", {"price": "2.50"})
    release = Release.objects.get()
    assert (release.price_minor, release.work_id) == (250, GenerationJob.objects.get().result_work_id)
    client.post(f"/dashboard/create/jobs/{job.pk}/release/", {"price": "2.505"})
    release.refresh_from_db()
    assert release.price_minor == 250  # a third decimal is refused, not rounded


def test_the_restyle_form_is_refused_when_the_terms_lack_style(image_catalogue):
    from catalog.services import Terms, offer_publish

    cat = image_catalogue
    plain = offer_publish(
        work=cat.work, user=cat.creator, terms=Terms(currency="USD", uses={"derivative": 0})
    )
    client = logged_in(cat.fan)
    client.post(f"/dashboard/create/offers/{plain.pk}/accept/")
    html = client.get(f"/dashboard/create/offers/{plain.pk}/").content.decode()
    restyle = html.split('data-generator="image-restyle"', 1)[1].split("</article>", 1)[0]
    assert "data-refused" in restyle and "style" in restyle and "<form" not in restyle


def test_another_persons_job_and_status_are_not_found(image_catalogue, photos):
    from studio.services import InputFile, job_create, terms_accept

    cat = image_catalogue
    grant = terms_accept(user=cat.fan, offer=cat.offer).grant
    job = job_create(
        user=cat.fan,
        grant_id=grant.pk,
        generator_name="image-restyle",
        inputs={"photo": InputFile("a.jpg", photos["Aqua"])},
    )
    stranger = logged_in(factories.fan(username="eve"))
    assert stranger.get(f"/dashboard/create/jobs/{job.pk}/").status_code == 404
    assert stranger.get(f"/dashboard/create/jobs/{job.pk}/status/").status_code == 404
    assert stranger.post(f"/dashboard/create/jobs/{job.pk}/release/", {"price": "1"}).status_code == 404
    assert not Release.objects.exists()
