"""The demo's studio step: Kai makes two derivatives in the studio, on real media, and releases one.

He sings over Sol and Ade's song (a sung vocal rendered by Festival, remixed over the rendered music:
tempo and key aligned), and restyles a photograph of his own with one of Mira's photos. Both results are
registered with their royalty stacks, fingerprinted and signed with C2PA content credentials, whose
summary is printed. Kai releases the remix for 10.00 USD; Mira buys it, and the settlement in the next
step splits the sale 50/50 between Kai and the song's owners after the platform's fee.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

from catalog import tracing
from catalog.models import Grant
from catalog.services import Terms, offer_publish
from common.currency import format_minor
from common.money import Money
from studio import services as studio
from studio.models import GenerationJob, JobStatus

if TYPE_CHECKING:  # story.py lists this step in STEPS: no import cycle at run time
    from demo.story import Story

SALE_PRICE_MINOR = 1_000


def _own_photo(story: Story) -> bytes:
    """Kai's own photograph: one the creators did not register."""
    from media.samples import images

    by_name = {
        p.stem: p for p in images.ensure_images(story.samples_dir / "images", packages=["mate-backgrounds"])
    }
    with Image.open(by_name["Aqua"]) as source:
        image = source.convert("RGB")
        image.thumbnail((1200, 1200))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()


def _vocal(story: Story) -> bytes:
    from media.samples import speech

    speech.ensure_system_packages()
    return speech.render_song(story.samples_dir / "speech", "festival-kal").read_bytes()


def _run(story: Story, job: GenerationJob) -> GenerationJob:
    story.say(f"    job #{job.pk} ({job.generator}) queued; the worker runs it…")
    done = studio.job_run(job_id=job.pk)  # what the Celery worker does with the queued task
    job = done or GenerationJob.objects.get(pk=job.pk)
    if job.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"the demo's generation job failed: {job.error}")
    return job


def _manifest(story: Story, job: GenerationJob) -> None:
    manifest = job.manifest
    licence = manifest.get("licence") or {}
    story.say(
        f"    C2PA manifest: “{manifest['title']}”, signed by {manifest['signer']} ({manifest['issuer']}): "
        f"{manifest['validation_state'].lower()}; AI-generated (trainedAlgorithmicMedia): "
        f"{'yes' if manifest['ai_generated'] else 'no'}"
    )
    for ingredient in manifest["ingredients"]:
        story.say(f"      ingredient ({ingredient['relationship']}): {ingredient['title']}")
    story.say(
        f"      licence: grant #{licence.get('grant')}, terms {licence.get('terms_url')}, "
        f"{len(licence.get('receipts') or [])} access receipt(s)"
    )


def fan_creates(story: Story) -> None:
    kai, mira = story.people["kai"], story.people["mira"]
    song = story.works["song"]
    story.say(
        "7b. Kai makes derivatives in the studio (Create): a remix with his own vocal, and a restyled photo"
    )
    studio.wallet_fund(user=kai, amount=Money(2_000, "USD"), external_ref="demo-kai-wallet-1", rail="card")
    story.say(f"    tops up his studio wallet (a personal prepaid balance) with {format_minor(2_000, 'USD')}")

    grant = Grant.objects.filter(licensee=kai, offer__work=song).order_by("id").first()
    if grant is None:
        raise RuntimeError("the demo's fan holds no licence for the song")
    job = studio.job_create(
        user=kai,
        grant_id=grant.pk,
        generator_name="audio-remix",
        inputs={"vocal": studio.InputFile("kai-vocal.wav", _vocal(story)), "vocal_bpm": "96"},
        title="Harbour hymn (Kai sings)",
    )
    remix = _run(story, job)
    details = remix.details
    story.say(
        f"    remix: instrumental {details['instrumental_bpm']} BPM in {details['instrumental_key']}; vocal "
        f"stretched x{details['time_stretch']} and shifted {details['pitch_shift_semitones']:+d} semitones "
        f"from {details['vocal_key']}; it enters on the beat at {details['vocal_starts_s']} s"
    )
    story.say(
        f"    the song stays in the mix: its fingerprint finds it with confidence "
        f"{details['instrumental_match_confidence']:.3f}"
    )
    _manifest(story, remix)

    photo = story.works["photo2"]
    offer = offer_publish(
        work=photo,
        user=mira,
        terms=Terms(
            currency="USD",
            uses={"derivative": 0, "style": 25},
            commercial_use=True,
            derivative_share_bps=3000,
            licence_fee_minor=150,
        ),
    )
    story.say(
        f"    Mira offers “{photo.title}” for restyles: licence {format_minor(150, 'USD')}, "
        f"{format_minor(25, 'USD')} per style use, 30% of the derivative's income"
    )
    accepted = studio.terms_accept(user=kai, offer=offer)
    story.say(
        f"    Kai accepts; the licence fee {format_minor(accepted.fee_charged_minor, 'USD')} "
        "comes from his wallet"
    )
    job = studio.job_create(
        user=kai,
        grant_id=accepted.grant.pk,
        generator_name="image-restyle",
        inputs={"photo": studio.InputFile("kai-aqua.jpg", _own_photo(story))},
        title="Aqua in Mira's light",
    )
    restyle = _run(story, job)
    story.say(
        f"    restyle: {restyle.details['width']}x{restyle.details['height']}, "
        f"Mira's photo traceable in it with confidence {restyle.details['artwork_match_confidence']:.3f}; "
        "charged "
        f"{format_minor(restyle.charged_minor, 'USD')} through the access API (receipt in the manifest)"
    )
    _manifest(story, restyle)
    _trace_stripped(story, restyle)

    assert remix.result_work is not None
    release = studio.release_set(
        user=kai, work=remix.result_work, price_minor=SALE_PRICE_MINOR, currency="USD"
    )
    story.say(f"    Kai releases the remix for download at {format_minor(release.price_minor, 'USD')}")
    studio.wallet_fund(user=mira, amount=Money(1_500, "USD"), external_ref="demo-mira-wallet-1", rail="card")
    purchase = studio.release_purchase(buyer=mira, release=release).purchase
    story.say(
        f"    Mira buys it (purchase #{purchase.pk}, {format_minor(purchase.amount_minor, 'USD')} "
        "from her wallet); "
        "at settlement the sale loses the 10% fee, then Kai and the song's owners share the rest 50/50"
    )


def _trace_stripped(story: Story, job: GenerationJob) -> None:
    """What `manage.py trace` reports for the result once its manifest is stripped (re-encoded)."""
    from django.core.files.storage import default_storage

    assert job.result_asset is not None
    with default_storage.open(job.result_asset.blob.storage_name, "rb") as handle:
        data = handle.read()
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
    stripped = buffer.getvalue()
    info, matches = tracing.trace(data=stripped, user=None)
    manifest = tracing.manifest_of(data=stripped, info=info)
    found = [m for m in matches if m.work.pk == job.grant.offer.work_id]
    if not found:
        raise RuntimeError("the demo's restyle is no longer traced once its manifest is stripped")
    story.say(
        f"    re-encoded ({'no manifest left' if manifest is None else 'manifest still there'}), "
        f"the restyle is still traced to “{found[0].work.title}” by fingerprint "
        f"(confidence {found[0].match.confidence:.3f})"
    )
