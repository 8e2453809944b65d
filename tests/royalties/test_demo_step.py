"""The demo's money step runs on the story's people and works and prints everyone's earnings."""

from __future__ import annotations

import pytest
from django.test import TestCase

from catalog.services import Terms, offer_publish, work_create
from demo.royalties_step import settle_and_report
from demo.story import Story
from royalties.ledger import ledger_check
from tests import factories
from tests.royalties.builders import co_own, derive

pytestmark = pytest.mark.django_db


def test_the_demo_settles_the_stories_activity_and_prints_each_persons_earnings(tmp_path) -> None:
    lines: list[str] = []
    story = Story(say=lines.append, samples_dir=tmp_path)
    for name in ("mira", "sol", "ade"):
        story.people[name] = factories.creator(username=name, display_name=name.title())
    story.people["kai"] = factories.fan(username="kai", display_name="Kai")
    story.people["acme"] = factories.vendor(username="acme", organisation_name="Acme AI")
    mira, sol, ade, kai = (story.people[n] for n in ("mira", "sol", "ade", "kai"))
    style = work_create(user=mira, title="Style", kind="style")
    offer_publish(work=style, user=mira, terms=Terms(currency="USD", uses={"ai-train": 4, "style": 12}))
    song = work_create(user=sol, title="Song", kind="audio")
    with TestCase.captureOnCommitCallbacks(execute=True):
        co_own(song, sol, [(sol, 7000), (ade, 3000)])
    song_offer = offer_publish(
        work=song,
        user=sol,
        terms=Terms(
            currency="USD",
            uses={"ai-train": 5, "derivative": 0},
            derivative_share_bps=5000,
            licence_fee_minor=299,
        ),
    )
    story.works.update(style=style, song=song, remix=derive(kai, "Remix", [song_offer]))

    settle_and_report(story)

    text = "\n".join(lines)
    # (Accesses are the access step's.) The remix's 2150 of sales lose the 10% fee (215), then half of the
    # rest goes up to the song; the song's licence fee of 299 pays 30 (29.9, rounded) of fee.
    assert "a receivable from Bandcamp, nobody's earnings yet" in text
    assert "is matched to 2 lines: now they earn" in text
    assert "Kai has earned 9.68 USD" in text
    assert "the platform's fee: 2.45 USD" in text
    assert "Mira has earned 0.00 USD" in text
    assert ledger_check().clean
