"""Text works: registering articles, lyrics and books, their versions, and hostile text uploads."""

from __future__ import annotations

import gzip
import os

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.test import override_settings

from catalog.models import Asset, Blob, TextVersion
from common.problems import ApiError
from common.uploads import read_upload
from tests import factories
from tests.text import samples

pytestmark = pytest.mark.django_db


def _upload(client, work_id: int, data: bytes, name: str):
    return client.post(
        f"/api/v1/works/{work_id}/assets", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )


def _stored_files() -> list[str]:
    if not default_storage.exists("blobs"):
        return []
    found = []
    for top in default_storage.listdir("blobs")[0]:
        for middle in default_storage.listdir(f"blobs/{top}")[0]:
            found += default_storage.listdir(f"blobs/{top}/{middle}")[1]
    return found


@pytest.mark.parametrize("kind", ["article", "lyrics", "book"])
def test_a_creator_registers_a_text_work_and_its_normalised_text_is_kept_beside_the_original(
    as_user, kind
) -> None:
    creator = factories.creator()
    client = as_user(creator)
    work = client.post("/api/v1/works", {"title": "Harbour", "kind": kind}, format="json").json()
    original = ("\ufeff" + samples.ARTICLE.replace("\n", "\r\n") + "\r\n\r\n\r\n").encode("utf-8")

    response = _upload(client, work["id"], original, "harbour.txt")

    assert response.status_code == 201
    body = response.json()
    assert (body["media_type"], body["text_version"], body["words"]) == ("text/plain", 1, 263)
    version = TextVersion.objects.get(work_id=work["id"])
    assert version.text.startswith("The harbour town woke before the fishing fleet returned.")
    assert "\r" not in version.text and not version.text.endswith("\n") and "\ufeff" not in version.text
    blob = Blob.objects.get()
    with default_storage.open(blob.storage_name, "rb") as handle:
        assert handle.read() == original


def test_an_update_of_the_text_adds_a_version_and_the_same_bytes_do_not(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="article")
    client = as_user(creator)

    first = _upload(client, work.pk, samples.ARTICLE.encode(), "v1.txt")
    again = _upload(client, work.pk, samples.ARTICLE.encode(), "v1-again.txt")
    updated = _upload(client, work.pk, (samples.ARTICLE + "\n\nCorrection: twelve boats.").encode(), "v2.txt")

    assert (first.status_code, again.status_code, updated.status_code) == (201, 200, 201)
    assert list(work.text_versions.order_by("version").values_list("version", flat=True)) == [1, 2]
    assert work.text_versions.get(version=2).text.endswith("Correction: twelve boats.")


def test_markdown_html_and_pdf_become_plain_text(as_user) -> None:
    creator = factories.creator()
    client = as_user(creator)
    markdown = factories.work(creator, kind="article", title="md")
    html = factories.work(creator, kind="article", title="html")
    pdf = factories.work(creator, kind="book", title="pdf")
    page = (
        "<!DOCTYPE html><html><head><title>Harbour</title></head><body><nav>Home | About | Contact</nav>"
        f"<article><h1>Harbour</h1><p>{samples.ARTICLE}</p></article><footer>Copyright</footer></body></html>"
    )

    as_markdown = _upload(
        client,
        markdown.pk,
        b"# Harbour\n\nThe **fleet** came [home](https://example.org).\n\n- gulls\n",
        "a.md",
    )
    as_html = _upload(client, html.pk, page.encode(), "a.html")
    as_pdf = _upload(client, pdf.pk, samples.pdf(["Chapter one.", "Chapter two."]), "a.pdf")

    assert [r.json()["media_type"] for r in (as_markdown, as_html, as_pdf)] == [
        "text/markdown",
        "text/html",
        "application/pdf",
    ]
    assert markdown.text_versions.get().text == "Harbour\n\nThe fleet came home.\ngulls"
    html_text = html.text_versions.get().text
    assert "Old Tomas stood at the end of the pier" in html_text and "Home | About" not in html_text
    assert pdf.text_versions.get().text == "Chapter one.\n\nChapter two."


def test_text_in_a_legacy_encoding_is_decoded(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="lyrics")
    text = "Да, я помню этот город у моря, где рыбаки возвращались домой на рассвете."  # noqa: RUF001

    response = _upload(as_user(creator), work.pk, text.encode("cp1251"), "song.txt")

    assert response.status_code == 201
    assert work.text_versions.get().text == text


@pytest.mark.parametrize(
    ("make", "name", "status", "code"),
    [
        (samples.zip_bomb, "story.txt", 415, "unsupported_media"),
        (lambda: gzip.compress(b"\0" * 50_000_000), "story.txt", 415, "unsupported_media"),
        (lambda: "Café au lait".encode() + b" then \xff\xfe broken", "notes.txt", 422, "invalid_encoding"),
        (lambda: samples.pdf(["one page"], declared_count=100_000), "huge.pdf", 413, "media_too_large"),
        (
            lambda: b"<html><body><p>Read this.</p><script>steal(document.cookie)</script></body></html>",
            "page.html",
            415,
            "active_content",
        ),
        (
            lambda: b"<html><body><p onclick='x()'>Click.</p><p>More.</p></body></html>",
            "page.html",
            415,
            "active_content",
        ),
        (lambda: os.urandom(4096).replace(b"\0", b"\1") + b"\0", "noise.txt", 415, "unsupported_media"),
        (lambda: b"%PDF-1.4\n1 0 obj << broken", "broken.pdf", 422, "corrupt_media"),
        (lambda: b"   \n\n  \t ", "blank.txt", 422, "corrupt_media"),
        (factories.png_bytes, "cover.txt", 415, "unsupported_media"),
    ],
)
def test_hostile_text_uploads_get_a_clear_4xx_and_change_nothing(as_user, make, name, status, code) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="article")
    files_before = _stored_files()

    response = _upload(as_user(creator), work.pk, make(), name)

    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert (Blob.objects.count(), Asset.objects.count(), TextVersion.objects.count()) == (0, 0, 0)
    assert _stored_files() == files_before


@override_settings(TEXT_MAX_PDF_PAGES=3)
def test_a_pdf_over_the_page_cap_is_refused_by_its_real_page_count(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="book")

    response = _upload(as_user(creator), work.pk, samples.pdf([f"Page {i}" for i in range(5)]), "book.pdf")

    assert response.status_code == 413 and response.json()["code"] == "media_too_large"
    assert TextVersion.objects.count() == 0


def test_a_2_gb_sparse_file_is_refused_before_it_is_read(as_user, tmp_path) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="book")
    path = tmp_path / "sparse.txt"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024**3)
    size = path.stat().st_size

    # Over HTTP the declared length is refused before any byte of the body is read.
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
    response = as_user(creator).generic(
        "POST",
        f"/api/v1/works/{work.pk}/assets",
        head,
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(size),
    )
    # A request that did not declare its length is refused by the upload's own size, unread.
    with path.open("rb") as handle, pytest.raises(ApiError) as refused:
        read_upload(UploadedFile(handle, name="sparse.txt", size=size))

    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    assert refused.value.status_code == 413 and refused.value.problem_code == "media_too_large"
    assert (Blob.objects.count(), TextVersion.objects.count()) == (0, 0)


def test_a_text_collection_holds_text_works_only(as_user) -> None:
    creator = factories.creator()
    collection = factories.work(creator, kind="text-collection", title="Stories")
    story = factories.work(creator, kind="article")
    picture = factories.work(creator, kind="image")
    client = as_user(creator)

    ok = client.put(f"/api/v1/works/{collection.pk}/members", {"members": [story.pk]}, format="json")
    refused = client.put(f"/api/v1/works/{collection.pk}/members", {"members": [picture.pk]}, format="json")
    no_file = _upload(client, collection.pk, samples.ARTICLE.encode(), "a.txt")

    assert ok.status_code == 200 and ok.json()["members"] == [story.pk]
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_members"
    assert no_file.status_code == 415 and no_file.json()["code"] == "wrong_media_kind"
    assert list(collection.members.all()) == [story]
