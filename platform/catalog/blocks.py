"""What a block decision on a claim does, and what lifting it undoes.

A block on media uploaded to a work takes that work out of the catalogue and out of sale: its status
becomes BLOCKED (hidden from listings, refused by access, licences, releases and new terms) and every
active licence on it is suspended. A block on a vendor's output suspends that vendor's licences on the
claimed work and refuses it new ones. Lifting the last block standing (the owner decides otherwise, or the
operator dismisses the claim) restores the work's status and the suspended licences that no other block
holds.

A block on media a partner platform hosts is the partner's to carry out: its webhook tells it.

A block stands while the claim is decided, disputed, or upheld: a dispute does not put the copy back up.
A dismissed claim's block does not stand (an appeal puts it back only if the operator upholds it).
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from catalog.models import (
    Claim,
    ClaimDecision,
    ClaimEvent,
    ClaimResolution,
    ClaimStatus,
    Grant,
    GrantStatus,
    Work,
    WorkStatus,
)

STANDING = [ClaimStatus.DECIDED, ClaimStatus.DISPUTED, ClaimStatus.RESOLVED]


def standing_blocks() -> QuerySet[Claim]:
    return Claim.objects.filter(decision=ClaimDecision.BLOCK, status__in=STANDING).exclude(
        resolution=ClaimResolution.DISMISSED
    )


def block_stands(claim: Claim) -> bool:
    return standing_blocks().filter(pk=claim.pk).exists()


def organisation_blocked(*, organisation_id: int | None, work_id: int) -> bool:
    """Whether a standing block on one of the organisation's outputs refuses it this work."""
    if organisation_id is None:
        return False
    return standing_blocks().filter(work_id=work_id, subject_output__organisation_id=organisation_id).exists()


def _grants_on(work_id: int) -> QuerySet[Grant]:
    return Grant.objects.filter(offer__work_id=work_id)


def _blocked_work(claim: Claim) -> Work | None:
    return claim.subject_asset.work if claim.subject_asset_id is not None else None  # type: ignore[union-attr]


def block_apply(claim: Claim) -> None:
    """Put the claim's block in force. Call inside the claim's transaction, with the claim locked."""
    work = _blocked_work(claim)
    if work is not None:
        work = Work.objects.select_for_update().get(pk=work.pk)
        if work.status != WorkStatus.BLOCKED:
            claim.blocked_status = work.status
            work.status = WorkStatus.BLOCKED
            work.save(update_fields=["status", "updated_at"])
        else:  # another block stands: remember what the first one will restore
            claim.blocked_status = (
                standing_blocks()
                .filter(subject_asset__work=work)
                .exclude(pk=claim.pk)
                .exclude(blocked_status="")
                .values_list("blocked_status", flat=True)
                .first()
                or WorkStatus.PUBLISHED
            )
        claim.save(update_fields=["blocked_status", "updated_at"])
        _grants_on(work.pk).filter(status=GrantStatus.ACTIVE).update(status=GrantStatus.SUSPENDED)
    elif claim.subject_output is not None:
        _grants_on(claim.work_id).filter(
            organisation_id=claim.subject_output.organisation_id, status=GrantStatus.ACTIVE
        ).update(status=GrantStatus.SUSPENDED)
    # Media a partner hosts is taken down by the partner, told by its webhook (catalog.webhooks).
    ClaimEvent.objects.create(claim=claim, kind=ClaimEvent.Kind.BLOCKED)


def block_lift(claim: Claim) -> None:
    """Undo the claim's block, once it no longer stands (call after changing its decision or status),
    as far as no other standing block holds the same work or licences."""
    work = _blocked_work(claim)
    if work is not None:
        work = Work.objects.select_for_update().get(pk=work.pk)
        others = standing_blocks().filter(subject_asset__work=work).exclude(pk=claim.pk)
        if work.status == WorkStatus.BLOCKED and not others.exists():
            work.status = claim.blocked_status or WorkStatus.PUBLISHED
            work.save(update_fields=["status", "updated_at"])
            _restore_grants(work.pk, Q())
    elif claim.subject_output is not None:
        organisation_id = claim.subject_output.organisation_id
        if Work.objects.filter(pk=claim.work_id, status=WorkStatus.BLOCKED).exists():
            pass  # the claimed work is itself blocked: its licences stay suspended
        elif not organisation_blocked(organisation_id=organisation_id, work_id=claim.work_id):
            _restore_grants(claim.work_id, Q(organisation_id=organisation_id))
    ClaimEvent.objects.create(claim=claim, kind=ClaimEvent.Kind.UNBLOCKED)


def _restore_grants(work_id: int, scope: Q) -> None:
    """Suspended licences on the work come back, except those of organisations an output block refuses."""
    refused = (
        standing_blocks()
        .filter(work_id=work_id, subject_output__isnull=False)
        .values("subject_output__organisation_id")
    )
    _grants_on(work_id).filter(scope, status=GrantStatus.SUSPENDED).exclude(
        organisation_id__in=refused
    ).update(status=GrantStatus.ACTIVE)
