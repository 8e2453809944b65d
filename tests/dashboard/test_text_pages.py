"""The dashboard's pages for text works, on real text: a creator registers an article and uploads its
versions, hostile uploads are refused with the service's error and store nothing, the passages a vendor
retrieves appear to their creator and to the vendor and to nobody else, and a text claim shows both texts
side by side with the matched spans highlighted."""

from __future__ import annotations

import html
import re
import uuid

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from access.models import Retrieval, RetrievalPassage
from accounts.models import User
from catalog.models import Asset, Blob, Claim, TextVersion, Work
from catalog.tasks import fingerprint_asset
from common.money import Money
from media.text import passages
from royalties.funding import prepaid_fund
from tests import factories
from tests.text import samples
from tests.text.test_text_tracing import register_text

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


def _stored_files() -> list[str]:
    if not default_storage.exists("blobs"):
        return []
    found = []
    for top in default_storage.listdir("blobs")[0]:
        for middle in default_storage.listdir(f"blobs/{top}")[0]:
            found += default_storage.listdir(f"blobs/{top}/{middle}")[1]
    return found


def _upload(client: Client, work: Work, data: bytes, name: str):
    return client.post(
        f"/dashboard/works/{work.pk}/assets/", {"file": SimpleUploadedFile(name, data)}, follow=True
    )


def _version_rows(body: str) -> list[str]:
    return re.findall(r'<tr data-version="(\d+)">', body)


# Registering and uploading -------------------------------------------------------------------------------


def test_a_creator_registers_an_article_and_uploads_two_versions_from_the_dashboard() -> None:
    writer = factories.creator()
    client = client_for(writer)
    form = page(client.get("/dashboard/works/new/"))
    for kind, label in [("article", "Article"), ("lyrics", "Lyrics"), ("book", "Book")]:
        assert f'<option value="{kind}">{label}</option>' in form
    assert '<option value="text-collection">Text collection</option>' in form

    created = client.post("/dashboard/works/new/", {"title": "Harbour", "kind": "article"})
    work = Work.objects.get(created_by=writer)
    assert created.status_code == 302 and created["Location"] == f"/dashboard/works/{work.pk}/"
    empty = page(client.get(f"/dashboard/works/{work.pk}/"))
    assert "Text versions" in empty and "No text yet." in empty
    assert "<span>+</span>" in page(client.get("/dashboard/works/"))
    assert "Plain text, Markdown, HTML or PDF (with a text layer), up to 20 MB." in empty
    assert 'accept=".txt,.text,.md,.markdown,.html,.htm,.pdf,' in empty

    first = _upload(client, work, samples.ARTICLE.encode(), "harbour.txt")

    assert first.redirect_chain == [(f"/dashboard/works/{work.pk}/#versions", 302)]
    assert "harbour.txt is version 1 of the text; fingerprinting has started." in page(first)
    version_1 = TextVersion.objects.get(work=work)
    fingerprint_asset(version_1.asset_id)
    tokens = sum(
        passages.count_tokens([version_1.text[p.start : p.end] for p in passages.split(version_1.text)])
    )
    body = page(client.get(f"/dashboard/works/{work.pk}/"))
    assert _version_rows(body) == ["1"]
    row = body[body.index('<tr data-version="1">') :]
    assert f'<td class="num" data-tokens>{tokens:,}</td>' in row
    assert f'<td class="num" data-characters>{version_1.characters:,}</td>' in row
    assert version_1.characters > 1000  # so the separator shows
    assert re.search(r"\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC", row)
    assert "The harbour town woke before the fishing fleet returned." in body
    assert "<span>¶</span>" in page(client.get("/dashboard/works/"))

    # News is updated: a Markdown edit with characters that must be escaped becomes version 2.
    edited = "# Harbour\n\n*Updated*: Tom & Jerry <3 the quay.\n\n" + samples.ARTICLE
    second = _upload(client, work, edited.encode(), "harbour.md")

    assert "harbour.md is version 2 of the text" in page(second)
    body = page(client.get(f"/dashboard/works/{work.pk}/"))
    assert _version_rows(body) == ["2", "1"]  # newest first
    preview = body[body.index("data-text-preview>") :]
    assert "Tom &amp; Jerry &lt;3 the quay." in preview and "<3 the quay" not in preview
    assert "counting…" in body[body.index('<tr data-version="2">') : body.index('<tr data-version="1">')]


def test_a_text_version_preview_never_renders_uploaded_html() -> None:
    writer = factories.creator()
    work = factories.work(writer, kind="article", title="Harbour")
    client = client_for(writer)
    paragraphs = "".join(f"<p>{part}</p>" for part in samples.ARTICLE.split("\n\n"))
    document = f"<!doctype html><html><head><title>Harbour</title></head><body><article>{paragraphs}"
    document += "<p>Fish &amp; chips &lt;em&gt;daily&lt;/em&gt;.</p></article></body></html>"

    response = _upload(client, work, document.encode(), "harbour.html")

    assert "version 1 of the text" in page(response)
    preview = page(client.get(f"/dashboard/works/{work.pk}/")).split("data-text-preview>")[1]
    assert "Fish &amp; chips &lt;em&gt;daily&lt;/em&gt;." in preview and "<em>" not in preview


@pytest.mark.parametrize(
    ("name", "make", "error"),
    [
        ("story.txt", samples.zip_bomb, "The content is a ZIP archive, not text"),
        (
            "story.html",
            lambda: b"<!doctype html><html><body><p>Hello</p><script>alert(1)</script></body></html>",
            "The HTML carries scripts or other active content",
        ),
        (
            "story.txt",
            lambda: b"caf\xc3\xa9 and caf\xe9 in one file",
            "The text is not valid UTF-8 (bad byte at offset 13); save it as UTF-8 and retry.",
        ),
    ],
)
def test_a_hostile_text_upload_shows_the_services_error_and_stores_nothing(name, make, error) -> None:
    writer = factories.creator()
    work = factories.work(writer, kind="article", title="Harbour")
    client = client_for(writer)
    files_before = _stored_files()

    response = _upload(client, work, make(), name)

    body = page(response)
    assert response.redirect_chain == [(f"/dashboard/works/{work.pk}/#versions", 302)]
    assert 'class="flash flash-error"' in body and error in body
    assert (Asset.objects.count(), Blob.objects.count(), TextVersion.objects.count()) == (0, 0, 0)
    assert _stored_files() == files_before
    assert "No text yet." in body


def test_the_creator_edits_a_text_works_title_and_description_and_nobody_else_can() -> None:
    writer, stranger = factories.creator(), factories.creator()
    work = factories.work(writer, kind="lyrics", title="Lantern")
    client = client_for(writer)
    assert 'value="Lantern"' in page(client.get(f"/dashboard/works/{work.pk}/edit/"))

    saved = client.post(
        f"/dashboard/works/{work.pk}/edit/",
        {"title": "Lantern on the water", "description": "A song of the harbour.", "tags": "Folk, sea"},
    )

    assert saved.status_code == 302 and saved["Location"] == f"/dashboard/works/{work.pk}/"
    work.refresh_from_db()
    assert (work.title, work.description, work.tags) == (
        "Lantern on the water",
        "A song of the harbour.",
        ["folk", "sea"],
    )
    refused = client.post(f"/dashboard/works/{work.pk}/edit/", {"title": "", "description": "x"})
    assert refused.status_code == 400 and "This field is required." in page(refused)
    for method in ("get", "post"):
        response = getattr(client_for(stranger), method)(
            f"/dashboard/works/{work.pk}/edit/", *([{"title": "Mine now"}] if method == "post" else [])
        )
        assert response.status_code == 404
    work.refresh_from_db()
    assert work.title == "Lantern on the water"


# Retrieved passages -------------------------------------------------------------------------------------


def _retrieve(client, **body):
    fields = {
        "query": "What happened to the fishing boat that did not come back to the harbour?",
        "max_tokens": 400,
        "use": "ai-input",
        "territory": "GB",
    }
    fields.update(body)
    return client.post("/api/v1/retrieve", fields, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


def test_a_vendors_retrieval_appears_to_the_creator_and_the_vendor_and_to_nobody_else(with_key) -> None:
    writer, scholar = factories.creator(), factories.creator()
    vendor, rival = factories.vendor(organisation_name="Acme AI"), factories.vendor(organisation_name="Rival")
    # 10,000 USD per 1,000 tokens, so a passage's price shows a thousands separator.
    harbour = register_text(
        writer, samples.ARTICLE, uses={"ai-input": 0}, token_prices={"ai-input": 1_000_000}
    )
    lantern = register_text(
        writer,
        samples.LYRICS,
        title="Lantern",
        kind="lyrics",
        uses={"ai-input": 0},
        token_prices={"ai-input": 1_250},
    )
    register_text(
        scholar, samples.OTHER, title="Spreadsheets", uses={"ai-input": 0}, token_prices={"ai-input": 50}
    )
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(100_000_000, "USD"), external_ref="fund-1")
    api = with_key(factories.key(vendor, "access"))

    answer = _retrieve(api)

    assert answer.status_code == 200
    retrieval = Retrieval.objects.get()
    sold = list(RetrievalPassage.objects.filter(retrieval=retrieval).order_by("position"))
    mine = [p for p in sold if p.work_id in (harbour.pk, lantern.pk)]
    assert mine and any(p.work_id == harbour.pk for p in mine)

    # The creator sees their works' passages: when, who, use, tokens, prices, the excerpt.
    creator_page = page(client_for(writer).get("/dashboard/passages/"))
    rows = re.findall(r'<tr data-passage="(\d+)">', creator_page)
    assert sorted(int(pk) for pk in rows) == sorted(p.pk for p in mine)
    passage = next(p for p in mine if p.work_id == harbour.pk)
    row = creator_page[creator_page.index(f'<tr data-passage="{passage.pk}">') :].split("</tr>")[0]
    text = harbour.text_versions.get().text[passage.start : passage.end]
    assert "Acme AI" in row and "<td>ai-input</td>" in row
    assert f'<td class="num">{passage.tokens:,}</td>' in row
    assert '<td class="num">10,000.00 USD</td>' in row  # per 1,000 tokens
    dollars, cents = divmod(passage.price_minor, 100)
    assert f'<td class="num">{dollars:,}.{cents:02d} USD</td>' in row
    assert text[:300] in html.unescape(row)
    assert re.search(r"\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC", row)
    assert "Spreadsheets" not in creator_page  # the scholar's work, sold in the same retrieval
    filtered = page(client_for(writer).get(f"/dashboard/passages/?work={lantern.pk}"))
    assert {int(pk) for pk in re.findall(r'<tr data-passage="(\d+)">', filtered)} == {
        p.pk for p in mine if p.work_id == lantern.pk
    }

    # The vendor sees the retrieval as one receipt with its passages and total.
    vendor_page = page(client_for(vendor).get("/dashboard/passages/"))
    assert f'data-retrieval="{retrieval.retrieval_id}"' in vendor_page
    assert {int(pk) for pk in re.findall(r'<tr data-passage="(\d+)">', vendor_page)} == {p.pk for p in sold}
    dollars, cents = divmod(retrieval.total_minor, 100)
    assert f'<span class="price" data-total>{dollars:,}.{cents:02d} USD</span>' in vendor_page
    assert all(p.work.title in vendor_page for p in sold)

    # Nobody else sees any of it.
    for stranger in (scholar, factories.creator(), rival):
        body = page(client_for(stranger).get("/dashboard/passages/"))
        shown = {int(pk) for pk in re.findall(r'<tr data-passage="(\d+)">', body)}
        assert not shown & {p.pk for p in mine}, stranger.username
        assert str(retrieval.retrieval_id) not in body
    fan = client_for(factories.fan()).get("/dashboard/passages/")
    assert fan.status_code == 403 and "data-passage" not in page(fan)
    assert "The retrieved passages page is for Creator or AI vendor accounts." in page(fan)
    assert Client().get("/dashboard/passages/").status_code == 302
    assert "Retrieved passages" in page(client_for(writer).get("/dashboard/"))
    assert "Retrieved passages" not in page(client_for(factories.fan()).get("/dashboard/"))


# A text claim, side by side -----------------------------------------------------------------------------


def _marked(body: str, side: str) -> tuple[str, str]:
    """The text of one side's passage and of its highlighted span, unescaped."""
    found = re.search(rf'<blockquote class="passage" data-side="{side}">(.*?)</blockquote>', body, re.S)
    assert found, side
    inner = found.group(1)
    span = re.search(r"<mark>(.*?)</mark>", inner, re.S)
    assert span and "<" not in re.sub(r"</?mark>", "", inner)  # nothing but the highlight is markup
    return html.unescape(re.sub(r"</?mark>", "", inner)), html.unescape(span.group(1))


def test_a_text_claim_shows_both_texts_with_the_matched_spans_highlighted(with_key) -> None:
    writer, vendor = factories.creator(), factories.vendor()
    article = register_text(writer, samples.ARTICLE)
    source = article.text_versions.get().text
    quoted = " ".join(source.split()[150:200])
    answer = "Summary for Tom & Jerry <fans>: " + quoted + " That is all."
    registered = with_key(factories.key(vendor, "outputs")).post(
        "/api/v1/outputs", {"file": SimpleUploadedFile("answer.txt", answer.encode())}, format="multipart"
    )
    assert registered.status_code == 201
    claim = Claim.objects.get()
    traced = with_key(factories.key(vendor, "read")).post("/api/v1/trace", {"text": answer}, format="json")
    [expected] = traced.json()["matches"][0]["passages"]

    for viewer in (writer, vendor):  # the claimed work's creator and the respondent
        body = page(client_for(viewer).get(f"/dashboard/claims/{claim.pk}/"))

        assert 'data-text-match="quote"' in body and ">Quote</span>" in body
        copy, copy_span = _marked(body, "copy")
        theirs, source_span = _marked(body, "source")
        assert copy_span == expected["query_text"] and source_span == expected["source_text"]
        assert copy_span in answer
        assert "Tom & Jerry <fans>" in copy and "Tom &amp; Jerry &lt;fans&gt;" in body
        assert source_span == source[expected["source_start"] : expected["source_end"]]
        assert theirs.replace("…", "") in source
        assert f"data-confidence>{claim.confidence * 100:.1f}%</strong>" in body
        assert f"data-overlap>{claim.evidence['overlap'] * 100:.1f}%</strong>" in body
        assert "version 1, characters" in body

    for stranger in (factories.creator(), factories.vendor(organisation_name="Rival")):
        response = client_for(stranger).get(f"/dashboard/claims/{claim.pk}/")
        assert response.status_code == 404 and "Harbour" not in page(response)
