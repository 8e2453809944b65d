import io
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from PIL import Image

from catalog.models import Asset, Blob, SplitSheet
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_creator_registers_a_work_with_a_first_split_sheet_giving_them_everything(as_user) -> None:
    creator = factories.creator()

    response = as_user(creator).post(
        "/api/v1/works", {"title": " Dawn ", "kind": "image", "tags": ["Sky", "sky", "oil"]}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["title"], body["status"], body["tags"]) == ("Dawn", "draft", ["oil", "sky"])
    sheet = SplitSheet.objects.get(work_id=body["id"])
    assert (sheet.version, sheet.status) == (1, "active")
    assert [(s.user, s.share_bps) for s in sheet.shares.all()] == [(creator, 10_000)]


def test_a_fan_cannot_register_an_original_work(as_user) -> None:
    response = as_user(factories.fan()).post("/api/v1/works", {"title": "x", "kind": "image"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_an_unknown_kind_is_a_validation_error(as_user) -> None:
    creator = factories.creator()
    response = as_user(creator).post("/api/v1/works", {"title": "x", "kind": "video"}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert set(response.json()) >= {"type", "title", "status", "detail", "code", "errors"}
    assert "kind" in response.json()["errors"]
    assert creator.works.count() == 0


def test_works_list_filters_searches_orders_and_paginates(as_user) -> None:
    creator = factories.creator()
    for index in range(30):
        factories.work(creator, kind="audio" if index % 3 == 0 else "image", title=f"Piece {index:02d}")
    factories.work(factories.creator(), title="Piece 99 by someone else")
    client = as_user(creator)

    page = client.get("/api/v1/works", {"kind": "audio", "ordering": "title", "page_size": 4}).json()
    assert page["count"] == 10
    assert [w["title"] for w in page["results"]] == ["Piece 00", "Piece 03", "Piece 06", "Piece 09"]
    assert page["next"] is not None
    assert client.get("/api/v1/works", {"q": "piece 1"}).json()["count"] == 10
    assert client.get("/api/v1/works", {"q": "99"}).json()["count"] == 0


def test_a_work_can_be_renamed_by_its_manager_only(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    assert (
        as_user(creator).patch(f"/api/v1/works/{work.pk}", {"title": "New"}, format="json").json()["title"]
        == "New"
    )
    assert (
        as_user(factories.creator())
        .patch(f"/api/v1/works/{work.pk}", {"title": "X"}, format="json")
        .status_code
        == 404
    )
    work.refresh_from_db()
    assert work.title == "New"


def _upload(client, work_id: int, data: bytes, name: str):
    return client.post(
        f"/api/v1/works/{work_id}/assets", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )


def test_uploading_an_image_stores_it_by_content_hash_and_recognises_the_same_bytes(as_user) -> None:
    creator = factories.creator()
    first, second = factories.work(creator), factories.work(creator, title="Other")
    client = as_user(creator)
    data = factories.png_bytes()

    created = _upload(client, first.pk, data, "cover.jpg")
    again = _upload(client, first.pk, data, "renamed.png")
    elsewhere = _upload(client, second.pk, data, "cover.png")

    assert created.status_code == 201
    body = created.json()
    assert (body["media_type"], body["width"], body["height"], body["new_content"]) == (
        "image/png",
        64,
        48,
        True,
    )
    assert body["fingerprint_status"] == "pending"
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert elsewhere.status_code == 201 and elsewhere.json()["new_content"] is False
    assert Blob.objects.count() == 1 and Asset.objects.count() == 2
    blob = Blob.objects.get()
    assert default_storage.exists(blob.storage_name) and blob.sha256 in blob.storage_name


def test_uploading_audio_records_its_duration(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="audio")
    response = _upload(as_user(creator), work.pk, factories.wav_bytes(seconds=2.0), "take.wav")
    assert response.status_code == 201
    assert (response.json()["media_type"], response.json()["duration_ms"]) == ("audio/wav", 2000)


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()[:400]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("song.mp3", b"not really")
    return buffer.getvalue()


def _huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "make", "name", "status", "code"),
    [
        ("image", lambda: b"<html><body>hi</body></html>", "page.png", 415, "unsupported_media"),
        ("image", _truncated_jpeg, "photo.jpg", 422, "corrupt_media"),
        ("audio", _zip, "song.mp3", 415, "unsupported_media"),
        ("image", _huge_png, "bomb.png", 413, "media_too_large"),
        ("image", lambda: b"", "empty.png", 400, "validation_error"),
        ("audio", factories.png_bytes, "cover.png", 415, "wrong_media_kind"),
    ],
)
def test_bad_uploads_get_a_clear_4xx_and_store_nothing(as_user, kind, make, name, status, code) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind=kind)

    response = _upload(as_user(creator), work.pk, make(), name)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert Blob.objects.count() == 0 and Asset.objects.count() == 0


@override_settings(UPLOAD_MAX_BYTES=2048)
def test_a_body_over_the_limit_is_refused_before_it_is_read(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    response = _upload(as_user(creator), work.pk, b"\x89PNG\r\n\x1a\n" + b"0" * 200_000, "big.png")
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert Blob.objects.count() == 0


@override_settings(UPLOAD_MAX_AUDIO_SECONDS=1)
def test_audio_over_the_duration_cap_is_refused(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator, kind="audio")
    response = _upload(as_user(creator), work.pk, factories.wav_bytes(seconds=3.0), "long.wav")
    assert response.status_code == 413
    assert response.json()["code"] == "media_too_large"


def test_a_style_collects_its_creators_works(as_user) -> None:
    creator = factories.creator()
    style = factories.work(creator, kind="style", title="Ink wash")
    members = [factories.work(creator, title=f"Study {i}") for i in range(3)]
    foreign = factories.work(factories.creator())
    client = as_user(creator)

    ok = client.put(f"/api/v1/works/{style.pk}/members", {"members": [m.pk for m in members]}, format="json")
    refused = client.put(f"/api/v1/works/{style.pk}/members", {"members": [foreign.pk]}, format="json")

    assert ok.status_code == 200 and sorted(ok.json()["members"]) == sorted(m.pk for m in members)
    assert refused.status_code == 404 and refused.json()["code"] == "member_not_found"
    assert style.members.count() == 3
