"""The demo: the platform's story told on real media, step by step, printing what happened.

Every step goes through the same services the API uses. Media come from registry packages: photographs
from Debian's MATE wallpapers and music rendered from the music21 corpus with fluidsynth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core import mail
from django.test.utils import override_settings

from accounts.models import User
from accounts.services import api_key_create, user_create
from catalog import selectors
from catalog.models import Work
from catalog.services import (
    ParentClaim,
    Terms,
    asset_upload,
    derivative_create,
    offer_publish,
    split_share_accept,
    split_sheet_propose,
    work_create,
    work_members_set,
)
from common.currency import format_minor
from demo.access_step import output_claim, pay_per_access
from demo.dataset_step import dataset_sale
from demo.payouts_step import pay_out
from demo.royalties_step import settle_and_report
from demo.studio_step import fan_creates
from royalties.licences import licence_accept

PASSWORD = "tribute-demo-password"  # noqa: S105 (demo accounts on a local machine, printed for the reader)


@dataclass
class Story:
    say: Callable[[str], None]
    samples_dir: Path
    people: dict[str, User] = field(default_factory=dict)
    works: dict[str, Work] = field(default_factory=dict)


def _media(story: Story) -> tuple[list[Path], list[Path]]:
    from media.samples import audio, images

    by_name = {
        path.stem: path
        for path in images.ensure_images(story.samples_dir / "images", packages=["mate-backgrounds"])
    }
    # Photographs (not the package's gradients): fingerprints need texture, as real work has.
    photos = [by_name[name] for name in ("Garden", "LadyBird", "Wood") if name in by_name]
    audio.ensure_system_packages()
    music = audio.render_corpus(story.samples_dir / "audio", count=2, seed=7)
    if len(photos) < 3 or len(music) < 2:
        raise RuntimeError("the demo needs at least 3 photographs and 2 rendered pieces of music")
    return photos[:3], music[:2]


def _person(story: Story, username: str, role: str, display_name: str, organisation: str = "") -> User:
    user = user_create(
        username=username,
        email=f"{username}@demo.tribute.invalid",
        password=PASSWORD,
        role=role,
        display_name=display_name,
        organisation_name=organisation,
        email_verified=True,  # the demo's people use made-up addresses no link could reach
    )
    story.people[username] = user
    story.say(f"  {display_name} signs up as a {role} (login {username} / {PASSWORD})")
    return user


def _upload(story: Story, work: Work, owner: User, path: Path) -> None:
    result = asset_upload(work=work, user=owner, data=path.read_bytes(), filename=path.name)
    blob = result.asset.blob
    if blob.kind == "image":
        detail = f"{blob.width}x{blob.height} {blob.media_type}"
    else:
        detail = f"{(blob.duration_ms or 0) / 1000:.1f} s {blob.media_type}"
    story.say(f"    uploads {path.name} ({detail}, sha256 {blob.sha256[:12]}…)")


def register_catalog(story: Story) -> None:
    photos, music = _media(story)
    story.say("1. People arrive")
    mira = _person(story, "mira", "creator", "Mira Okafor")
    sol = _person(story, "sol", "creator", "Sol Reyes")
    ade = _person(story, "ade", "creator", "Ade Bello")
    kai = _person(story, "kai", "fan", "Kai Lindqvist")
    acme = _person(story, "acme", "vendor", "Acme AI ops", organisation="Acme AI")

    story.say("2. Mira registers her photographs and a style made of them")
    style = work_create(user=mira, title="Mira's northern light", kind="style", tags=["photo", "landscape"])
    members = []
    for index, path in enumerate(photos, start=1):
        work = work_create(user=mira, title=f"Northern light #{index}", kind="image", tags=["photo"])
        _upload(story, work, mira, path)
        members.append(work.pk)
        story.works[f"photo{index}"] = work
    work_members_set(collection=style, member_ids=members)
    story.works["style"] = style
    offer_publish(
        work=style,
        user=mira,
        terms=Terms(currency="USD", uses={"ai-train": 4, "style": 12, "index": 0}, commercial_use=True),
    )
    story.say(
        f"    publishes the style's terms: ai-train {format_minor(4, 'USD')}, style {format_minor(12, 'USD')}"
    )

    story.say("3. Sol and his producer Ade register a song with a 70/30 split sheet")
    song = work_create(user=sol, title="Harbour hymn", kind="audio", tags=["choral"])
    _upload(story, song, sol, music[0])
    sheet = split_sheet_propose(work=song, user=sol, shares=[(sol.email, 7000), (ade.email, 3000)])
    story.say(f"    split sheet v{sheet.version} proposed: Sol 70%, Ade 30% (Ade is invited by email)")
    split_share_accept(token=_invitation_token(ade.email), user=ade)
    sheet.refresh_from_db()
    story.say(f"    Ade accepts; split sheet v{sheet.version} is {sheet.status}")
    offer = offer_publish(
        work=song,
        user=sol,
        terms=Terms(
            currency="USD",
            uses={"ai-train": 5, "voice": 20, "derivative": 0},
            commercial_use=True,
            derivative_share_bps=5000,
            licence_fee_minor=299,
        ),
    )
    story.works["song"] = song
    story.say(
        f"    publishes v{offer.version}: fans may release derivatives for a 50/50 split "
        f"(licence fee {format_minor(299, 'USD')}); AI training {format_minor(5, 'USD')} per access"
    )

    story.say("4. Kai, a fan, licenses the song (its licence fee paid by card) and registers a remix of it")
    grant = licence_accept(offer=offer, user=kai, paid_on_rail="card").grant
    remix = derivative_create(
        user=kai,
        title="Harbour hymn (Kai's night remix)",
        kind="audio",
        parents=[ParentClaim(song.pk, grant.pk)],
    )
    _upload(story, remix, kai, music[1])
    story.works["remix"] = remix
    lineage = selectors.lineage_of(work=remix)
    for entry in lineage["stack"]:
        story.say(
            f"    royalty stack: “{entry['work'].title}” gets {entry['share_bps']} bps of the remix's income"
        )
    story.say(f"    Kai keeps {lineage['owners_share_bps']} bps")

    story.say("5. Acme AI creates an API key for its crawler")
    issued = api_key_create(user=acme, name="crawler", scopes=["read", "access", "outputs"])
    story.say(f"    key {issued.api_key.prefix}… (scopes {', '.join(issued.api_key.scopes)}); shown once")
    story.say(f"    machine-readable terms: {settings.SITE_URL}/licenses.xml (announced in /robots.txt)")


def _invitation_token(email: str) -> str:
    """The token from the last invitation mailed to `email` (the demo keeps its mail in memory)."""
    message = next(m for m in reversed(mail.outbox) if email in m.to)
    return message.body.split("accept with this token:\n", 1)[1].split()[0]


STEPS: list[Callable[[Story], None]] = [
    register_catalog,
    pay_per_access,
    output_claim,
    dataset_sale,
    fan_creates,
    settle_and_report,
    pay_out,
]


def run(*, say: Callable[[str], None], samples_dir: Path) -> Story:
    story = Story(say=say, samples_dir=samples_dir)
    if User.objects.filter(username="mira").exists():
        say(
            "The demo data is already loaded; log in as mira, sol, ade, kai or acme with password " + PASSWORD
        )
        return story
    # Each service commits on its own, as it would behind the API; mail stays in memory for the story to read.
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
        mail.outbox = []
        for step in STEPS:
            step(story)
    return story
