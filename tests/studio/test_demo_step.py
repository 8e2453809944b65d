"""The demo's studio step on real media: a remix and a restyle made, one released and bought, the
manifests printed, and the sale split 50/50 with the song's owners at settlement."""

from __future__ import annotations

from pathlib import Path

from catalog.services import asset_upload, grant_create
from catalog.tasks import fingerprint_asset
from demo.story import Story
from demo.studio_step import SALE_PRICE_MINOR, fan_creates
from royalties.ledger import ledger_check
from royalties.models import LedgerAccount
from royalties.selectors import payable_key
from royalties.settlement import revenue_settle
from studio.models import GenerationJob, JobStatus
from tests import factories

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


def payable(user) -> int:
    account = LedgerAccount.objects.filter(key=payable_key(user.pk, "USD")).first()
    return account.balance_minor if account else 0


def test_the_studio_step_makes_both_derivatives_releases_one_and_prints_the_manifests(
    db, photos, instrumental
):
    lines: list[str] = []
    story = Story(say=lines.append, samples_dir=SAMPLES)
    mira = story.people["mira"] = factories.creator(username="mira", display_name="Mira")
    sol = story.people["sol"] = factories.creator(username="sol", display_name="Sol")
    kai = story.people["kai"] = factories.fan(username="kai", display_name="Kai")
    song = factories.work(sol, kind="audio", title="Harbour hymn")
    fingerprint_asset(asset_upload(work=song, user=sol, data=instrumental, filename="song.wav").asset.pk)
    song_offer = factories.offer(
        sol,
        song,
        uses={"derivative": 0},
        derivative_share_bps=5000,
        licence_fee_minor=299,
        commercial_use=True,
    )
    grant_create(offer=song_offer, user=kai)
    photo = factories.work(mira, kind="image", title="Northern light #2")
    fingerprint_asset(asset_upload(work=photo, user=mira, data=photos["Garden"], filename="g.jpg").asset.pk)
    story.works.update(song=song, photo2=photo)

    fan_creates(story)

    text = "\n".join(lines)
    jobs = list(GenerationJob.objects.order_by("id"))
    assert [(job.generator, job.status) for job in jobs] == [
        ("audio-remix", JobStatus.SUCCEEDED),
        ("image-restyle", JobStatus.SUCCEEDED),
    ]
    assert text.count("C2PA manifest:") == 2 and "AI-generated (trainedAlgorithmicMedia): yes" in text
    assert "ingredient (parentOf): Harbour hymn" in text and "still traced to “Northern light #2”" in text

    revenue_settle()
    # The sale of 10.00 loses the 10% fee; Kai and the song (Sol alone here) share the 9.00 50/50. The
    # restyle's licence fee (1.50) and style use (0.25) and the song's fee (2.99) are Mira's and Sol's too.
    assert SALE_PRICE_MINOR == 1_000
    assert payable(kai) == 450
    assert payable(sol) == 450 + 269  # + the song's licence fee after its 10% fee (299 - 30)
    assert payable(mira) == 135 + 22  # the restyle's licence fee and style use, after the fee
    assert ledger_check().clean
