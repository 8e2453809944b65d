"""Consent: a creator's choice that a use of a work is no longer on offer, and the do-not-train flag.

Every route to a work's content asks `use_refusal` before it grants a use (the access API, the content
URL paid by x402 or a licence token, the licence server's tokens), and the published reservations (RSL,
robots.txt, TDMRep, aipref) read `refused_uses`, so a change shows everywhere on the next request.

The do-not-train flag itself (`TrainingOptOut`) belongs to the datasets app, which sits above the catalog;
it is read here by model name, not imported, so the catalog does not come to depend on datasets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet

from accounts.models import User
from catalog.models import (
    ConsentWithdrawal,
    Grant,
    GrantsEnd,
    GrantStatus,
    LicenseeNotice,
    OfferUse,
    UseClass,
    Work,
)
from common import clock
from common.problems import ApiError, Conflict, Forbidden, NotFound

TRAINING = UseClass.AI_TRAIN.value


class ConsentRefused(Forbidden):
    """The creator does not consent to this use (do-not-train, or consent withdrawn)."""


@dataclass(frozen=True)
class Refusal:
    code: str
    detail: str

    def error(self) -> ConsentRefused:
        return ConsentRefused(self.detail, code=self.code)


def _opt_outs() -> QuerySet[Any]:
    return apps.get_model("datasets", "TrainingOptOut").objects.all()


_WITHDRAWN_SQL = (
    f"SELECT grants_end FROM {ConsentWithdrawal._meta.db_table} "  # noqa: S608 (table names are constants)
    "WHERE work_id = %s AND use_class = %s AND restored_at IS NULL"
)


def _opted_out_sql() -> str:
    opt_outs = apps.get_model("datasets", "TrainingOptOut")._meta.db_table
    works = Work._meta.db_table
    return (
        f"SELECT 1 FROM {opt_outs} WHERE work_id = %s UNION ALL "  # noqa: S608
        f"SELECT 1 FROM {opt_outs} o JOIN {works} w ON o.user_id = w.created_by_id WHERE w.id = %s"
    )


def paid_term_running(*, grant_fee_minor: int, grant_expires_at: datetime | None) -> bool:
    """Whether a licence was paid for (a licence fee) and its term has not ended."""
    return grant_fee_minor > 0 and grant_expires_at is not None and grant_expires_at > clock.now()


def consented_sql() -> str:
    """A SELECT that yields one row when the creator consents to the use (the same rule as use_refusal),
    none otherwise: for the access charge that runs as one statement. Parameters: consented_params."""
    opt_outs = apps.get_model("datasets", "TrainingOptOut")._meta.db_table
    works, withdrawals = Work._meta.db_table, ConsentWithdrawal._meta.db_table
    return (
        f"SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {withdrawals} WHERE work_id = %s AND use_class = %s "  # noqa: S608
        f"AND restored_at IS NULL AND NOT (grants_end = '{GrantsEnd.TERM_END.value}' AND %s)) "
        f"AND NOT (%s AND (EXISTS (SELECT 1 FROM {opt_outs} WHERE work_id = %s) OR EXISTS "
        f"(SELECT 1 FROM {opt_outs} o JOIN {works} w ON o.user_id = w.created_by_id WHERE w.id = %s)))"
    )


def consented_params(*, work_id: int, use_class: str, paid_term: bool) -> list[object]:
    return [work_id, use_class, paid_term, use_class == TRAINING, work_id, work_id]


def use_refusal(
    *,
    work_id: int,
    use_class: str,
    grant_fee_minor: int = 0,
    grant_expires_at: datetime | None = None,
) -> Refusal | None:
    """Why the creator refuses this use of the work now, or None when they consent.

    A licence that was paid for (a licence fee) and whose term has not ended keeps a withdrawn use until
    the end of that term, unless the creator ended such licences at once. The do-not-train flag refuses
    training whatever was paid: it is the creator's standing instruction."""
    with connection.cursor() as cursor:
        if use_class == TRAINING:
            cursor.execute(_opted_out_sql(), [work_id, work_id])
            if cursor.fetchone() is not None:
                return Refusal(
                    "do_not_train",
                    "The creator does not allow this work to be used to train AI (do-not-train).",
                )
        cursor.execute(_WITHDRAWN_SQL, [work_id, use_class])
        found = cursor.fetchone()
    if found is None:
        return None
    paid_term = paid_term_running(grant_fee_minor=grant_fee_minor, grant_expires_at=grant_expires_at)
    if found[0] == GrantsEnd.TERM_END and paid_term:
        return None
    return Refusal("consent_withdrawn", f"The creator has withdrawn consent for '{use_class}' of this work.")


def withdrawn_among(work_ids: Iterable[int], use_class: str) -> set[int]:
    """Which of these works have the use withdrawn now (one query; use_refusal then says whether a paid
    term keeps it for a given licence)."""
    return set(
        ConsentWithdrawal.objects.filter(
            work_id__in=list(work_ids), use_class=use_class, restored_at__isnull=True
        ).values_list("work_id", flat=True)
    )


def refused_uses(work_ids: Iterable[int]) -> dict[int, set[str]]:
    """Per work, the uses its creator refuses now (withdrawn, or ai-train under do-not-train)."""
    ids = list(work_ids)
    refused: dict[int, set[str]] = defaultdict(set)
    withdrawn = ConsentWithdrawal.objects.filter(work_id__in=ids, restored_at__isnull=True)
    for work_id, use_class in withdrawn.values_list("work_id", "use_class"):
        refused[work_id].add(use_class)
    owners = dict(Work.objects.filter(pk__in=ids).values_list("pk", "created_by_id"))
    flags = _opt_outs().filter(Q(work_id__in=ids) | Q(user_id__in=set(owners.values())))
    flagged_users = set()
    for work_id, user_id in flags.values_list("work_id", "user_id"):
        if work_id is not None:
            refused[work_id].add(TRAINING)
        if user_id is not None:
            flagged_users.add(user_id)
    for work_id, owner_id in owners.items():
        if owner_id in flagged_users:
            refused[work_id].add(TRAINING)
    return dict(refused)


def _open_grants_allowing(work: Work, use_class: str) -> QuerySet[Grant]:
    offers_allowing = OfferUse.objects.filter(use_class=use_class).values("offer_id")
    return Grant.objects.filter(
        offer__work=work, status=GrantStatus.ACTIVE, offer_id__in=offers_allowing
    ).select_related("offer")


@transaction.atomic
def consent_withdraw(
    *, work: Work, user: User, use_class: str, grants_end: str = GrantsEnd.TERM_END, reason: str = ""
) -> ConsentWithdrawal:
    """Withdraw consent for one use of a work the user manages: no new access for it from now on;
    every active licence covering it is told (a notice) when it loses the use."""
    if work.created_by_id != user.pk:
        raise NotFound("No such work.", code="work_not_found")
    if use_class not in UseClass.values:
        raise ApiError(f"Unknown use class {use_class!r}.", code="invalid_use_class")
    if grants_end not in GrantsEnd.values:
        raise ApiError(f"grants_end must be one of {', '.join(GrantsEnd.values)}.", code="invalid_grants_end")
    now = clock.now()
    try:
        with transaction.atomic():
            withdrawal = ConsentWithdrawal.objects.create(
                work=work,
                use_class=use_class,
                grants_end=grants_end,
                reason=reason[:300],
                withdrawn_by=user,
                created_at=now,
            )
    except IntegrityError:
        raise Conflict(
            f"Consent for '{use_class}' is already withdrawn.", code="consent_already_withdrawn"
        ) from None
    notices = []
    for grant in _open_grants_allowing(work, use_class):
        expires_at = grant.offer.expires_at
        keeps_term = (
            grants_end == GrantsEnd.TERM_END
            and grant.fee_minor > 0
            and expires_at is not None
            and expires_at > now
        )
        effective_at = expires_at if keeps_term and expires_at is not None else now
        notices.append(
            LicenseeNotice(
                grant=grant,
                kind=LicenseeNotice.Kind.CONSENT_WITHDRAWN,
                use_class=use_class,
                message=(
                    f"The creator of work #{work.pk} withdrew consent for '{use_class}'; your licence "
                    f"covers it until {effective_at.isoformat()}."
                ),
                effective_at=effective_at,
                created_at=now,
            )
        )
    LicenseeNotice.objects.bulk_create(notices)
    return withdrawal


@transaction.atomic
def consent_restore(*, work: Work, user: User, use_class: str) -> ConsentWithdrawal:
    if work.created_by_id != user.pk:
        raise NotFound("No such work.", code="work_not_found")
    withdrawal = (
        ConsentWithdrawal.objects.select_for_update()
        .filter(work=work, use_class=use_class, restored_at__isnull=True)
        .first()
    )
    if withdrawal is None:
        raise NotFound(f"Consent for '{use_class}' is not withdrawn.", code="consent_not_withdrawn")
    withdrawal.restored_at = clock.now()
    withdrawal.save(update_fields=["restored_at"])
    return withdrawal


@transaction.atomic
def grant_revoke(*, grant: Grant, user: User, reason: str = "") -> Grant:
    """The work's manager ends a licence at once (the licensee is told by a notice). Accesses already
    granted under it stay on record; no new one is granted."""
    grant = Grant.objects.select_for_update().select_related("offer__work").get(pk=grant.pk)
    if grant.offer.work.created_by_id != user.pk:
        raise NotFound(code="grant_not_found")
    if grant.status != GrantStatus.ACTIVE:
        raise Conflict(f"This grant is {grant.status}, not active.", code="grant_not_active")
    now = clock.now()
    grant.status = GrantStatus.REVOKED
    grant.decided_at = now
    grant.save(update_fields=["status", "decided_at"])
    LicenseeNotice.objects.create(
        grant=grant,
        kind=LicenseeNotice.Kind.GRANT_REVOKED,
        message=f"The owner revoked your licence #{grant.pk}" + (f": {reason[:300]}" if reason else "."),
        effective_at=now,
        created_at=now,
    )
    return grant


def notices_of(*, user: User) -> QuerySet[LicenseeNotice]:
    """The notices on the licences a user (or their organisations) holds."""
    return LicenseeNotice.objects.filter(
        Q(grant__licensee=user) | Q(grant__organisation__membership__user=user)
    ).distinct()
