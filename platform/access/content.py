"""Who may have a work's original bytes, and what everyone else gets instead.

One service decides for every route to a file (the content URL, the dashboard's asset view): the original
goes to someone entitled to this use at this moment, in one of four forms:

1. an owner, co-owner or holder of an active grant on the work, signed in (`session`);
2. a delivery link returned by `POST /api/v1/access` (`delivery`): signed, short-lived, naming the access,
   the licensee and the SHA-256 of each file it may fetch;
3. an RSL licence token (`Authorization: License <token>`, `license`), issued by the licence server;
4. an x402 payment on the GET itself (`x402`), verified and settled by `access.payments`.

Everyone else gets the preview (`media.preview`), made once per file and kept beside the originals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol, cast

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Exists, OuterRef, Q

from access import delivery, licensing
from access.services import delivery_key
from accounts.models import Membership, User
from catalog import consent
from catalog.models import Asset, Grant, GrantStatus, OfferUse, Work
from catalog.selectors import offers_public, works_visible_to
from common import clock
from common.problems import ApiError, NotFound
from media import preview as previews

SESSION, DELIVERY, LICENSE, X402 = "session", "delivery", "license", "x402"
# The use an unpaid GET is priced for when it names none: the cheapest priced metered use the terms allow.
USE_ORDER = ("index", "ai-generate", "style", "voice", "ai-train")
DEFAULT_TERRITORY = "ZZ"  # "unknown" (ISO 3166 user-assigned): only worldwide terms cover it


class DeliveryRefused(ApiError):
    status_code = 403
    default_code = "delivery_refused"


@dataclass
class StoredFile:
    """The file at a content URL: what serving it needs, read in one cheap query. The work itself is
    loaded only when a decision needs it (never on the delivery-link path)."""

    work_id: int
    asset_id: int
    sha256: str
    storage_name: str
    media_type: str
    size_bytes: int
    kind: str
    _work: Work | None = field(default=None, repr=False)

    @property
    def work(self) -> Work:
        if self._work is None:
            self._work = Work.objects.select_related("created_by").get(pk=self.work_id)
        return self._work


@dataclass(frozen=True)
class Entitlement:
    form: str
    use_class: str = ""
    licensee: str = ""
    access_id: str = ""


# Files by (work, asset or None), remembered briefly: an asset's bytes never change (they are addressed by
# their SHA-256), and a new first file of a work shows within this long.
FILE_LOOKUP_TTL_S = 5.0
_files_seen: dict[tuple[int, int | None], tuple[float, tuple[Any, ...]]] = {}
_FILE_FIELDS = (
    "pk",
    "blob__sha256",
    "blob__storage_name",
    "blob__media_type",
    "blob__size_bytes",
    "blob__kind",
)


def content_file(*, work_id: int, asset_id: int | None = None) -> StoredFile:
    """The file at a content URL: the asset named, or the work's first; 404 when there is none."""
    key = (work_id, asset_id)
    seen = _files_seen.get(key)
    if seen is None or time.monotonic() - seen[0] > FILE_LOOKUP_TTL_S:
        assets = Asset.objects.filter(work_id=work_id)
        if asset_id is not None:
            assets = assets.filter(pk=asset_id)
        row = assets.order_by("created_at", "id").values_list(*_FILE_FIELDS).first()
        if row is None:
            raise NotFound("No such file.", code="content_not_found")
        if len(_files_seen) >= 10_000:
            _files_seen.clear()
        seen = (time.monotonic(), tuple(row))
        _files_seen[key] = seen
    pk, sha256, storage_name, media_type, size_bytes, kind = seen[1]
    return StoredFile(
        work_id=work_id,
        asset_id=pk,
        sha256=sha256,
        storage_name=storage_name,
        media_type=media_type,
        size_bytes=size_bytes,
        kind=kind,
    )


def stored_file_of(asset: Asset) -> StoredFile:
    blob = asset.blob
    return StoredFile(
        work_id=asset.work_id,
        asset_id=asset.pk,
        sha256=blob.sha256,
        storage_name=blob.storage_name,
        media_type=blob.media_type,
        size_bytes=blob.size_bytes,
        kind=blob.kind,
        _work=asset.work,
    )


def forget() -> None:
    _files_seen.clear()


def is_public(work: Work) -> bool:
    return offers_public().filter(work_id=work.pk).exists()


def may_see(*, user: User | None, work: Work) -> bool:
    """Whether the work (and so its preview) may be shown to this person at all."""
    if is_public(work):
        return True
    return (
        user is not None and user.is_authenticated and works_visible_to(user=user).filter(pk=work.pk).exists()
    )


def session_entitlement(*, user: User | None, work: Work) -> Entitlement | None:
    """Owners and co-owners, and holders of an active grant on any version of the work's terms (their
    own, or their organisation's), signed in."""
    if user is None or not user.is_authenticated:
        return None
    if works_visible_to(user=user).filter(pk=work.pk).exists():
        return Entitlement(form=SESSION, licensee=f"user:{user.pk}")
    members = Membership.objects.filter(organisation_id=OuterRef("organisation_id"), user=user)
    grants = Grant.objects.filter(offer__work=work, status=GrantStatus.ACTIVE).filter(
        Q(licensee=user) | Q(Exists(members))
    )
    if grants.exists():
        return Entitlement(form=SESSION, licensee=f"user:{user.pk}")
    return None


def delivery_entitlement(*, token: str, file: StoredFile) -> Entitlement:
    """The delivery link's entitlement to this file; DeliveryRefused saying why not."""
    try:
        grant = delivery.check(token, delivery_key(), now_s=clock.now().timestamp())
    except delivery.InvalidDelivery as exc:
        raise DeliveryRefused(f"This delivery link cannot be used: {exc}.", code="delivery_invalid") from None
    if grant.work_id != file.work_id or file.sha256 not in grant.sha256:
        raise DeliveryRefused("This delivery link is for other content.", code="delivery_other_content")
    return Entitlement(
        form=DELIVERY,
        use_class=grant.use_class,
        licensee=f"organisation:{grant.organisation_id}",
        access_id=grant.access_id,
    )


def license_entitlement(*, token: str, file: StoredFile) -> Entitlement:
    """An RSL licence token's entitlement to this file; licensing.LicenseRefused saying why not."""
    claims = licensing.license_check(token=token, work_id=file.work_id, sha256=file.sha256)
    return Entitlement(
        form=LICENSE, use_class=str(claims["use"]), licensee=str(claims["sub"]), access_id=str(claims["jti"])
    )


def priced_uses(work: Work) -> dict[str, int]:
    """The metered uses a GET may buy: those the work's current public terms allow (when they need no
    licence fee or approval first) and its creator consents to, with their prices."""
    offer = offers_public().filter(work_id=work.pk).first()
    if offer is None or offer.licence_fee_minor > 0 or offer.derivative_approval_required:
        return {}  # terms that need a licence first are not sold per GET
    refused = consent.refused_uses([work.pk]).get(work.pk, set())
    prices = dict(OfferUse.objects.filter(offer=offer).values_list("use_class", "price_minor"))
    return {use: prices[use] for use in USE_ORDER if use in prices and use not in refused}


def default_use(work: Work) -> str | None:
    """The use an unpaid GET is priced for when it names none: the cheapest priced use on offer."""
    priced = {use: price for use, price in priced_uses(work).items() if price > 0}
    if not priced:
        return None
    return min(priced, key=lambda use: (priced[use], USE_ORDER.index(use)))


def open_original(file: StoredFile) -> IO[bytes]:
    return default_storage.open(file.storage_name, "rb")


# Previews -----------------------------------------------------------------------------------------------


class _Stored(Protocol):
    sha256: str
    storage_name: str
    kind: str


def _preview_name(blob: _Stored, extension: str) -> str:
    return f"previews/{blob.sha256[:2]}/{blob.sha256}.{extension}"


_PREVIEW_EXTENSIONS = {"image": ("jpg", "image/jpeg"), "audio": ("ogg", "audio/ogg")}


def preview_of(blob: _Stored) -> tuple[str, str]:
    """The storage name and media type of the file's preview, made on first request and kept."""
    if blob.kind not in _PREVIEW_EXTENSIONS:
        raise NotFound("This file has no preview.", code="preview_not_available")
    extension, media_type = _PREVIEW_EXTENSIONS[blob.kind]
    name = _preview_name(blob, extension)
    if not default_storage.exists(name):
        with default_storage.open(blob.storage_name, "rb") as original:
            made = previews.preview(cast(BinaryIO, original), blob.kind)
        saved = default_storage.save(name, ContentFile(made.data))
        if saved != name:  # made at the same moment by another request: keep one
            default_storage.delete(saved)
    return name, media_type


def open_preview(name: str) -> IO[bytes]:
    return default_storage.open(name, "rb")


def offer_currency(work: Work) -> str:
    currency = offers_public().filter(work_id=work.pk).values_list("currency", flat=True).first()
    return currency or "USD"
