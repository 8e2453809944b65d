""" "In her voice": a fan's vocal converted into a licensed VOICE work's voice, end to end on real speech
(Festival voices recorded from real speakers): charged per the voice offer, signed, traced to the voice,
released after the voice owner's approval, sold and split up the chain; composed with a licensed
instrumental into one job; refused before any work under the offer's limits; and a vendor's voice service
plugged in through the external-generator hook."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from access.models import AccessEvent
from accounts.models import User
from catalog import consent
from catalog.models import Claim, Offer, Work, WorkParent
from catalog.services import Terms, asset_upload, offer_publish
from catalog.tasks import fingerprint_asset
from common.money import Money, allocate
from common.problems import Conflict
from royalties.models import LedgerAccount, RevenueItem, RevenueSource
from royalties.selectors import fee_key, payable_key
from royalties.settlement import revenue_settle
from studio import selectors
from studio.models import GenerationJob, JobStatus, Purchase, Release, ReleaseStatus
from studio.services import release_purchase, wallet_fund
from studio.tasks import run_generation_job
from tests import factories
from tests.studio.conftest import SAMPLES, publish
from tests.studio.http import content
from tests.studio.voice_vendor import running_voice_service

SPEECH = SAMPLES / "speech"
TARGET, SINGER = "festival-kal", "festival-slt"  # the licensed voice (a man's), the fan (a woman)
ENROLMENT, FAN_TAKE = (0, 1, 3), 2  # the voice's recordings, and the fan's own sentence held apart
VOICE_PRICE, VOICE_FEE, VOICE_SHARE = 75, 200, 5000  # the seed's 50/50


@pytest.fixture(scope="session")
def speech_takes() -> dict[str, list[Path]]:
    from media.samples import speech

    speech.ensure_system_packages()
    return speech.render_speech(SPEECH, [TARGET, SINGER], (*ENROLMENT, FAN_TAKE))


@pytest.fixture(scope="session")
def fan_vocal(speech_takes) -> bytes:
    return speech_takes[SINGER][-1].read_bytes()  # about 5 s


@dataclass
class VoiceCatalogue:
    singer: User
    fan: User
    voice: Work
    offer: Offer


def voice_work(singer: User, takes: list[Path], **terms) -> tuple[Work, Offer]:
    work = factories.work(singer, kind="voice", title="Theo's voice")
    for number, path in enumerate(takes[: len(ENROLMENT)]):
        asset_upload(work=work, user=singer, data=path.read_bytes(), filename=f"take-{number}.wav")
    fields = {
        "uses": {"derivative": 0, "voice": VOICE_PRICE},
        "derivative_share_bps": VOICE_SHARE,
        "licence_fee_minor": VOICE_FEE,
        "commercial_use": True,
    }
    fields.update(terms)
    return work, factories.offer(singer, work, **fields)


@pytest.fixture
def voice_catalogue(db, speech_takes) -> VoiceCatalogue:
    singer = factories.creator(username="theo", display_name="Theo")
    fan = factories.fan(username="kai", display_name="Kai")
    work, offer = voice_work(
        singer,
        speech_takes[TARGET],
        explicit_content_allowed=False,
        max_vocal_seconds=30,
        release_approval_required=True,
    )
    wallet_fund(user=fan, amount=Money(1_000, "USD"), external_ref="kai-1")
    return VoiceCatalogue(singer=singer, fan=fan, voice=work, offer=offer)


def fingerprint_voice(work: Work) -> None:
    """The fingerprint task's body for each recording: audio landmarks and the voice index's embedding
    (left out where a test does not trace, to keep it fast)."""
    for asset in work.assets.all():
        fingerprint_asset(asset.pk)


def wallet(user) -> int:
    return selectors.wallet_available(user=user, currency="USD")


def payable(user) -> int:
    account = LedgerAccount.objects.filter(key=payable_key(user.pk, "USD")).first()
    return account.balance_minor if account else 0


def upload(name: str, data: bytes):
    file = io.BytesIO(data)
    file.name = name
    return file


def start(client, grant, vocal: bytes, generator: str = "voice-convert", **fields):
    data = {"grant": grant.pk, "generator": generator, "vocal": upload("me.wav", vocal)}
    data.update(fields)
    return client.post("/api/v1/generation-jobs", data, format="multipart")


def stripped_trace_names(data: bytes, work_id: int) -> bool:
    """Decoded and written again as FLAC (no manifest), the file is still found by its fingerprint."""
    from catalog import tracing

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    flac = io.BytesIO()
    soundfile.write(flac, samples, rate, format="FLAC")
    info, matches = tracing.trace(data=flac.getvalue(), user=None)
    return tracing.manifest_of(data=flac.getvalue(), info=info) is None and work_id in [
        m.work.pk for m in matches if m.match.confidence >= 0.9
    ]


def voice_attribution(client, data: bytes, voice_id: int) -> list[dict]:
    """The trace's matches of the voice work through the platform's voice index (speaker embeddings)."""
    traced = client.post("/api/v1/trace", {"file": upload("v.wav", data)}, format="multipart").json()
    return [m for m in traced["matches"] if m["work"] == voice_id and m["kind"] == "voice"]


def fee_and_rest(amount: int, settings) -> tuple[int, int]:
    fee, rest = allocate(amount, [settings.PLATFORM_FEE_BPS, 10_000 - settings.PLATFORM_FEE_BPS])
    return fee, rest


def test_a_fans_vocal_becomes_a_signed_traced_derivative_of_the_voice_released_after_approval_and_split(
    voice_catalogue, fan_vocal, as_user, settings
):
    cat = voice_catalogue
    fingerprint_voice(cat.voice)
    client = as_user(cat.fan)
    accepted = client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept")
    assert (accepted.status_code, accepted.json()["fee_charged_minor"]) == (201, VOICE_FEE)
    grant = cat.fan.grants.get()

    # when the fan sends their vocal, declared clean as the terms require, and the job runs
    response = start(client, grant, fan_vocal, explicit="false", title="Kai sings as Theo")
    assert response.status_code == 201, response.content
    run_generation_job(response.json()["id"])

    # then it is charged the voice's per-use price through the access API, from the wallet, once
    job = GenerationJob.objects.select_related("result_work", "result_asset__blob").get(
        pk=response.json()["id"]
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.charged_minor == VOICE_PRICE
    assert wallet(cat.fan) == 1_000 - VOICE_FEE - VOICE_PRICE
    event = AccessEvent.objects.get(organisation__personal_wallet__user=cat.fan)
    assert (event.use_class, event.price_minor, event.work_id, event.grant_id) == (
        "voice",
        VOICE_PRICE,
        cat.voice.pk,
        grant.pk,
    )
    # a derivative of the VOICE work, with the voice's share from the grant
    link = WorkParent.objects.get(child=job.result_work)
    assert (link.parent_id, link.grant_id, link.share_bps) == (cat.voice.pk, grant.pk, VOICE_SHARE)
    assert "Based on “Theo's voice” by Theo" in job.result_work.description
    # signed: the manifest names the voice work (its recordings as parent ingredients), the grant and receipt
    manifest = job.manifest
    assert manifest["validation_state"] == "Trusted" and manifest["ai_generated"] is True
    parents = [i for i in manifest["ingredients"] if i["relationship"] == "parentOf"]
    assert parents and {i["title"] for i in parents} == {f"Theo's voice (work #{cat.voice.pk})"}
    assert manifest["licence"]["parents"][0]["work"] == cat.voice.pk
    assert manifest["licence"]["parents"][0]["uses"] == ["derivative", "voice"]
    assert manifest["licence"]["explicit_declared"] is False
    assert manifest["licence"]["access_ids"] == [str(event.access_id)]

    # traced: the product's trace finds the result (its landmarks, with or without the manifest) and names
    # the VOICE work it was made in from the registered lineage
    data = content(client.get(f"/api/v1/generation-jobs/{job.pk}/result"))
    traced = client.post("/api/v1/trace", {"file": upload("song.wav", data)}, format="multipart").json()
    found = next(m for m in traced["matches"] if m["work"] == job.result_work_id)
    assert found["kind"] == "audio" and found["confidence"] >= 0.9
    assert found["derived_from"] == [
        {"work": cat.voice.pk, "title": "Theo's voice", "work_kind": "voice", "share_bps": VOICE_SHARE}
    ]
    assert traced["manifest"]["licence"]["grant"] == grant.pk
    assert job.result_work_id is not None and stripped_trace_names(data, job.result_work_id)
    # ...and the fan, licensed, is not claimed against by the fingerprint task
    assert not Claim.objects.exists()

    revenue_settle()  # the licence fee and the per-use price reach the singer, less the platform's fee
    singer_before_sale = payable(cat.singer)
    assert singer_before_sale == fee_and_rest(VOICE_FEE, settings)[1] + fee_and_rest(VOICE_PRICE, settings)[1]

    # released: waiting for the voice owner's approval, it cannot be bought
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(2_000, "USD"), external_ref="ada-1")
    released = client.post(
        "/api/v1/releases",
        {"work": job.result_work_id, "price_minor": 1_000, "currency": "USD"},
        format="json",
    )
    assert released.status_code == 201, released.content
    release_id = released.json()["id"]
    assert released.json()["status"] == "pending_approval"
    assert released.json()["approvals"][0]["status"] == "pending"
    assert as_user(buyer).post(f"/api/v1/releases/{release_id}/purchase").status_code == 404
    assert as_user(buyer).get("/api/v1/releases").json()["count"] == 0
    with pytest.raises(Conflict) as not_on_sale:
        release_purchase(buyer=buyer, release=Release.objects.get(pk=release_id))
    assert not_on_sale.value.problem_code == "release_not_on_sale"
    # the voice owner sees it waiting, listens, and approves it
    waiting = as_user(cat.singer).get("/api/v1/release-approvals", {"status": "pending"}).json()
    assert [a["release"] for a in waiting["results"]] == [release_id]
    listened = as_user(cat.singer).get(f"/api/v1/releases/{release_id}/download")
    assert listened.status_code == 200 and content(listened)
    approved = as_user(cat.singer).post(f"/api/v1/releases/{release_id}/approve")
    assert (approved.status_code, approved.json()["status"]) == (200, "on_sale")

    # sold and split up the chain: the platform's fee, then the voice's 50%, the rest the fan's
    bought = as_user(buyer).post(
        f"/api/v1/releases/{release_id}/purchase", {"price_minor": 1_000}, format="json"
    )
    assert bought.status_code == 201, bought.content
    sale = RevenueItem.objects.get(source=RevenueSource.SALE)
    assert (sale.work_id, sale.amount_minor) == (job.result_work_id, 1_000)
    fee_account = LedgerAccount.objects.get(key=fee_key("USD")).balance_minor
    revenue_settle()
    assert LedgerAccount.objects.get(key=fee_key("USD")).balance_minor - fee_account == 100
    assert payable(cat.singer) - singer_before_sale == 450
    assert payable(cat.fan) == 450
    assert wallet(buyer) == 1_000


@pytest.fixture(scope="session")
def instrumental_song(instrumental) -> bytes:
    return instrumental


def test_a_vocal_in_her_voice_over_a_licensed_instrumental_is_one_job_charging_both_and_splitting_both_chains(
    voice_catalogue, fan_vocal, instrumental_song, as_user, settings
):
    cat = voice_catalogue
    artist = factories.creator(username="sol", display_name="Sol")
    song, song_offer = publish(
        artist,
        kind="audio",
        data=instrumental_song,
        filename="instrumental.wav",
        uses={"derivative": 0},
        derivative_share_bps=3000,
        licence_fee_minor=100,
        commercial_use=True,
    )
    client = as_user(cat.fan)
    assert client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept").status_code == 201
    assert client.post(f"/api/v1/offers/{song_offer.pk}/studio-accept").status_code == 201
    voice_grant, song_grant = cat.fan.grants.get(offer=cat.offer), cat.fan.grants.get(offer=song_offer)
    assert wallet(cat.fan) == 1_000 - VOICE_FEE - 100  # both licence fees, once each

    # one job: the vocal converted into her voice, then sung over the instrumental by the remix
    response = start(
        client, voice_grant, fan_vocal, explicit="false", compose_with=song_grant.pk, vocal_bpm="100"
    )
    assert response.status_code == 201, response.content
    assert (response.json()["compose_with"], response.json()["compose_generator"]) == (
        song_grant.pk,
        "audio-remix",
    )
    run_generation_job(response.json()["id"])

    job = GenerationJob.objects.select_related("result_work").get(pk=response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    # both uses charged: the voice per use (metered), the song's derivative use by its licence fee above
    assert job.charged_minor == VOICE_PRICE
    assert wallet(cat.fan) == 1_000 - VOICE_FEE - 100 - VOICE_PRICE
    assert list(AccessEvent.objects.values_list("work_id", "use_class", "price_minor")) == [
        (cat.voice.pk, "voice", VOICE_PRICE)
    ]
    # a derivative of both, each with its share from its own grant
    links = {
        link.parent_id: (link.grant_id, link.share_bps)
        for link in WorkParent.objects.filter(child=job.result_work)
    }
    assert links == {cat.voice.pk: (voice_grant.pk, VOICE_SHARE), song.pk: (song_grant.pk, 3000)}
    # the manifest names both parents and both grants
    licence = job.manifest["licence"]
    assert [(p["work"], p["grant"], p["share_bps"]) for p in licence["parents"]] == [
        (cat.voice.pk, voice_grant.pk, VOICE_SHARE),
        (song.pk, song_grant.pk, 3000),
    ]
    assert licence["generator"] == "voice-convert + audio-remix"
    titles = {i["title"] for i in job.manifest["ingredients"] if i["relationship"] == "parentOf"}
    assert titles == {f"Theo's voice (work #{cat.voice.pk})", f"Licensed audio (work #{song.pk})"}
    assert set(job.details) == {"voice-convert", "audio-remix"}
    # traced to the instrumental by its landmarks
    data = content(client.get(f"/api/v1/generation-jobs/{job.pk}/result"))
    traced = client.post("/api/v1/trace", {"file": upload("mix.wav", data)}, format="multipart").json()
    assert song.pk in [
        m["work"] for m in traced["matches"] if m["kind"] == "audio" and m["confidence"] >= 0.9
    ]

    # released (after the voice owner's approval), sold, and split up both chains exactly
    revenue_settle()
    before = {user.pk: payable(user) for user in (cat.singer, artist, cat.fan)}
    release = client.post(
        "/api/v1/releases",
        {"work": job.result_work_id, "price_minor": 1_000, "currency": "USD"},
        format="json",
    ).json()
    assert release["status"] == "pending_approval"
    assert as_user(artist).post(f"/api/v1/releases/{release['id']}/approve").status_code == 404
    assert as_user(cat.singer).post(f"/api/v1/releases/{release['id']}/approve").json()["status"] == "on_sale"
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    assert as_user(buyer).post(f"/api/v1/releases/{release['id']}/purchase").status_code == 201
    revenue_settle()
    # 10.00: the platform 1.00, then of 9.00 the voice 50% (4.50) and the song 30% (2.70), the fan 1.80
    assert payable(cat.singer) - before[cat.singer.pk] == 450
    assert payable(artist) - before[artist.pk] == 270
    assert payable(cat.fan) - before[cat.fan.pk] == 180


def _refusal_setup(cat, client):
    assert client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept").status_code == 201
    return cat.fan.grants.get(offer=cat.offer)


def padded(vocal: bytes, samples: int) -> bytes:
    """The same take with a few samples of silence after it: other bytes, the same voice and length."""
    data, rate = soundfile.read(io.BytesIO(vocal), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate([data, np.zeros(samples, dtype="int16")]), rate, format="WAV")
    return buffer.getvalue()


def _nothing_happened(cat, balance, vocal: bytes) -> None:
    import hashlib

    sha = hashlib.sha256(vocal).hexdigest()
    assert wallet(cat.fan) == balance
    assert not GenerationJob.objects.exists()
    assert not AccessEvent.objects.exists()
    assert not RevenueItem.objects.exclude(source=RevenueSource.LICENCE_FEE).exists()
    assert not default_storage.exists(f"studio/inputs/{sha[:2]}/{sha}.wav")


@pytest.mark.parametrize(
    ("case", "status", "code", "term"),
    [
        ("no voice use", 403, "use_not_allowed", "voice"),
        ("consent withdrawn", 403, "consent_withdrawn", "voice"),
        ("over the cap", 403, "vocal_too_long", "max_vocal_seconds"),
        ("explicit", 403, "explicit_not_allowed", "explicit_content_allowed"),
        ("undeclared", 400, "explicit_declaration_required", "explicit_content_allowed"),
    ],
)
def test_a_job_the_voice_terms_refuse_is_refused_before_any_work_and_charges_nothing(
    voice_catalogue, fan_vocal, as_user, case, status, code, term
):
    cat = voice_catalogue
    client = as_user(cat.fan)
    explicit = "false"
    if case == "no voice use":
        cat.offer = offer_publish(
            work=cat.voice,
            user=cat.singer,
            terms=Terms(currency="USD", uses={"derivative": 0}, derivative_share_bps=VOICE_SHARE),
        )
    if case == "over the cap":
        cat.offer = offer_publish(
            work=cat.voice,
            user=cat.singer,
            terms=Terms(
                currency="USD",
                uses={"derivative": 0, "voice": VOICE_PRICE},
                derivative_share_bps=VOICE_SHARE,
                max_vocal_seconds=3,  # the fan's take lasts about 5 s
            ),
        )
    grant = _refusal_setup(cat, client)
    if case == "consent withdrawn":
        consent.consent_withdraw(work=cat.voice, user=cat.singer, use_class="voice", reason="no more covers")
    if case == "explicit":
        explicit = "true"
    balance = wallet(cat.fan)

    fields = {} if case == "undeclared" else {"explicit": explicit}
    take = padded(fan_vocal, 1 + len(case))  # a file no earlier test stored
    response = start(client, grant, take, **fields)

    assert response.status_code == status, response.content
    assert response.json()["code"] == code and response.json()["term"] == term
    _nothing_happened(cat, balance, take)


def test_only_the_voice_owner_approves_or_refuses_and_a_refusal_says_why(voice_catalogue, fan_vocal, as_user):
    cat = voice_catalogue
    client = as_user(cat.fan)
    grant = _refusal_setup(cat, client)
    response = start(client, grant, fan_vocal, explicit="false")
    run_generation_job(response.json()["id"])
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    release = client.post(
        "/api/v1/releases", {"work": job.result_work_id, "price_minor": 500, "currency": "USD"}, format="json"
    ).json()
    url = f"/api/v1/releases/{release['id']}"
    stranger = factories.creator(username="eve")

    # others: a stranger cannot see it (404); its maker sees it but does not decide (403)
    assert as_user(stranger).post(f"{url}/approve").status_code == 404
    assert as_user(stranger).post(f"{url}/refuse", {"reason": "no"}, format="json").status_code == 404
    assert as_user(stranger).get(url).status_code == 404
    own = client.post(f"{url}/approve")
    assert (own.status_code, own.json()["code"]) == (403, "not_an_approver")
    # the owner must say why
    assert as_user(cat.singer).post(f"{url}/refuse").json()["code"] == "reason_required"
    refused = as_user(cat.singer).post(f"{url}/refuse", {"reason": "Not my style of song."}, format="json")
    assert (refused.status_code, refused.json()["status"]) == (200, "refused")

    # the maker reads the reason; the release cannot be put on sale again, nor bought
    seen = client.get(url).json()
    assert seen["status"] == "refused" and seen["approvals"][0]["reason"] == "Not my style of song."
    again = client.post(
        "/api/v1/releases", {"work": job.result_work_id, "price_minor": 400, "currency": "USD"}, format="json"
    )
    assert (again.status_code, again.json()["code"], again.json()["reason"]) == (
        409,
        "release_refused",
        "Not my style of song.",
    )
    buyer = factories.fan(username="ada")
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="ada-1")
    assert as_user(buyer).post(f"{url}/purchase").status_code == 404
    assert as_user(cat.singer).post(f"{url}/approve").json()["code"] == "already_decided"
    assert not Purchase.objects.exists()


def test_the_voice_owner_approves_from_the_dashboard(voice_catalogue, fan_vocal, as_user, client):
    cat = voice_catalogue
    api = as_user(cat.fan)
    grant = _refusal_setup(cat, api)
    job_id = start(api, grant, fan_vocal, explicit="false").json()["id"]
    run_generation_job(job_id)
    job = GenerationJob.objects.get(pk=job_id)
    release_id = api.post(
        "/api/v1/releases", {"work": job.result_work_id, "price_minor": 500, "currency": "USD"}, format="json"
    ).json()["id"]

    client.force_login(cat.singer)
    create = client.get("/dashboard/create/")
    assert f'href="/dashboard/create/releases/{release_id}/"' in create.content.decode()
    page = client.get(f"/dashboard/create/releases/{release_id}/").content.decode()
    assert "data-approve" in page and "data-refuse" in page
    client.post(f"/dashboard/create/releases/{release_id}/approve/")

    assert Release.objects.get(pk=release_id).status == ReleaseStatus.ON_SALE
    client.force_login(cat.fan)
    assert "data-approve" not in client.get(f"/dashboard/create/releases/{release_id}/").content.decode()


def test_offer_limits_are_published_in_the_terms_and_in_plain_words(voice_catalogue, as_user):
    from dashboard import plain_words

    cat = voice_catalogue
    terms = as_user(cat.fan).get(f"/api/v1/offers/{cat.offer.pk}").json()
    assert (
        terms["explicit_content_allowed"],
        terms["max_vocal_seconds"],
        terms["release_approval_required"],
    ) == (
        False,
        30,
        True,
    )
    words = plain_words.describe(plain_words.terms_of(cat.offer))
    assert "No explicit lyrics: you declare each vocal clean, and explicit ones are refused." in words
    assert "Vocals of at most 30 seconds." in words
    assert "The creator approves each release of what you make before it goes on sale." in words


def test_a_vendors_voice_service_plugs_in_with_the_same_use_price_and_provenance(
    voice_catalogue, fan_vocal, as_user, settings
):
    cat = voice_catalogue
    with running_voice_service() as service:
        settings.STUDIO_EXTERNAL_GENERATORS = json.dumps(
            [
                {
                    "name": "acme-voice",
                    "title": "Acme Voice",
                    "url": service.url,
                    "parent_kind": "audio",
                    "output_kind": "audio",
                    "use_classes": ["derivative", "voice"],
                    "inputs": [{"name": "vocal", "kind": "audio", "label": "Your vocal"}],
                    "timeout_s": 30,
                    "max_bytes": 5_000_000,
                }
            ]
        )
        client = as_user(cat.fan)
        grant = _refusal_setup(cat, client)
        response = start(client, grant, fan_vocal, generator="acme-voice", explicit="false")
        assert response.status_code == 201, response.content
        run_generation_job(response.json()["id"])

    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    # the request: the fan's vocal, every recording of the voice, and the licence with its use and price
    sent = service.requests[0]
    assert sent["protocol"] == "tribute-generate-1" and sent["generator"] == "acme-voice"
    assert set(sent["inputs"]) == {"vocal"} and "data_base64" in sent["inputs"]["vocal"]
    assert [p["work"] for p in sent["parents"]] == [cat.voice.pk] * len(ENROLMENT)
    assert (sent["licence"]["uses"], sent["licence"]["price_minor"], sent["licence"]["work"]) == (
        ["derivative", "voice"],
        VOICE_PRICE,
        cat.voice.pk,
    )
    assert sent["licence"]["limits"] == {
        "explicit_content_allowed": False,
        "explicit_declared": False,
        "max_vocal_seconds": 30,
        "release_approval_required": True,
    }
    # paid on delivery, the same way: the voice's per-use price from the wallet, with its receipt signed in
    event = AccessEvent.objects.get()
    assert (event.use_class, event.price_minor, event.work_id) == ("voice", VOICE_PRICE, cat.voice.pk)
    assert job.charged_minor == VOICE_PRICE and wallet(cat.fan) == 1_000 - VOICE_FEE - VOICE_PRICE
    assert job.manifest["licence"]["parents"][0]["work"] == cat.voice.pk
    assert job.manifest["licence"]["access_ids"] == [str(event.access_id)]
    assert job.manifest["validation_state"] == "Trusted"
    data = content(as_user(cat.fan).get(f"/api/v1/generation-jobs/{job.pk}/result"))
    traced = (
        as_user(cat.fan).post("/api/v1/trace", {"file": upload("v.wav", data)}, format="multipart").json()
    )
    found = next(m for m in traced["matches"] if m["work"] == job.result_work_id)
    assert [p["work"] for p in found["derived_from"]] == [cat.voice.pk]
    assert soundfile.info(io.BytesIO(data)).duration > 1


def test_the_voice_index_attributes_the_converted_vocal_to_the_voice_work(
    voice_catalogue, fan_vocal, as_user
):
    cat = voice_catalogue
    fingerprint_voice(cat.voice)
    client = as_user(cat.fan)
    grant = _refusal_setup(cat, client)
    job_id = start(client, grant, fan_vocal, explicit="false").json()["id"]
    run_generation_job(job_id)
    data = content(client.get(f"/api/v1/generation-jobs/{job_id}/result"))

    # by the speaker embedding, not the lineage: at the confidence that opens a claim
    attributed = voice_attribution(client, data, cat.voice.pk)
    assert attributed and attributed[0]["confidence"] >= 0.9, attributed
    assert not voice_attribution(client, fan_vocal, cat.voice.pk)  # the fan's own voice is not his


def test_an_external_generators_inputs_come_from_its_settings_entry():
    from media.generators.external import from_config

    voice_service = from_config(
        {
            "name": "acme-voice",
            "url": "https://voice.example/convert",
            "parent_kind": "audio",
            "output_kind": "audio",
            "use_classes": ["derivative", "voice"],
            "inputs": [{"name": "vocal", "kind": "audio", "label": "Your vocal"}],
        }
    )
    assert [(s.name, s.kind, s.required) for s in voice_service.inputs] == [("vocal", "audio", True)]
    assert voice_service.use_classes == frozenset({"derivative", "voice"})
    assert [s.name for s in from_config({"name": "x", "url": "https://x.example/"}).inputs] == ["prompt"]
    for bad in ([], [{"name": "vocal", "kind": "video"}], [{"name": "a", "kind": "audio"}] * 2):
        with pytest.raises(ValueError):
            from_config({"name": "x", "url": "https://x.example/", "inputs": bad})


def test_the_voice_is_learned_once_per_recording_set_and_kept_with_the_voice_work(
    voice_catalogue, fan_vocal, as_user, monkeypatch
):
    from media.generators import voice_convert
    from media.samples import speech
    from studio import voice_profiles

    learned: list[int] = []
    learn = voice_convert.voice_profile

    def counting(recordings):
        learned.append(len(recordings))
        return learn(recordings)

    monkeypatch.setattr(voice_convert, "voice_profile", counting)
    cat = voice_catalogue
    client = as_user(cat.fan)
    grant = _refusal_setup(cat, client)

    def job(take: bytes) -> GenerationJob:
        response = start(client, grant, take, explicit="false")
        assert response.status_code == 201, response.content
        run_generation_job(response.json()["id"])
        done = GenerationJob.objects.get(pk=response.json()["id"])
        assert done.status == JobStatus.SUCCEEDED, done.error
        return done

    def stored_profiles() -> list[str]:
        folder = f"{voice_profiles.PROFILE_FOLDER}/{cat.voice.pk}"
        return sorted(default_storage.listdir(folder)[1]) if default_storage.exists(folder) else []

    for name in stored_profiles():  # kept by an earlier test's work of the same id and recordings
        default_storage.delete(f"{voice_profiles.PROFILE_FOLDER}/{cat.voice.pk}/{name}")
    # the first job learns the voice from its three recordings and keeps it with the work
    first = job(padded(fan_vocal, 11))
    assert learned == [len(ENROLMENT)]
    assert len(stored_profiles()) == 1
    # a second job on the same voice reads it back and learns nothing
    second = job(padded(fan_vocal, 12))
    assert learned == [len(ENROLMENT)]
    assert first.result_asset_id != second.result_asset_id
    kept = stored_profiles()

    # a recording added to the voice work changes what is learned: the next job learns it again, from four
    [extra] = speech.render_speech(SPEECH, [TARGET], [4])[TARGET]
    asset_upload(work=cat.voice, user=cat.singer, data=extra.read_bytes(), filename="take-extra.wav")
    job(padded(fan_vocal, 13))
    assert learned == [len(ENROLMENT), len(ENROLMENT) + 1]
    assert len(stored_profiles()) == 1 and stored_profiles() != kept  # the stale profile went


def test_an_unreadable_stored_voice_is_learned_again(voice_catalogue, fan_vocal, as_user):
    from studio import voice_profiles

    cat = voice_catalogue
    client = as_user(cat.fan)
    grant = _refusal_setup(cat, client)
    assets = list(cat.voice.assets.select_related("blob", "work").order_by("id"))
    name = voice_profiles.profile_name(cat.voice.pk, assets)
    default_storage.delete(name)  # one an earlier test's work of the same id and recordings kept
    assert default_storage.save(name, ContentFile(b"{not json")) == name

    response = start(client, grant, padded(fan_vocal, 14), explicit="false")
    run_generation_job(response.json()["id"])

    assert GenerationJob.objects.get(pk=response.json()["id"]).status == JobStatus.SUCCEEDED
    with default_storage.open(name, "rb") as handle:
        assert json.loads(handle.read())["recordings"] == len(ENROLMENT)
