"""The demo's dataset step: the creators pool photographs into a dataset Sol curates, curation leaves a
thumbnail out, Acme AI licenses the snapshot from its prepaid balance, and the sale's split is printed.
Settlement (the next step) then pays each part through the works' split sheets."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from accounts.models import Organisation, User
from catalog.models import Work
from catalog.services import Terms, asset_upload, offer_publish, work_create
from common.currency import format_minor
from datasets.models import ItemStatus, SaleShare
from datasets.services import contributing, curation, sales, snapshots
from datasets.services.curation import Offering

if TYPE_CHECKING:  # story.py lists this step in STEPS: no import cycle at run time
    from demo.story import Story

PRICE_MINOR = 2_500
CURATOR_SHARE_BPS = 1_000


def _photo(path: Path, longest: int) -> bytes:
    with Image.open(path) as source:
        image = source.convert("RGB")
    image.thumbnail((longest, longest))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def _photograph(story: Story, owner: User, title: str, data: bytes) -> Work:
    work = work_create(user=owner, title=title, kind="image", tags=["photo"])
    asset_upload(work=work, user=owner, data=data, filename=f"{title}.jpg")
    offer_publish(
        work=work, user=owner, terms=Terms(currency="USD", uses={"ai-train": 3}, commercial_use=True)
    )
    story.works[title] = work
    return work


def dataset_sale(story: Story) -> None:
    from media.samples import images

    mira, sol, ade, acme = (story.people[name] for name in ("mira", "sol", "ade", "acme"))
    by_name = {
        path.stem: path
        for path in images.ensure_images(story.samples_dir / "images", packages=["mate-backgrounds"])
    }
    story.say("7b. A dataset: Sol curates photographs from several creators and Acme AI licenses it")
    photos = [story.works[f"photo{index}"] for index in (1, 2, 3)]
    for work in photos:
        offer_publish(
            work=work, user=mira, terms=Terms(currency="USD", uses={"ai-train": 3}, commercial_use=True)
        )
    story.say("    Mira offers each of her photographs for AI training at 0.03 USD a use")
    sols = _photograph(story, sol, "Harbour at dusk", _photo(by_name["Aqua"], 1024))
    ades = _photograph(story, ade, "Dune study", _photo(by_name["Dune"], 1024))
    thumbnail = _photograph(story, ade, "Flower (thumbnail)", _photo(by_name["FreshFlower"], 200))
    dataset = curation.dataset_create(
        user=sol,
        title="Northern light and harbours",
        kind="image",
        description="Landscape photographs by Tribute creators, licensed for training.",
        offering=Offering(
            currency="USD",
            price_minor=PRICE_MINOR,
            curator_share_bps=CURATOR_SHARE_BPS,
            commercial_use=True,
        ),
    )
    story.say(
        f"    Sol creates “{dataset.title}”: {format_minor(PRICE_MINOR, 'USD')} per snapshot, "
        f"split by item count, curator's share {CURATOR_SHARE_BPS / 100:.0f}%"
    )
    for owner, work in [(mira, w) for w in photos] + [(sol, sols), (ade, ades), (ade, thumbnail)]:
        for item in contributing.item_contribute(dataset=dataset, user=owner, work=work):
            if item.status == ItemStatus.INCLUDED:
                story.say(f"    {owner.public_name} adds “{work.title}”: included")
            else:
                story.say(f"    {owner.public_name} adds “{work.title}”: left out ({item.reason})")
    snapshot = snapshots.snapshot_create(dataset=dataset, user=sol)
    story.say(
        f"    snapshot {snapshot.number}: {snapshot.item_count} items, item list sha256 "
        f"{snapshot.items_sha256[:16]}…"
    )
    organisation = Organisation.objects.filter(membership__user=acme).order_by("id").get()
    licence = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=acme).licence
    story.say(
        f"    Acme AI licenses it from its prepaid balance: {format_minor(licence.price_minor, 'USD')}, "
        f"receipt {licence.receipt[:24]}… (verifiable with /.well-known/jwks.json)"
    )
    story.say(
        "    the sale's split, exact to the cent (each work's part is settled by its split sheet next):"
    )
    for share in (
        SaleShare.objects.filter(licence=licence).select_related("work", "contributor").order_by("id")
    ):
        amount = format_minor(share.amount_minor, share.currency)
        if share.work is None:
            story.say(f"      {amount} to the curator, {sol.public_name}")
        else:
            who = share.contributor.public_name if share.contributor else "its owners"
            story.say(f"      {amount} to “{share.work.title}” ({who})")
