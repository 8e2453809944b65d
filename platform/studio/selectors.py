"""Reads for the studio: wallets, jobs, releases, and what a person may see of them."""

from __future__ import annotations

from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Value, When

from accounts.models import User
from catalog.models import Asset, Offer, OfferStatus, UseClass, WorkStatus
from common.problems import NotFound
from royalties.selectors import prepaid_available
from studio.models import (
    ApprovalStatus,
    GenerationJob,
    Purchase,
    Release,
    ReleaseApproval,
    ReleaseStatus,
    Wallet,
)


def wallet_of(*, user: User) -> Wallet | None:
    return Wallet.objects.select_related("organisation").filter(user=user).first()


def platform_key_ids() -> QuerySet[Wallet, int]:
    """The keys the platform holds on people's wallets for its own metered use: never shown to them."""
    return Wallet.objects.values_list("api_key_id", flat=True)


def wallet_available(*, user: User, currency: str) -> int:
    """What the person's wallet can still spend (balance less what unsettled charges hold)."""
    wallet = wallet_of(user=user)
    return 0 if wallet is None else prepaid_available(organisation=wallet.organisation, currency=currency)


def offers_for_derivatives() -> QuerySet[Offer]:
    """Current offers of published works that allow derivative works: what a fan can create from."""
    return (
        Offer.objects.filter(
            status=OfferStatus.CURRENT,
            work__status=WorkStatus.PUBLISHED,
            uses__use_class=UseClass.DERIVATIVE,
        )
        .select_related("work", "work__created_by")
        .prefetch_related("uses")
        .order_by("-created_at", "-id")
        .distinct()
    )


def jobs_of(*, user: User) -> QuerySet[GenerationJob]:
    return GenerationJob.objects.filter(fan=user).select_related(
        "grant__offer__work", "result_work", "result_asset__blob"
    )


def job_get_visible(*, user: User, job_id: int) -> GenerationJob:
    job = jobs_of(user=user).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No such generation job among yours.", code="job_not_found")
    return job


def releases_visible_to(*, user: User) -> QuerySet[Release]:
    """Releases on sale, the person's own whatever their state, and those waiting for (or decided by) the
    person's approval as the owner of a work they derive from."""
    approver = Exists(ReleaseApproval.objects.filter(release=OuterRef("pk"), owner=user))
    return (
        Release.objects.filter(Q(status=ReleaseStatus.ON_SALE) | Q(released_by=user) | approver)
        .select_related("work", "released_by")
        .prefetch_related("approvals__work")
    )


def approvals_of(*, user: User, pending_only: bool = False) -> QuerySet[ReleaseApproval]:
    """The release approvals the person decides (as owner of a voice or other parent), waiting first."""
    found = ReleaseApproval.objects.filter(owner=user).select_related(
        "release__work", "release__released_by", "work"
    )
    if pending_only:
        found = found.filter(status=ApprovalStatus.PENDING)
    waiting_first = Case(When(status=ApprovalStatus.PENDING, then=Value(0)), default=Value(1))
    return found.order_by(waiting_first, "-created_at", "-id")


def release_get_visible(*, user: User, release_id: int) -> Release:
    release = releases_visible_to(user=user).filter(pk=release_id).first()
    if release is None:
        raise NotFound("No such release.", code="release_not_found")
    return release


def releases_on_sale() -> QuerySet[Release]:
    """What anyone may see and buy, signed in or not."""
    return Release.objects.filter(status=ReleaseStatus.ON_SALE).select_related("work", "released_by")


def release_get_public(*, release_id: int) -> Release:
    release = releases_on_sale().filter(pk=release_id).first()
    if release is None:
        raise NotFound("No such release.", code="release_not_found")
    return release


def release_sales_count(*, release: Release) -> int:
    return Purchase.objects.filter(release=release).count()


def release_of_work(*, work_id: int) -> Release | None:
    return Release.objects.filter(work_id=work_id).first()


def purchases_of(*, user: User) -> QuerySet[Purchase]:
    return Purchase.objects.filter(buyer=user).select_related("release__work")


def sales_of(*, user: User) -> QuerySet[Purchase]:
    return Purchase.objects.filter(release__released_by=user).select_related("release__work", "buyer")


def may_download(*, user: User, release: Release) -> bool:
    if release.released_by_id == user.pk:
        return True
    if ReleaseApproval.objects.filter(release=release, owner=user).exists():
        return True  # an approver listens before deciding
    if release.status == ReleaseStatus.ON_SALE and release.price_minor == 0:
        return True
    return Purchase.objects.filter(release=release, buyer=user).exists()


def release_file(*, release: Release) -> Asset | None:
    return Asset.objects.filter(work_id=release.work_id).select_related("blob").order_by("-id").first()
