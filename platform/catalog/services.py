"""Writes to the catalog. Each service is atomic and leaves nothing behind when it refuses."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Organisation, Role, User
from accounts.services import require_verified_email
from catalog import blocks, lineage, tasks
from catalog.errors import media_error_to_api
from catalog.models import (
    COLLECTION_KINDS,
    MAX_PARENTS,
    OPEN_GRANT_STATUSES,
    TEXT_KINDS,
    Asset,
    Blob,
    Grant,
    GrantStatus,
    Offer,
    OfferStatus,
    OfferUse,
    SplitShare,
    SplitSheet,
    SplitSheetStatus,
    TextVersion,
    UseClass,
    Work,
    WorkKind,
    WorkParent,
    WorkStatus,
)
from catalog.selectors import parent_edges
from catalog.storage import blob_discard, blob_store
from common import clock, currency, locks
from common.money import BPS_WHOLE
from common.problems import ApiError, Conflict, Forbidden, NotFound
from media.errors import MediaError
from media.text.document import TextLimits, inspect_text
from media.validation import Limits, MediaInfo, inspect

# The most a text may cost per 1,000 tokens (a bound on input, far above any real price).
MAX_TOKEN_PRICE_MINOR = 1_000_000
# The longest vocal cap an offer may set (an hour; uploads are capped at UPLOAD_MAX_AUDIO_SECONDS anyway).
MAX_VOCAL_SECONDS = 3600
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Which kinds of file each kind of work takes.
_ASSET_KINDS = {
    WorkKind.IMAGE: {"image"},
    WorkKind.AUDIO: {"audio"},
    WorkKind.VOICE: {"audio"},
    WorkKind.STYLE: {"image", "audio"},
    WorkKind.ARTICLE: {"text"},
    WorkKind.LYRICS: {"text"},
    WorkKind.BOOK: {"text"},
    WorkKind.TEXT_COLLECTION: set(),
}


def _require_role(user: User, *roles: str, action: str) -> None:
    if user.role not in roles:
        names = " or ".join(roles)
        raise Forbidden(f"Only a {names} account may {action}.", code="role_not_allowed")


def _lock_work(work: Work) -> Work:
    """Serialise writers of one work (versions are numbered under this lock)."""
    return Work.objects.select_for_update().get(pk=work.pk)


# Works -------------------------------------------------------------------------------------------------


@transaction.atomic
def work_create(
    *, user: User, title: str, kind: str, description: str = "", tags: Sequence[str] = ()
) -> Work:
    """Register an original work. Its first split sheet gives the creator 100% and is active at once."""
    _require_role(user, Role.CREATOR, action="register original works (fans register derivatives)")
    return _work_insert(user=user, title=title, kind=kind, description=description, tags=tags)


def _work_insert(*, user: User, title: str, kind: str, description: str, tags: Sequence[str]) -> Work:
    if kind not in WorkKind.values:
        raise ApiError(
            f"Unknown kind {kind!r}; choose one of {', '.join(WorkKind.values)}.", code="invalid_kind"
        )
    work = Work.objects.create(
        title=title.strip(), kind=kind, description=description, tags=_clean_tags(tags), created_by=user
    )
    now = clock.now()
    sheet = SplitSheet.objects.create(
        work=work, version=1, status=SplitSheetStatus.ACTIVE, created_by=user, activated_at=now
    )
    SplitShare.objects.create(sheet=sheet, email=user.email, user=user, share_bps=BPS_WHOLE, accepted_at=now)
    return work


def _clean_tags(tags: Sequence[str]) -> list[str]:
    cleaned = sorted({tag.strip().lower() for tag in tags if tag.strip()})
    if any(len(tag) > 40 for tag in cleaned) or len(cleaned) > 30:
        raise ApiError("At most 30 tags of at most 40 characters each.", code="invalid_tags")
    return cleaned


@transaction.atomic
def work_update(
    *, work: Work, title: str | None = None, description: str | None = None, tags: Sequence[str] | None = None
) -> Work:
    work = _lock_work(work)
    if title is not None:
        work.title = title.strip()
    if description is not None:
        work.description = description
    if tags is not None:
        work.tags = _clean_tags(tags)
    work.save(update_fields=["title", "description", "tags", "updated_at"])
    return work


@transaction.atomic
def work_withdraw(*, work: Work) -> Work:
    """Take a work out of the catalogue: its current offer is withdrawn; existing grants stay valid."""
    work = _lock_work(work)
    Offer.objects.filter(work=work, status=OfferStatus.CURRENT).update(
        status=OfferStatus.WITHDRAWN, superseded_at=clock.now()
    )
    work.status = WorkStatus.WITHDRAWN
    work.save(update_fields=["status", "updated_at"])
    return work


@transaction.atomic
def work_members_set(*, collection: Work, member_ids: Sequence[int]) -> Work:
    """Set the member works of a style or voice. Members must be the same manager's own works."""
    collection = _lock_work(collection)
    if collection.kind not in COLLECTION_KINDS and collection.kind != WorkKind.TEXT_COLLECTION:
        raise ApiError(
            "Only a style, a voice or a text collection has member works.", code="not_a_collection"
        )
    ids = set(member_ids)
    if collection.pk in ids:
        raise ApiError("A collection cannot contain itself.", code="invalid_members")
    members = list(Work.objects.filter(pk__in=ids, created_by=collection.created_by))
    if len(members) != len(ids):
        missing = sorted(ids - {m.pk for m in members})
        raise NotFound(f"Works not found among your works: {missing}.", code="member_not_found")
    if collection.kind == WorkKind.VOICE and any(
        m.kind not in (WorkKind.AUDIO, WorkKind.VOICE) for m in members
    ):
        raise ApiError("A voice's members must be audio or voice works.", code="invalid_members")
    if collection.kind == WorkKind.TEXT_COLLECTION and any(m.kind not in TEXT_KINDS for m in members):
        raise ApiError(
            "A text collection's members must be articles, lyrics or books.", code="invalid_members"
        )
    collection.members.set(members)
    return collection


# Assets ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    asset: Asset
    created: bool
    new_content: bool


def asset_upload(
    *, work: Work, user: User, data: bytes, filename: str, fingerprint_later: bool = True
) -> Upload:
    """Validate and store an uploaded file for a work.

    The format is decided from the content; bad media raises ApiError (415/413/422) and stores nothing.
    The same bytes uploaded to the same work return the existing asset. A new asset is queued for
    fingerprinting after the commit, unless the caller fingerprints it itself (`fingerprint_later=False`).

    A text work takes text files (plain text, Markdown, HTML, PDF): the original is stored as the asset and
    its normalised text as the work's next `TextVersion`.
    """
    if not _ASSET_KINDS[WorkKind(work.kind)]:
        raise ApiError(
            f"A {work.kind} has no files of its own; upload to its member works.",
            code="wrong_media_kind",
            status_code=415,
        )
    if work.kind in TEXT_KINDS:
        return _text_upload(
            work=work, user=user, data=data, filename=filename, fingerprint_later=fingerprint_later
        )
    info = _media_info(data, work.kind)
    with transaction.atomic():
        blob, new_content = blob_store(data=data, info=info)
        asset, created = Asset.objects.get_or_create(
            work=work, blob=blob, defaults={"filename": filename[:255] or "upload", "uploaded_by": user}
        )
        if created and fingerprint_later:
            transaction.on_commit(partial(_enqueue_fingerprint, asset.pk))
    return Upload(asset=asset, created=created, new_content=new_content)


def _media_info(data: bytes, work_kind: str) -> MediaInfo:
    """Media bytes checked like an upload (by content, within the caps) for a work of `work_kind`."""
    limits = Limits(
        max_bytes=settings.UPLOAD_MAX_BYTES,
        max_pixels=settings.UPLOAD_MAX_PIXELS,
        max_audio_seconds=settings.UPLOAD_MAX_AUDIO_SECONDS,
    )
    try:
        info = inspect(data, limits)
    except MediaError as exc:
        raise media_error_to_api(exc) from None
    allowed = _ASSET_KINDS[WorkKind(work_kind)]
    if info.kind not in allowed:
        raise ApiError(
            f"A {work_kind} work takes {' or '.join(sorted(allowed)) or 'no'} files; "
            f"this file is {info.kind}.",
            code="wrong_media_kind",
            status_code=415,
        )
    return info


@dataclass(frozen=True)
class StoredFile:
    """Media bytes stored before the work they belong to exists (file_store), waiting for asset_register."""

    blob: Blob
    new_content: bool


def file_store(*, data: bytes, work_kind: str) -> StoredFile:
    """Check media bytes like an upload for a work of `work_kind` (bad media raises ApiError and stores
    nothing) and store them, content-addressed, before the work that will hold them is registered: for a
    caller that must not hold its transaction open while the storage writes (the studio stores a signed
    result between charging for it and registering it). Nothing refers to the file yet: asset_register
    attaches it to the work, file_discard removes it when the work is not made, and the unreferenced-blob
    sweep (catalog.storage) removes one a crash left behind. Image and audio only."""
    if work_kind in TEXT_KINDS:
        raise ApiError(
            "Text is uploaded to its work (asset_upload).", code="wrong_media_kind", status_code=415
        )
    blob, new_content = blob_store(data=data, info=_media_info(data, work_kind))
    return StoredFile(blob=blob, new_content=new_content)


@transaction.atomic
def asset_register(
    *, work: Work, user: User, stored: StoredFile, filename: str, fingerprint_later: bool = True
) -> Upload:
    """Attach a file stored by file_store to a work of the kind it was stored for, as asset_upload would
    (the same bytes on the same work return the existing asset): only rows are written."""
    if stored.blob.kind not in _ASSET_KINDS[WorkKind(work.kind)]:
        raise ApiError(
            f"A {work.kind} work does not take {stored.blob.kind} files.",
            code="wrong_media_kind",
            status_code=415,
        )
    asset, created = Asset.objects.get_or_create(
        work=work, blob=stored.blob, defaults={"filename": filename[:255] or "upload", "uploaded_by": user}
    )
    if created and fingerprint_later:
        transaction.on_commit(partial(_enqueue_fingerprint, asset.pk))
    return Upload(asset=asset, created=created, new_content=stored.new_content)


def file_discard(*, stored: StoredFile) -> bool:
    """Remove a file stored by file_store whose work was not made: its blob row and its file, when these
    bytes were new (stored by this caller) and nothing refers to them. Whether it went. Idempotent."""
    return stored.new_content and blob_discard(sha256=stored.blob.sha256)


def _text_upload(*, work: Work, user: User, data: bytes, filename: str, fingerprint_later: bool) -> Upload:
    limits = TextLimits(
        max_bytes=min(settings.UPLOAD_MAX_BYTES, settings.TEXT_UPLOAD_MAX_BYTES),
        max_characters=settings.TEXT_MAX_CHARACTERS,
        max_pdf_pages=settings.TEXT_MAX_PDF_PAGES,
    )
    try:
        document = inspect_text(data, limits)
    except MediaError as exc:
        raise media_error_to_api(exc) from None
    info = MediaInfo(kind="text", media_type=document.media_type, extension=document.extension)
    with transaction.atomic():
        work = _lock_work(work)  # versions are numbered under the work's lock
        blob, new_content = blob_store(data=data, info=info)
        asset, created = Asset.objects.get_or_create(
            work=work, blob=blob, defaults={"filename": filename[:255] or "upload", "uploaded_by": user}
        )
        if created:
            last = work.text_versions.order_by("-version").values_list("version", flat=True).first()
            TextVersion.objects.create(
                work=work,
                version=(last or 0) + 1,
                asset=asset,
                text=document.text,
                characters=len(document.text),
                words=document.words,
            )
            if fingerprint_later:
                transaction.on_commit(partial(_enqueue_fingerprint, asset.pk))
    return Upload(asset=asset, created=created, new_content=new_content)


def _enqueue_fingerprint(asset_id: int) -> None:
    tasks.fingerprint_asset.delay(asset_id)


# Split sheets ------------------------------------------------------------------------------------------


def invitation_token_hash(token: str) -> str:
    """What is stored of an invitation's token (the link carries the token itself)."""
    return _token_hash(token)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OwnerDetails:
    """How the proposer names a co-owner on the sheet and what they did (e.g. "Kai Lindqvist", "Producer")."""

    name: str = ""
    role: str = ""


OWNER_NAME_MAX_CHARS = 120
OWNER_ROLE_MAX_CHARS = 60


@transaction.atomic
def split_sheet_propose(
    *,
    work: Work,
    user: User,
    shares: Sequence[tuple[str, int]],
    details: Mapping[str, OwnerDetails] | None = None,
) -> SplitSheet:
    """Propose a new version of a work's ownership: (email, share_bps) pairs summing to exactly 10,000,
    with optional names and roles by email.

    Every named co-owner is invited by email and must accept; the sheet becomes active (and the previous
    one superseded) once all have. What was earned under the old sheet stays with the old sheet.
    """
    emails = [email.strip().lower() for email, _ in shares]
    if not shares:
        raise ApiError("A split sheet needs at least one owner.", code="empty_split_sheet")
    if len(set(emails)) != len(emails):
        raise ApiError("Each owner may appear once on a split sheet.", code="duplicate_owner")
    if any(bps <= 0 or bps > BPS_WHOLE for _, bps in shares):
        raise ApiError("Each share must be between 1 and 10,000 basis points.", code="invalid_share")
    total = sum(bps for _, bps in shares)
    if total != BPS_WHOLE:
        raise ApiError(
            f"Shares must sum to exactly 10,000 basis points (100%); they sum to {total}.",
            code="shares_do_not_sum_to_whole",
        )
    named = {email.strip().lower(): owner for email, owner in (details or {}).items()}
    for owner in named.values():
        if len(owner.name) > OWNER_NAME_MAX_CHARS or len(owner.role) > OWNER_ROLE_MAX_CHARS:
            raise ApiError(
                f"A name has at most {OWNER_NAME_MAX_CHARS} characters and a role at most "
                f"{OWNER_ROLE_MAX_CHARS}.",
                code="invalid_owner_details",
            )
    work = _lock_work(work)
    SplitSheet.objects.filter(work=work, status=SplitSheetStatus.PENDING).update(
        status=SplitSheetStatus.CANCELLED
    )
    last = SplitSheet.objects.filter(work=work).order_by("-version").values_list("version", flat=True).first()
    sheet = SplitSheet.objects.create(work=work, version=(last or 0) + 1, created_by=user)
    now = clock.now()
    invitations: list[tuple[str, str]] = []
    for email, bps in zip(emails, (bps for _, bps in shares), strict=True):
        owner = named.get(email, OwnerDetails())
        labels = {"name": " ".join(owner.name.split()), "role": " ".join(owner.role.split())}
        if email == user.email.lower():
            SplitShare.objects.create(
                sheet=sheet, email=email, user=user, share_bps=bps, accepted_at=now, **labels
            )
            continue
        # Whether the address has an account is neither looked up nor shown: every invitee is invited the
        # same way, and the share names its user only once that user has accepted.
        token = secrets.token_urlsafe(32)
        SplitShare.objects.create(
            sheet=sheet, email=email, share_bps=bps, invite_token_hash=_token_hash(token), **labels
        )
        invitations.append((email, token))
    if not invitations:
        _activate(sheet)
    for email, token in invitations:
        transaction.on_commit(partial(_send_invitation, work, user, email, token))
    return sheet


# The only text of the proposer's that an invitation carries: the work's title, on one line, bounded and
# quoted with every character outside printable ASCII escaped (no look-alike letters, no line breaks).
INVITATION_TITLE_MAX_CHARS = 60


def invitation_title(title: str) -> str:
    one_line = " ".join(title.split())
    if len(one_line) > INVITATION_TITLE_MAX_CHARS:
        one_line = one_line[: INVITATION_TITLE_MAX_CHARS - 1] + "~"
    escaped = one_line.encode("ascii", "backslashreplace").decode("ascii")
    # A link the proposer typed must not become clickable in the mail client.
    return '"' + escaped.replace("://", ":[//]").replace('"', "'") + '"'


def invitation_link(token: str) -> str:
    """The dashboard page that shows the invitation and accepts it in one click (never the API's page)."""
    return f"{settings.SITE_URL}/dashboard/invitations/accept/?{urlencode({'token': token})}"


def _send_invitation(work: Work, inviter: User, email: str, token: str) -> None:
    send_mail(
        subject="An invitation to co-own a work on Tribute",
        message=(
            "A Tribute creator lists this address as a co-owner of a work, titled (as they typed it) "
            f"{invitation_title(work.title)}.\n\n"
            "Open this link to see the work, your share and who invited you, and accept with one click "
            "(sign in, or sign up with this address, first):\n"
            f"{invitation_link(token)}\n\n"
            "Using the API instead? POST /api/v1/split-invitations/accept with this token:\n"
            f"{token}\n\n"
            "If you do not know this work, ignore this message: nothing is shared without your acceptance.\n"
        ),
        from_email=None,
        recipient_list=[email],
    )


def _activate(sheet: SplitSheet) -> None:
    now = clock.now()
    SplitSheet.objects.filter(work_id=sheet.work_id, status=SplitSheetStatus.ACTIVE).exclude(
        pk=sheet.pk
    ).update(status=SplitSheetStatus.SUPERSEDED, superseded_at=now)
    SplitSheet.objects.filter(pk=sheet.pk).update(status=SplitSheetStatus.ACTIVE, activated_at=now)
    sheet.refresh_from_db()


def _accept(share: SplitShare | None, user: User) -> SplitSheet:
    if share is None or share.email.lower() != user.email.lower():
        raise NotFound("No open invitation matches this token for your account.", code="invitation_not_found")
    sheet = SplitSheet.objects.select_for_update().get(pk=share.sheet_id)
    if sheet.status != SplitSheetStatus.PENDING:
        raise Conflict("This split sheet is no longer waiting for acceptance.", code="split_sheet_closed")
    accepted = SplitShare.objects.filter(pk=share.pk, accepted_at__isnull=True).update(
        user=user, accepted_at=clock.now()
    )
    if not accepted:
        raise NotFound("No open invitation matches this token for your account.", code="invitation_not_found")
    if not sheet.shares.filter(accepted_at__isnull=True).exists():
        Work.objects.select_for_update().get(pk=sheet.work_id)
        _activate(sheet)
    sheet.refresh_from_db()
    return sheet


@transaction.atomic
def split_share_accept(*, token: str, user: User) -> SplitSheet:
    """Accept a co-ownership invitation. The token must match and be addressed to the user's email, and
    that email must be verified (else anyone could sign up with the address and take the share)."""
    require_verified_email(user=user, action="accept a co-ownership")
    share = (
        SplitShare.objects.select_related("sheet")
        .filter(invite_token_hash=_token_hash(token), accepted_at__isnull=True)
        .first()
    )
    return _accept(share, user)


@transaction.atomic
def split_invitation_accept(*, share_id: int, user: User) -> SplitSheet:
    """Accept an invitation listed on the invitee's dashboard. The verified address is the proof the
    emailed token would give: only a share addressed to that address is found."""
    require_verified_email(user=user, action="accept a co-ownership")
    share = (
        SplitShare.objects.select_related("sheet")
        .filter(pk=share_id, email__iexact=user.email, accepted_at__isnull=True)
        .exclude(invite_token_hash="")
        .first()
    )
    return _accept(share, user)


# An invitation is mailed again at most this often (the proposer's button, not a way to flood an inbox).
INVITATION_RESEND_INTERVAL = timedelta(minutes=10)


def _open_invitation(*, share_id: int, work: Work) -> SplitShare:
    share = (
        SplitShare.objects.select_related("sheet")
        .filter(
            pk=share_id,
            sheet__work=work,
            sheet__status=SplitSheetStatus.PENDING,
            accepted_at__isnull=True,
        )
        .exclude(invite_token_hash="")
        .first()
    )
    if share is None:
        raise NotFound("No open invitation of this work has that id.", code="invitation_not_found")
    return share


@transaction.atomic
def split_invitation_resend(*, work: Work, share_id: int, user: User) -> SplitShare:
    """Mail a waiting co-owner a new link; the previous link stops working. At most once every
    INVITATION_RESEND_INTERVAL per invitation. `work` is one the caller manages."""
    work = _lock_work(work)
    share = _open_invitation(share_id=share_id, work=work)
    now = clock.now()
    if now - share.invited_at < INVITATION_RESEND_INTERVAL:
        minutes = int(INVITATION_RESEND_INTERVAL.total_seconds() // 60)
        raise ApiError(
            f"This invitation was sent less than {minutes} minutes ago; try again later.",
            code="invitation_sent_recently",
            status_code=429,
        )
    token = secrets.token_urlsafe(32)
    SplitShare.objects.filter(pk=share.pk).update(invite_token_hash=_token_hash(token), invited_at=now)
    transaction.on_commit(partial(_send_invitation, work, user, share.email, token))
    share.refresh_from_db()
    return share


@transaction.atomic
def split_invitation_cancel(*, work: Work, share_id: int) -> SplitSheet:
    """Withdraw an invitation. Shares must sum to 100%, so the proposal it belongs to is withdrawn whole:
    no link of it works any more, and the work keeps the split sheet it had. `work` is one the caller
    manages."""
    work = _lock_work(work)
    share = _open_invitation(share_id=share_id, work=work)
    SplitSheet.objects.filter(pk=share.sheet_id, status=SplitSheetStatus.PENDING).update(
        status=SplitSheetStatus.CANCELLED
    )
    SplitShare.objects.filter(sheet_id=share.sheet_id, accepted_at__isnull=True).update(invite_token_hash="")
    sheet = share.sheet
    sheet.refresh_from_db()
    return sheet


# Offers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    currency: str
    uses: dict[str, int]  # use class -> per-access price in minor units
    # use class -> price per 1,000 tokens of text retrieved (POST /api/v1/retrieve); each must be a use above
    token_prices: dict[str, int] = field(default_factory=dict)
    commercial_use: bool = False
    attribution_required: bool = True
    derivative_share_bps: int = 0
    derivative_approval_required: bool = False
    licence_fee_minor: int = 0
    territories: Sequence[str] = ()
    expires_at: datetime | None = None
    quota: int | None = None
    platform_fee_bps: int | None = None
    # Limits the studio enforces on jobs under these terms (a voice offer's): explicit lyrics allowed, the
    # longest vocal in seconds, and the owner's approval before each release of a derivative.
    explicit_content_allowed: bool = True
    max_vocal_seconds: int | None = None
    release_approval_required: bool = False


@dataclass(frozen=True)
class TermsConflict:
    """Two terms that say opposite things, and the term to change (an attribute of Terms)."""

    term: str
    message: str


def terms_conflicts(terms: Terms) -> list[TermsConflict]:
    """Terms a licensee would read as contradicting each other (the plain-words summary would say both):
    selling derivative works under non-commercial terms, a share of derivatives' revenue or an approval of
    derivative licences when derivatives are not allowed."""
    conflicts: list[TermsConflict] = []
    derivatives = UseClass.DERIVATIVE in terms.uses
    if derivatives and not terms.commercial_use:
        conflicts.append(
            TermsConflict(
                "commercial_use",
                "Derivative works are made to be sold, which non-commercial terms forbid: allow commercial "
                "use, or do not allow derivative works.",
            )
        )
    if terms.derivative_share_bps and not derivatives:
        conflicts.append(
            TermsConflict(
                "derivative_share_bps", "A share of derivatives needs derivative works to be allowed."
            )
        )
    if terms.derivative_approval_required and not derivatives:
        conflicts.append(
            TermsConflict(
                "derivative_approval_required",
                "Approving derivative licences needs derivative works to be allowed.",
            )
        )
    return conflicts


def _check_terms(terms: Terms) -> list[str]:
    if not currency.is_supported(terms.currency):
        raise ApiError(
            f"Currency {terms.currency!r} is not supported; use one of {', '.join(currency.SUPPORTED)}.",
            code="unsupported_currency",
        )
    if not terms.uses:
        raise ApiError("An offer must allow at least one use class.", code="no_uses")
    unknown = sorted(set(terms.uses) - set(UseClass.values))
    if unknown:
        raise ApiError(f"Unknown use classes: {', '.join(unknown)}.", code="invalid_use_class")
    if any(price < 0 for price in terms.uses.values()) or terms.licence_fee_minor < 0:
        raise ApiError("Prices and fees cannot be negative.", code="negative_price")
    amounts = [*terms.uses.values(), terms.licence_fee_minor]
    if not all(currency.amount_in_bounds(amount, terms.currency, allow_zero=True) for amount in amounts):
        raise ApiError(
            f"Prices and fees are whole minor units, {currency.bound_text(terms.currency)}.",
            code="amount_out_of_range",
            extra={"max_minor": currency.max_minor(terms.currency)},
        )
    not_allowed = sorted(set(terms.token_prices) - set(terms.uses))
    if not_allowed:
        raise ApiError(
            f"Token prices are for allowed uses only; not allowed: {', '.join(not_allowed)}.",
            code="invalid_token_price",
        )
    if any(not 0 <= price <= MAX_TOKEN_PRICE_MINOR for price in terms.token_prices.values()):
        raise ApiError(
            f"A price per 1,000 tokens is between 0 and {MAX_TOKEN_PRICE_MINOR} minor units.",
            code="invalid_token_price",
        )
    if not 0 <= terms.derivative_share_bps <= BPS_WHOLE:
        raise ApiError("derivative_share_bps must be between 0 and 10,000.", code="invalid_share")
    if terms.derivative_share_bps and UseClass.DERIVATIVE not in terms.uses:
        raise ApiError(
            "A derivative revenue share only makes sense when derivatives are allowed.", code="invalid_share"
        )
    if terms.derivative_approval_required and UseClass.DERIVATIVE not in terms.uses:
        raise ApiError(
            "Approving derivative licences needs derivative works to be allowed.", code="contradictory_terms"
        )
    if terms.platform_fee_bps is not None and not 0 <= terms.platform_fee_bps <= BPS_WHOLE:
        raise ApiError("platform_fee_bps must be between 0 and 10,000.", code="invalid_fee")
    territories = sorted({code.strip().upper() for code in terms.territories})
    bad = [code for code in territories if not _COUNTRY.match(code)]
    if bad:
        raise ApiError(
            f"Territories must be ISO 3166-1 alpha-2 country codes (empty for worldwide); bad: {bad}.",
            code="invalid_territory",
        )
    if terms.expires_at is not None and terms.expires_at <= clock.now():
        raise ApiError("expires_at must be in the future.", code="invalid_expiry")
    if terms.quota is not None and terms.quota <= 0:
        raise ApiError(
            "quota must be a positive number of accesses (omit it for unlimited).", code="invalid_quota"
        )
    if terms.max_vocal_seconds is not None and not 0 < terms.max_vocal_seconds <= MAX_VOCAL_SECONDS:
        raise ApiError(
            f"max_vocal_seconds must be between 1 and {MAX_VOCAL_SECONDS} (omit it for no cap).",
            code="invalid_max_vocal_seconds",
        )
    return territories


@transaction.atomic
def offer_publish(*, work: Work, user: User, terms: Terms, platform_staff: bool = False) -> Offer:
    """Publish the next version of a work's terms; the previous version is superseded, never changed.

    Grants made under earlier versions keep their version. Only staff may set a platform fee override.
    """
    _require_role(user, Role.CREATOR, action="publish licence terms")
    require_verified_email(user=user, action="publish licence terms")
    territories = _check_terms(terms)
    if terms.platform_fee_bps is not None and not platform_staff:
        raise Forbidden("Only the platform may set a platform fee override.", code="fee_override_forbidden")
    work = _lock_work(work)
    if work.status == WorkStatus.WITHDRAWN:
        raise Conflict("This work is withdrawn; it cannot be offered.", code="work_withdrawn")
    if work.status == WorkStatus.BLOCKED:
        raise Conflict(_BLOCKED_TEXT, code="work_blocked")
    if not work.split_sheets.filter(status=SplitSheetStatus.ACTIVE).exists():
        raise Conflict(
            "The work needs an active split sheet before it can be offered.", code="no_split_sheet"
        )
    now = clock.now()
    Offer.objects.filter(work=work, status=OfferStatus.CURRENT).update(
        status=OfferStatus.SUPERSEDED, superseded_at=now
    )
    last = Offer.objects.filter(work=work).order_by("-version").values_list("version", flat=True).first()
    offer = Offer.objects.create(
        work=work,
        version=(last or 0) + 1,
        currency=terms.currency,
        commercial_use=terms.commercial_use,
        attribution_required=terms.attribution_required,
        derivative_share_bps=terms.derivative_share_bps,
        derivative_approval_required=terms.derivative_approval_required,
        licence_fee_minor=terms.licence_fee_minor,
        territories=territories,
        expires_at=terms.expires_at,
        quota=terms.quota,
        platform_fee_bps=terms.platform_fee_bps,
        explicit_content_allowed=terms.explicit_content_allowed,
        max_vocal_seconds=terms.max_vocal_seconds,
        release_approval_required=terms.release_approval_required,
        created_by=user,
        created_at=now,
    )
    OfferUse.objects.bulk_create(
        [
            OfferUse(
                offer=offer,
                use_class=use,
                price_minor=price,
                price_per_1k_tokens_minor=terms.token_prices.get(use, 0),
            )
            for use, price in sorted(terms.uses.items())
        ]
    )
    if work.status != WorkStatus.PUBLISHED:
        work.status = WorkStatus.PUBLISHED
        work.save(update_fields=["status", "updated_at"])
    return offer


# Grants ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    grant: Grant
    created: bool


def grant_create(*, offer: Offer, user: User, organisation: Organisation | None = None) -> Acceptance:
    """Accept an offer version. Accepting again while a grant is open returns that grant.

    The fee owed is fixed from the version accepted. If the terms require the owner's approval of
    derivatives, the grant waits for it; a grant with a licence fee then waits for the fee
    (PENDING_PAYMENT). Only free terms make an active grant here: a fee is charged, and its grant
    activated, by the royalties licence service (`royalties.licences.licence_accept`), which calls this.
    """
    if user.role == Role.VENDOR and organisation is None:
        organisation = Organisation.objects.filter(membership__user=user).order_by("id").first()
    try:
        with transaction.atomic():
            # NO KEY UPDATE: serialises acceptances without blocking the foreign-key checks of accesses.
            locked = Offer.objects.select_for_update(no_key=True).select_related("work").get(pk=offer.pk)
            if locked.work.status == WorkStatus.BLOCKED:
                raise Conflict(_BLOCKED_TEXT, code="work_blocked")
            if blocks.organisation_blocked(
                organisation_id=organisation.pk if organisation is not None else None, work_id=locked.work_id
            ):
                raise Conflict(ACCESS_BLOCKED_TEXT, code="access_blocked")
            if locked.status != OfferStatus.CURRENT or locked.work.status != WorkStatus.PUBLISHED:
                raise Conflict(
                    "This version of the terms is no longer offered; accept the current version.",
                    code="offer_not_current",
                )
            if locked.expires_at is not None and locked.expires_at <= clock.now():
                raise Conflict("This offer has expired.", code="offer_expired")
            if locked.work.created_by_id == user.pk:
                raise Conflict("You manage this work; you do not need a licence for it.", code="own_work")
            existing = Grant.objects.filter(
                offer=locked, licensee=user, status__in=OPEN_GRANT_STATUSES
            ).first()
            if existing is not None:
                return Acceptance(grant=existing, created=False)
            needs_approval = (
                locked.derivative_approval_required
                and locked.uses.filter(use_class=UseClass.DERIVATIVE).exists()
            )
            grant = Grant.objects.create(
                offer=locked,
                licensee=user,
                organisation=organisation,
                status=GrantStatus.PENDING_APPROVAL
                if needs_approval
                else _unpaid_status(locked.licence_fee_minor),
                fee_minor=locked.licence_fee_minor,
                currency=locked.currency,
            )
            return Acceptance(grant=grant, created=True)
    except IntegrityError:
        # A concurrent accept by the same licensee won: hand back its grant.
        existing = Grant.objects.get(offer=offer, licensee=user, status__in=OPEN_GRANT_STATUSES)
        return Acceptance(grant=existing, created=False)


_BLOCKED_TEXT = "This work is blocked by a claim: it is out of the catalogue until the block is lifted."
ACCESS_BLOCKED_TEXT = (
    "A claim on one of your outputs blocks your access to this work until the claim is resolved."
)


def _unpaid_status(fee_minor: int) -> GrantStatus:
    """Where an accepted (or approved) grant stands before anything is paid."""
    return GrantStatus.PENDING_PAYMENT if fee_minor > 0 else GrantStatus.ACTIVE


@transaction.atomic
def grant_decide(*, grant: Grant, user: User, approve: bool) -> Grant:
    """The work's manager approves or rejects a grant waiting for approval. An approved grant with a
    licence fee waits for the licensee to pay it (accepting the offer again pays it)."""
    grant = Grant.objects.select_for_update().select_related("offer__work").get(pk=grant.pk)
    if grant.offer.work.created_by_id != user.pk:
        raise NotFound(code="grant_not_found")
    if grant.status != GrantStatus.PENDING_APPROVAL:
        raise Conflict(f"This grant is {grant.status}, not waiting for approval.", code="grant_not_pending")
    grant.status = _unpaid_status(grant.fee_minor) if approve else GrantStatus.REJECTED
    grant.decided_at = clock.now()
    grant.save(update_fields=["status", "decided_at"])
    return grant


def grant_activate_paid(*, grant: Grant, holder: Organisation | None = None) -> Grant:
    """Activate a grant whose licence fee was just recorded, inside the caller's transaction.

    Called only by the royalties licence service, in the database transaction that recorded the fee, so
    a grant is never active with its fee unpaid. A grant held by nobody yet takes `holder` (the
    organisation whose balance paid). Conflict, changing nothing, unless the grant waits for payment.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("grant_activate_paid runs inside the transaction that recorded the fee")
    changes: dict[str, object] = {"status": GrantStatus.ACTIVE}
    if holder is not None:
        changes["organisation"] = holder
    rows = Grant.objects.filter(pk=grant.pk, status=GrantStatus.PENDING_PAYMENT)
    if grant.organisation_id is not None:
        rows = rows.filter(organisation_id=grant.organisation_id)
    if rows.update(**changes) != 1:
        raise Conflict(
            f"Grant {grant.pk} is not waiting for its licence fee.", code="grant_not_pending_payment"
        )
    return Grant.objects.select_related("offer").get(pk=grant.pk)


# Derivatives -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParentClaim:
    work_id: int
    grant_id: int


@transaction.atomic
def derivative_create(
    *,
    user: User,
    title: str,
    kind: str,
    parents: Sequence[ParentClaim],
    description: str = "",
    tags: Sequence[str] = (),
) -> Work:
    """Register a new work derived from up to 16 parents, each through an active grant allowing
    `derivative` held by the user. The parents' shares come from the granted terms."""
    _require_role(user, Role.CREATOR, Role.FAN, action="register derivative works")
    if not parents:
        raise ApiError("A derivative names at least one parent work.", code="no_parents")
    _serialise_lineage()
    work = _work_insert(user=user, title=title, kind=kind, description=description, tags=tags)
    _link_parents(work=work, user=user, parents=parents)
    return work


@transaction.atomic
def work_parents_add(*, work: Work, user: User, parents: Sequence[ParentClaim]) -> Work:
    """Name further parents of an existing work (refused if that would make a cycle)."""
    _serialise_lineage()
    work = _lock_work(work)
    _link_parents(work=work, user=user, parents=parents)
    return work


def _serialise_lineage() -> None:
    """One parent link at a time: two links made at once (A->B and C->A while B->C stands) would each
    read the ancestry without the other's edge and together close a cycle. Held until commit, so the next
    link reads an ancestry that holds this one's edge. Taken before any row lock (the new edge's foreign
    key locks its parent work), so two links never wait for each other in a circle."""
    locks.hold(locks.Serialised.LINEAGE)


def _link_parents(*, work: Work, user: User, parents: Sequence[ParentClaim]) -> None:
    parent_ids = [claim.work_id for claim in parents]
    if len(set(parent_ids)) != len(parent_ids):
        raise ApiError("Each parent may be named once.", code="duplicate_parent")
    existing = list(WorkParent.objects.filter(child=work).values_list("parent_id", "share_bps"))
    if len(existing) + len(parents) > MAX_PARENTS:
        raise ApiError(f"A work may have at most {MAX_PARENTS} parents.", code="too_many_parents")
    if any(pid in {p for p, _ in existing} for pid in parent_ids):
        raise Conflict("That work is already a parent of this one.", code="duplicate_parent")
    grants = {
        g.pk: g
        for g in Grant.objects.select_related("offer").filter(
            Q(licensee=user) | Q(organisation__membership__user=user), pk__in=[c.grant_id for c in parents]
        )
    }
    now = clock.now()
    links = []
    for claim in parents:
        grant = grants.get(claim.grant_id)
        if grant is None or grant.offer.work_id != claim.work_id:
            raise NotFound(
                f"Grant {claim.grant_id} is not one of your grants on work {claim.work_id}.",
                code="grant_not_found",
            )
        if grant.status != GrantStatus.ACTIVE:
            raise Conflict(f"Grant {grant.pk} is {grant.status}, not active.", code="grant_not_active")
        if not grant.offer.uses.filter(use_class=UseClass.DERIVATIVE).exists():
            raise Forbidden(
                f"The terms of grant {grant.pk} do not allow derivative works.", code="derivative_not_allowed"
            )
        if grant.offer.expires_at is not None and grant.offer.expires_at <= now:
            raise Conflict(f"The terms of grant {grant.pk} have expired.", code="offer_expired")
        links.append(
            WorkParent(
                child=work, parent_id=claim.work_id, grant=grant, share_bps=grant.offer.derivative_share_bps
            )
        )
    total = sum(bps for _, bps in existing) + sum(link.share_bps for link in links)
    if total > BPS_WHOLE:
        raise ApiError(
            f"The parents' shares add up to {total} basis points, over 100% of the derivative's revenue.",
            code="royalty_stack_over_100",
        )
    for claim in parents:
        ancestors = lineage.ancestors({claim.work_id}, parent_edges)
        if claim.work_id == work.pk or work.pk in ancestors:
            raise ApiError(
                f"Work {claim.work_id} derives from this work; a work cannot be its own ancestor.",
                code="lineage_cycle",
            )
    WorkParent.objects.bulk_create(links)
