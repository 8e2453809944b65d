"""Tracing: fingerprint uploaded assets, find what media derives from, and open claims.

The media app knows content (by SHA-256); this module maps content to works, decides whether the person
who registered the media holds a grant covering each matched work, and opens claims when they do not.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Organisation, SecurityEvent, User
from accounts.security import security_event_record
from catalog import blocks, webhooks
from catalog.errors import media_error_to_api
from catalog.models import (
    Asset,
    Claim,
    ClaimCharge,
    ClaimDecision,
    ClaimEvent,
    ClaimResolution,
    ClaimStatus,
    Grant,
    GrantStatus,
    Output,
    PartnerUpload,
    Work,
    WorkStatus,
)
from catalog.selectors import work_ancestor_ids, works_visible_to
from catalog.storage import blob_store
from common import clock
from common.problems import ApiError, Conflict, NotFound
from matching import credentials
from matching import services as media
from media.errors import MediaError, UnsupportedMedia
from media.text.document import inspect_text
from media.text.embedding import CLAIM_CONFIDENCE as PARAPHRASE_CLAIM_CONFIDENCE
from media.validation import MediaInfo, inspect

# A match this confident opens a claim; weaker matches are reported by the trace but claim nothing.
CLAIM_CONFIDENCE = 0.9


@dataclass(frozen=True)
class PassagePair:
    """A matched passage of text on both sides: the query's and the work's (in the version it matched)."""

    query_start: int
    query_end: int
    query_text: str
    source_start: int
    source_end: int
    source_text: str
    source_version: int


@dataclass(frozen=True)
class WorkMatch:
    work: Work
    match: media.ContentMatch
    grant: Grant | None
    own_work: bool
    # The work's file the media matched: the one file a claim lets the respondent preview.
    asset: Asset | None = None
    passages: tuple[PassagePair, ...] = ()

    @property
    def covered(self) -> bool:
        return self.own_work or self.grant is not None


# Quoted passages shown in a trace are cut to this many characters on each side.
_EXCERPT_CHARACTERS = 2000


def read_any(data: bytes) -> tuple[MediaInfo, str | None]:
    """What the bytes are: media (image, audio), or text with its normalised form. Raises MediaError."""
    try:
        return inspect(data), None
    except UnsupportedMedia:
        document = inspect_text(data)
    return MediaInfo(kind="text", media_type=document.media_type, extension=document.extension), document.text


def _covering_grants(user: User, works: list[Work]) -> dict[int, Grant]:
    grants = Grant.objects.filter(
        Q(licensee=user) | Q(organisation__membership__user=user),
        status=GrantStatus.ACTIVE,
        offer__work__in=works,
    ).select_related("offer")
    return {grant.offer.work_id: grant for grant in grants.order_by("-created_at")}


def match_works(
    *,
    data: bytes,
    info: MediaInfo,
    user: User | None,
    derived_from: Work | None = None,
    text: str | None = None,
    limit: int = 20,
    skipped: list[media.SkippedStep] | None = None,
    until: Callable[[media.ContentMatch], bool] | None = None,
    exclude: Collection[str] = (),
) -> list[WorkMatch]:
    """The registered works the media (or `text`, when info.kind is text) matches, best first, each with
    whether `user` is covered. A matching step the media did not allow is added to `skipped`; `until`
    bounds the audio step and content in `exclude` is not matched by audio (media.content_match).

    A user is covered for a work they manage or co-own, for a work they hold an active grant on, and
    (when the media belongs to `derived_from`) for that work's ancestors. With no user (the operator's
    command) every work is reported and nothing is covered.
    """
    if info.kind == "text":
        matches = media.text_match(text=text or "", limit=limit)
    else:
        matches = media.content_match(
            data=data, info=info, limit=limit, skipped=skipped, until=until, exclude=exclude
        )
    return _works_matched(matches, user=user, derived_from=derived_from, text=text)


def _works_matched(
    matches: list[media.ContentMatch], *, user: User | None, derived_from: Work | None, text: str | None
) -> list[WorkMatch]:
    """The works that registered the matched content, best match first, with whether `user` is covered."""
    by_sha: dict[str, list[media.ContentMatch]] = defaultdict(list)
    for match in matches:
        by_sha[match.sha256].append(match)
    assets = Asset.objects.filter(blob_id__in=list(by_sha)).select_related(
        "work", "work__created_by", "text_version"
    )
    works: dict[int, tuple[Work, media.ContentMatch, Asset]] = {}
    for asset in assets.order_by("pk"):
        for match in by_sha[asset.blob_id]:
            best = works.get(asset.work_id)
            if best is None or match.confidence > best[1].confidence:
                works[asset.work_id] = (asset.work, match, asset)
    visible: set[int] = set()
    grants: dict[int, Grant] = {}
    ancestors: set[int] = set()
    if user is not None:
        visible = set(works_visible_to(user=user).filter(pk__in=list(works)).values_list("pk", flat=True))
        grants = _covering_grants(user, [work for work, _, _ in works.values()])
        if derived_from is not None:
            ancestors = work_ancestor_ids(work_id=derived_from.pk)
    result = []
    for work, match, asset in works.values():
        own = work.pk in visible or work.pk in ancestors
        pairs = _passage_pairs(match, asset, text or "") if match.spans else ()
        result.append(
            WorkMatch(
                work=work, match=match, grant=grants.get(work.pk), own_work=own, asset=asset, passages=pairs
            )
        )
    result.sort(key=lambda item: -item.match.confidence)
    return result


def _passage_pairs(match: media.ContentMatch, asset: Asset, text: str) -> tuple[PassagePair, ...]:
    version = getattr(asset, "text_version", None)
    if version is None:
        return ()
    return tuple(
        PassagePair(
            query_start=span.query_start,
            query_end=span.query_end,
            query_text=text[span.query_start : span.query_end][:_EXCERPT_CHARACTERS],
            source_start=span.source_start,
            source_end=span.source_end,
            source_text=version.text[span.source_start : span.source_end][:_EXCERPT_CHARACTERS],
            source_version=version.version,
        )
        for span in match.spans
    )


def trace(*, data: bytes, user: User | None, text_only: bool = False) -> tuple[MediaInfo, list[WorkMatch]]:
    """What this media or text derives from (`text_only`: the bytes are text sent as text, never taken for
    media whatever they start with). Raises ApiError for content we cannot read."""
    report = trace_report(data=data, user=user, text_only=text_only)
    return report.info, report.matches


@dataclass(frozen=True)
class TraceReport:
    info: MediaInfo
    matches: list[WorkMatch]
    # The matching steps this media did not allow (say, the voice of an instrumental), with why.
    skipped: list[media.SkippedStep]


def trace_report(*, data: bytes, user: User | None, text_only: bool = False) -> TraceReport:
    """`trace`, with the steps that were skipped. Each step fails alone: the answer holds what the others
    found; only media no step can read is refused (ApiError)."""
    skipped: list[media.SkippedStep] = []
    try:
        if text_only:
            document = inspect_text(data)
            info = MediaInfo(kind="text", media_type=document.media_type, extension=document.extension)
            text: str | None = document.text
        else:
            info, text = read_any(data)
        matches = match_works(data=data, info=info, user=user, text=text, skipped=skipped)
    except MediaError as exc:
        raise media_error_to_api(exc) from None
    disclosed = [m for m in matches if user is None or _disclosed(m)]
    return TraceReport(info, disclosed, skipped)


def _disclosed(match: WorkMatch) -> bool:
    """Someone else's unpublished work is not disclosed, not even its existence."""
    return match.own_work or match.work.status == WorkStatus.PUBLISHED


def manifest_of(*, data: bytes, info: MediaInfo) -> dict[str, object] | None:
    """The C2PA manifest the media carries, summarised (None when it has none, e.g. once stripped: the
    fingerprint match still finds what it derives from)."""
    if info.kind == "text":
        return None
    summary = credentials.manifest_of(data, info.media_type)
    return None if summary is None else summary.as_dict()


def claims_open_for(*, asset: Asset, data: bytes) -> list[Claim]:
    """Open a claim for every confident match of someone else's work the uploader is not covered for."""
    info, text = read_any(data)

    def claimable(match: media.ContentMatch) -> bool:
        if match.confidence < CLAIM_CONFIDENCE:
            return False
        works = _works_matched([match], user=asset.uploaded_by, derived_from=asset.work, text=text)
        return any(not m.covered and m.work.pk != asset.work_id for m in works)

    # The audio is checked in bounded windows up to the first claim (media.content_match), without the
    # recording itself, unless another file of the same bytes could be someone else's.
    shared = Asset.objects.filter(blob_id=asset.blob_id).exclude(pk=asset.pk).exists()
    matches = match_works(
        data=data,
        info=info,
        user=asset.uploaded_by,
        derived_from=asset.work,
        text=text,
        until=claimable,
        exclude=() if shared else (asset.blob_id,),
    )
    uncovered = [m for m in matches if not m.covered and m.work.pk != asset.work_id]
    return open_claims(uncovered, respondent=asset.uploaded_by, sha256=asset.blob_id, asset=asset)


def match_evidence(match: media.ContentMatch) -> dict[str, object]:
    """What a claim records of where the match is, beside its kind, score and confidence."""
    evidence: dict[str, object] = {
        "region": list(match.region) if match.region is not None else None,
        "mirrored": match.mirrored,
        "offset_s": match.offset_s,
        "time_scale": match.time_scale,
        "overlap": match.overlap,
    }
    return {name: value for name, value in evidence.items() if value not in (None, False)}


MANUAL_MATCH_KIND = "manual"


def claim_file(*, claimant: User, work_id: int, asset_id: int, statement: str) -> Claim:
    """Anyone with a registered work claims that someone else's published media copies it, with a
    statement of their evidence. The trace's evidence is attached when the fingerprints find the work in
    that media; a claim the fingerprints cannot see (match kind `manual`) is filed all the same, for the
    owner of the media to answer and the operator to resolve."""
    statement = statement.strip()
    if not statement:
        raise ApiError("A claim needs a statement of the evidence.", code="statement_required")
    work = Work.objects.filter(pk=work_id, created_by=claimant).first()
    if work is None:
        raise NotFound("No such work among yours.", code="work_not_found")
    asset = (
        Asset.objects.select_related("work", "blob")
        .filter(pk=asset_id, work__status=WorkStatus.PUBLISHED)
        .exclude(work__created_by=claimant)
        .first()
    )
    if asset is None:  # drafts are private, and one's own media is not claimed
        raise NotFound("No such published file of someone else's.", code="asset_not_found")
    with default_storage.open(asset.blob.storage_name, "rb") as handle:
        data = handle.read()
    info, text = read_any(data)
    found = next(
        (m for m in match_works(data=data, info=info, user=None, text=text) if m.work.pk == work.pk), None
    )
    shown = found.asset if found is not None else Asset.objects.filter(work=work).order_by("pk").first()
    try:
        with transaction.atomic():
            claim = Claim.objects.create(
                work=work,
                respondent=asset.work.created_by,
                subject_asset=asset,
                subject_sha256=asset.blob_id,
                matched_asset=shown,
                match_kind=found.match.kind if found is not None else MANUAL_MATCH_KIND,
                score=found.match.score if found is not None else 0.0,
                confidence=found.match.confidence if found is not None else 0.0,
                evidence={
                    **(match_evidence(found.match) if found is not None else {}),
                    "filed_by": claimant.pk,
                },
            )
            ClaimEvent.objects.create(
                claim=claim, actor=claimant, kind=ClaimEvent.Kind.OPENED, statement=statement
            )
    except IntegrityError:
        raise Conflict("This media already has a claim on this work.", code="claim_exists") from None
    return claim


def open_claims(
    matches: list[WorkMatch],
    *,
    respondent: User,
    sha256: str,
    asset: Asset | None = None,
    output: Output | None = None,
    partner_upload: PartnerUpload | None = None,
) -> list[Claim]:
    """A claim for each match confident enough (a paraphrase alone needs more), once per work and content."""
    opened = []
    for item in matches:
        if item.match.confidence < CLAIM_CONFIDENCE:
            continue
        if (
            item.match.kind == media.TextMatchKind.PARAPHRASE
            and item.match.confidence < PARAPHRASE_CLAIM_CONFIDENCE
        ):
            continue  # a paraphrase alone claims only when it is very close
        try:
            with transaction.atomic():
                claim = Claim.objects.create(
                    work=item.work,
                    respondent=respondent,
                    subject_asset=asset,
                    subject_output=output,
                    subject_partner_upload=partner_upload,
                    subject_sha256=sha256,
                    matched_asset=item.asset,
                    match_kind=item.match.kind,
                    score=item.match.score,
                    confidence=item.match.confidence,
                    evidence=match_evidence(item.match),
                )
                ClaimEvent.objects.create(claim=claim, kind=ClaimEvent.Kind.OPENED)
                webhooks.claim_changed(claim, "opened")
            opened.append(claim)
        except IntegrityError:  # this content already has a claim on this work
            continue
    return opened


@dataclass(frozen=True)
class OutputResult:
    output: Output
    confirmed_works: list[int]
    unconfirmed_works: list[int]
    uncovered: list[WorkMatch]
    claims: list[Claim]


def output_register(
    *, organisation: Organisation, user: User, data: bytes, filename: str, receipts: dict[str, int]
) -> OutputResult:
    """Register a vendor's generated output and compare it with the sources its receipts name.

    `receipts` maps each claimed receipt (access id) to the work it paid for. A matched work with a receipt
    is confirmed; a claimed work that does not match is unconfirmed; a matched work no receipt covers opens
    a claim against the vendor.
    """

    # Nothing is stored until the media is known to be readable: fingerprints are keyed by the content's
    # hash, so they are computed first and the blob is written only for an output that is registered.
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        info, text = read_any(data)
        if text is None:  # a text output is only compared, not indexed
            media.fingerprints_compute(
                sha256=sha256,
                data=data,
                kinds=media.fingerprint_kinds_for(info.kind, voice_work=True),
                progress=lambda _percent: None,
            )
        matches = match_works(data=data, info=info, user=user, text=text)
    except MediaError as exc:
        raise media_error_to_api(exc) from None
    # Someone else's unpublished work is neither reported nor claimed, exactly as `trace` hides it.
    matches = [m for m in matches if _disclosed(m)]
    claimed = set(receipts.values())
    matched = {m.work.pk for m in matches if m.work.created_by_id != user.pk}
    uncovered = [m for m in matches if m.work.pk not in claimed and m.work.created_by_id != user.pk]
    with transaction.atomic():
        blob, _ = blob_store(data=data, info=info)
        output = Output.objects.create(
            organisation=organisation,
            registered_by=user,
            blob=blob,
            filename=filename[:255] or "output",
            claimed_receipts=sorted(receipts),
            result={
                "confirmed_works": sorted(claimed & matched),
                "unconfirmed_works": sorted(claimed - matched),
                "uncovered_works": sorted(m.work.pk for m in uncovered),
            },
        )
        claims = open_claims(uncovered, respondent=user, sha256=blob.sha256, output=output)
    return OutputResult(
        output=output,
        confirmed_works=sorted(claimed & matched),
        unconfirmed_works=sorted(claimed - matched),
        uncovered=uncovered,
        claims=claims,
    )


# Claims ------------------------------------------------------------------------------------------------


def _locked_claim(claim: Claim) -> Claim:
    return Claim.objects.select_for_update().select_related("work").get(pk=claim.pk)


def dispute_deadline(claim: Claim) -> datetime | None:
    """Until when the respondent may dispute the owner's decision; past it the decision is final."""
    if claim.decided_at is None:
        return None
    return claim.decided_at + timedelta(days=int(settings.CLAIM_DISPUTE_DAYS))


@transaction.atomic
def claim_decide(*, claim: Claim, user: User, decision: str) -> Claim:
    """The work's manager chooses monetize, track or block, and may change their mind until the claim is
    disputed or its charge is held (royalties.claims moves the money of a monetize decision). A block takes
    effect at once (catalog.blocks); changing a block to another decision lifts it."""
    claim = _locked_claim(claim)
    if claim.work.created_by_id != user.pk:
        raise NotFound(code="claim_not_found")
    if decision not in ClaimDecision.values:
        raise ApiError(f"Decide one of {', '.join(ClaimDecision.values)}.", code="invalid_decision")
    if claim.status not in (ClaimStatus.OPEN, ClaimStatus.DECIDED):
        raise Conflict(f"This claim is {claim.status}; it can no longer be decided.", code="claim_closed")
    if claim.decision == decision:
        return claim  # the same decision again: nothing changes, nothing is charged twice
    if claim.charge in (ClaimCharge.HELD, ClaimCharge.PAID):
        raise Conflict(
            "The vendor was charged for this claim; the decision stands unless the operator dismisses it.",
            code="claim_charged",
        )
    was_blocking = claim.decision == ClaimDecision.BLOCK
    claim.status, claim.decision, claim.decided_at = ClaimStatus.DECIDED, decision, clock.now()
    claim.save(update_fields=["status", "decision", "decided_at", "updated_at"])
    ClaimEvent.objects.create(claim=claim, actor=user, kind=ClaimEvent.Kind.DECIDED, decision=decision)
    webhooks.claim_changed(claim, "decided")
    if decision == ClaimDecision.BLOCK:
        blocks.block_apply(claim)
    elif was_blocking:
        blocks.block_lift(claim)
    # Both parties' security logs show the decision: the one who made it and the one it concerns.
    for party, role in ((user, "decided"), (claim.respondent, "respondent")):
        security_event_record(
            user=party, kind=SecurityEvent.Kind.CLAIM_DECIDED, claim=claim.pk, decision=decision, role=role
        )
    return claim


@transaction.atomic
def claim_dispute(*, claim: Claim, user: User, statement: str) -> Claim:
    """The respondent contests the claim with a statement, before the dispute deadline of a decided
    claim; the operator then resolves it. Money at stake stays in escrow, and a block stays in force."""
    claim = _locked_claim(claim)
    if claim.respondent_id != user.pk:
        raise NotFound(code="claim_not_found")
    if not statement.strip():
        raise ApiError("A dispute needs a statement.", code="statement_required")
    if claim.status not in (ClaimStatus.OPEN, ClaimStatus.DECIDED):
        raise Conflict(f"This claim is {claim.status}; it cannot be disputed now.", code="claim_closed")
    deadline = dispute_deadline(claim)
    if deadline is not None and clock.now() > deadline:
        raise Conflict(
            f"The decision became final on {deadline:%Y-%m-%d}; it can no longer be disputed.",
            code="dispute_deadline_passed",
        )
    claim.status = ClaimStatus.DISPUTED
    claim.save(update_fields=["status", "updated_at"])
    ClaimEvent.objects.create(
        claim=claim, actor=user, kind=ClaimEvent.Kind.DISPUTED, statement=statement.strip()
    )
    webhooks.claim_changed(claim, "disputed")
    return claim


@transaction.atomic
def claim_resolve(*, claim: Claim, operator: User, resolution: str, statement: str = "") -> Claim:
    """The operator settles a disputed claim: the owner's decision stands (upheld), or is void
    (dismissed: a block it made is lifted). Either party may appeal once within CLAIM_DISPUTE_DAYS; a
    resolution after an appeal is final at once (royalties.claims moves the money when it is final)."""
    claim = _locked_claim(claim)
    if not operator.is_staff:
        raise NotFound(code="claim_not_found")
    if resolution not in ClaimResolution.values:
        raise ApiError(f"Resolve as one of {', '.join(ClaimResolution.values)}.", code="invalid_resolution")
    if claim.status != ClaimStatus.DISPUTED:
        raise Conflict("Only a disputed claim is resolved by the operator.", code="claim_not_disputed")
    blocking = blocks.block_stands(claim)
    claim.status, claim.resolution, claim.resolved_at = ClaimStatus.RESOLVED, resolution, clock.now()
    claim.save(update_fields=["status", "resolution", "resolved_at", "updated_at"])
    ClaimEvent.objects.create(
        claim=claim, actor=operator, kind=ClaimEvent.Kind.RESOLVED, decision=resolution, statement=statement
    )
    webhooks.claim_changed(claim, "resolved")
    if blocking and resolution == ClaimResolution.DISMISSED:
        blocks.block_lift(claim)
    elif not blocking and blocks.block_stands(claim):  # a dismissal overturned on appeal
        blocks.block_apply(claim)
    return claim


def claims_lapse() -> int:
    """Open claims their owner left undecided for CLAIM_DECIDE_DAYS resolve by default as dismissed (the
    owner may still appeal within CLAIM_DISPUTE_DAYS). Answers how many lapsed."""
    days = int(settings.CLAIM_DECIDE_DAYS)
    lapsed = 0
    for claim_id in Claim.objects.filter(
        status=ClaimStatus.OPEN, created_at__lt=clock.now() - timedelta(days=days)
    ).values_list("pk", flat=True):
        with transaction.atomic():
            claim = Claim.objects.select_for_update().get(pk=claim_id)
            if claim.status != ClaimStatus.OPEN:
                continue
            claim.status, claim.resolution, claim.resolved_at = (
                ClaimStatus.RESOLVED,
                ClaimResolution.DISMISSED,
                clock.now(),
            )
            claim.save(update_fields=["status", "resolution", "resolved_at", "updated_at"])
            ClaimEvent.objects.create(
                claim=claim,
                kind=ClaimEvent.Kind.RESOLVED,
                decision=ClaimResolution.DISMISSED,
                statement=f"Not decided within {days} days.",
            )
            webhooks.claim_changed(claim, "resolved")
            lapsed += 1
    return lapsed


def appeal_open_to(claim: Claim) -> int | None:
    """The id of the party who may appeal the claim's resolution now (the one it went against), if any."""
    if claim.status != ClaimStatus.RESOLVED or claim.appealed:
        return None
    days = timedelta(days=int(settings.CLAIM_DISPUTE_DAYS))
    if claim.resolved_at is not None and clock.now() > claim.resolved_at + days:
        return None
    return claim.respondent_id if claim.resolution == ClaimResolution.UPHELD else claim.work.created_by_id


@transaction.atomic
def claim_appeal(*, claim: Claim, user: User, statement: str) -> Claim:
    """The party a resolution went against (the respondent, or the claimed work's manager) appeals it,
    once, within CLAIM_DISPUTE_DAYS: the claim is disputed again for the operator to resolve for good."""
    claim = _locked_claim(claim)
    if user.pk not in (claim.respondent_id, claim.work.created_by_id):
        raise NotFound(code="claim_not_found")
    if not statement.strip():
        raise ApiError("An appeal needs a statement.", code="statement_required")
    if claim.status != ClaimStatus.RESOLVED:
        raise Conflict("Only a resolved claim is appealed.", code="claim_not_resolved")
    if claim.appealed:
        raise Conflict("This claim was appealed once already; its resolution is final.", code="appeal_used")
    appellant = appeal_open_to(claim)
    if appellant is None:
        raise Conflict(
            "The resolution is final; the time to appeal it has passed.", code="appeal_deadline_passed"
        )
    if user.pk != appellant:
        raise Conflict("Only the party the resolution went against may appeal it.", code="not_appellant")
    claim.status, claim.appealed = ClaimStatus.DISPUTED, True
    claim.save(update_fields=["status", "appealed", "updated_at"])
    ClaimEvent.objects.create(
        claim=claim, actor=user, kind=ClaimEvent.Kind.APPEALED, statement=statement.strip()
    )
    webhooks.claim_changed(claim, "appealed")
    return claim
