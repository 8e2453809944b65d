import pytest
from lxml import etree

from catalog import rsl
from tests import factories

pytestmark = pytest.mark.django_db

NS = {"r": rsl.RSL_NAMESPACE}


def test_an_offer_is_published_as_a_valid_rsl_document(api) -> None:
    creator = factories.creator(display_name="Mira")
    work = factories.work(creator)
    offer = factories.offer(
        creator,
        work,
        uses={"ai-train": 250, "ai-generate": 3, "index": 0, "derivative": 0},
        licence_fee_minor=1000,
        territories=["DE", "FR"],
        commercial_use=True,
    )

    response = api.get(f"/api/v1/offers/{offer.pk}/rsl")

    assert response.status_code == 200 and response["Content-Type"] == "application/rsl+xml"
    document = etree.fromstring(response.content)
    rsl.schema().assertValid(document)
    licences = document.findall("r:content/r:license", NS)
    by_usage = {lic.find("r:permits[@type='usage']", NS).text: lic for lic in licences}
    assert set(by_usage) == {"ai-train", "ai-input", "ai-index"}
    train = by_usage["ai-train"]
    assert train.find("r:payment[@type='training']/r:amount", NS).text == "2.50"
    assert train.find("r:payment[@type='training']/r:amount", NS).get("currency") == "USD"
    assert train.find("r:payment[@type='purchase']/r:amount", NS).text == "10.00"
    assert train.find("r:permits[@type='geo']", NS).text == "DE FR"
    assert train.find("r:permits[@type='user']", NS).text == "commercial"
    assert by_usage["ai-index"].find("r:payment", NS).get("type") == "attribution"
    assert document.find("r:content/r:copyright", NS).text == "Mira"


def test_uses_not_offered_are_listed_as_prohibited() -> None:
    creator = factories.creator()
    offer = factories.offer(creator, factories.work(creator), uses={"ai-train": 1})
    document = etree.fromstring(rsl.render([offer], site_url="https://tribute.example"))
    rsl.schema().assertValid(document)
    assert document.find("r:content/r:license/r:prohibits", NS).text == "ai-input ai-index"


def test_a_document_that_breaks_the_vocabulary_fails_validation() -> None:
    bad = etree.fromstring(
        b'<rsl xmlns="https://rslstandard.org/rsl"><content url="/x"><license>'
        b'<permits type="usage">mining</permits></license></content></rsl>'
    )
    assert not rsl.schema().validate(bad)


def test_robots_txt_announces_the_licence_feed_which_lists_every_public_offer(api) -> None:
    creator = factories.creator()
    for title in ("One", "Two"):
        factories.offer(creator, factories.work(creator, title=title))
    factories.work(creator, title="Unpublished")

    robots = api.get("/robots.txt").content.decode()
    feed = api.get("/licenses.xml")

    assert "License: http://127.0.0.1:8000/licenses.xml" in robots.splitlines()
    document = etree.fromstring(feed.content)
    rsl.schema().assertValid(document)
    assert len(document.findall("r:content", NS)) == 2
