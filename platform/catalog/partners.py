"""Detection where the copies are: platforms that host media (streaming, user uploads) ask Tribute for a
verdict on each file, and hear about the claims it opens through signed webhooks.

A verdict says, for every registered and published work the file matches: who owns it, the match's
evidence and confidence, and whether a licence covers it (one held by the partner's organisation, or by
the Tribute account the partner names as the uploader), naming that grant. A confident match no licence
covers opens a claim against the partner, as an upload would; the partner then follows the claim through
webhook events (`claim.opened`, `claim.decided`, `claim.disputed`, `claim.resolved`, `claim.appealed`).

The webhooks themselves: catalog.webhooks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.models import Organisation, User
from catalog import tracing
from catalog.errors import media_error_to_api
from catalog.models import Claim, Grant, GrantStatus, PartnerUpload, WorkStatus
from catalog.storage import blob_store
from catalog.webhooks import allowed_url
from common.problems import ApiError, Conflict, NotFound
from media.errors import MediaError

# Fetching a file the partner serves ----------------------------------------------------------------------


def fetch_file(url: str) -> bytes:
    """The bytes of a file the partner serves on this machine, within the upload size limit."""
    limit = int(settings.UPLOAD_MAX_BYTES)
    try:
        with requests.get(
            allowed_url(url, what="file"), timeout=(3, 30), stream=True, allow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise ApiError(
                    f"Fetching the file answered HTTP {response.status_code}.",
                    code="fetch_failed",
                    status_code=422,
                )
            data = b""
            for chunk in response.iter_content(chunk_size=1 << 16):
                data += chunk
                if len(data) > limit:
                    raise ApiError(
                        f"The file is over the {limit}-byte limit.", code="media_too_large", status_code=413
                    )
            return data
    except requests.RequestException as exc:
        raise ApiError(
            f"The file could not be fetched ({type(exc).__name__}).", code="fetch_failed", status_code=422
        ) from None


# Verdicts ----------------------------------------------------------------------------------------------

# The best matches a verdict verifies and reports. Each candidate costs a geometric verification (about
# 3 ms for an image); a hosted file rarely copies more than a few works.
VERDICT_MATCHES = 5


@dataclass(frozen=True)
class VerdictResult:
    upload: PartnerUpload
    created: bool


def _covering(organisation: Organisation, licensee: User | None, work_ids: list[int]) -> dict[int, Grant]:
    holders = Q(organisation=organisation)
    if licensee is not None:
        holders |= Q(licensee=licensee)
    grants = (
        Grant.objects.filter(holders, status=GrantStatus.ACTIVE, offer__work_id__in=work_ids)
        .select_related("offer", "licensee", "organisation")
        .order_by("-created_at")
    )
    covering: dict[int, Grant] = {}
    for grant in grants:
        covering.setdefault(grant.offer.work_id, grant)
    return covering


def verdict_request(
    *,
    organisation: Organisation,
    user: User,
    reference: str,
    data: bytes,
    licensee_username: str = "",
) -> VerdictResult:
    """The verdict on a file a partner hosts, once per reference: asking again with the same file answers
    the first verdict; the same reference with another file is a conflict."""
    reference = reference.strip()
    if not reference or len(reference) > 200:
        raise ApiError(
            "A reference of 1 to 200 characters names the file on your side.", code="invalid_reference"
        )
    sha256 = hashlib.sha256(data).hexdigest()
    existing = PartnerUpload.objects.filter(organisation=organisation, reference=reference).first()
    if existing is not None:
        if existing.sha256 != sha256:
            raise Conflict("This reference names another file already.", code="reference_reused")
        return VerdictResult(upload=existing, created=False)
    licensee = None
    if licensee_username:
        licensee = User.objects.filter(username=licensee_username, is_active=True).first()
        if licensee is None:
            raise NotFound("No such Tribute account.", code="licensee_not_found")

    # The file is compared, never indexed: a partner's uploads are not part of the catalogue.
    try:
        info, text = tracing.read_any(data)
        matches = tracing.match_works(data=data, info=info, user=None, text=text, limit=VERDICT_MATCHES)
    except MediaError as exc:
        raise media_error_to_api(exc) from None
    matches = [m for m in matches if m.work.status == WorkStatus.PUBLISHED]  # drafts are never disclosed
    covering = _covering(organisation, licensee, [m.work.pk for m in matches])
    uncovered = [m for m in matches if m.work.pk not in covering]
    claimable = any(m.match.confidence >= tracing.CLAIM_CONFIDENCE for m in uncovered)
    with transaction.atomic():
        # A file that opens no claim is not kept: its hash and verdict are enough.
        blob = blob_store(data=data, info=info)[0] if claimable else None
        upload = PartnerUpload.objects.create(
            organisation=organisation,
            submitted_by=user,
            reference=reference,
            licensee=licensee,
            sha256=sha256,
            blob=blob,
        )
        claims: dict[int, int] = {}
        if claimable:
            tracing.open_claims(uncovered, respondent=user, sha256=sha256, partner_upload=upload)
            claims = dict(
                Claim.objects.filter(
                    subject_sha256=sha256, work_id__in=[m.work.pk for m in uncovered]
                ).values_list("work_id", "pk")
            )
        upload.verdict = _verdict(matches, covering, claims)
        upload.save(update_fields=["verdict"])
    return VerdictResult(upload=upload, created=True)


def _verdict(
    matches: list[tracing.WorkMatch], covering: dict[int, Grant], claims: dict[int, int]
) -> dict[str, object]:
    rows = []
    for item in matches:
        grant = covering.get(item.work.pk)
        holder = None
        if grant is not None:
            holder = grant.organisation.name if grant.organisation is not None else grant.licensee.public_name
        rows.append(
            {
                "work": item.work.pk,
                "title": item.work.title,
                "kind": item.work.kind,
                "owner": item.work.created_by.public_name,
                "match_kind": item.match.kind,
                "confidence": round(item.match.confidence, 4),
                "evidence": tracing.match_evidence(item.match),
                "licensed": grant is not None,
                "grant": grant.pk if grant is not None else None,
                "licensed_to": holder,
                "claim": claims.get(item.work.pk),
            }
        )
    confident = [row for row in rows if float(str(row["confidence"])) >= tracing.CLAIM_CONFIDENCE]
    return {"licensed": all(row["licensed"] for row in confident), "matches": rows}
