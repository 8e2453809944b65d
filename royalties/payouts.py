"""Payouts: the periodic payout run, the payout state machine, and the manual rail.

A payout moves a payee's payable balance for one currency and period out of the platform:

    created --submitted--> submitted --confirm--> confirmed --fail(returned)--> returned
       |                      |
       +------- fail ---------+--> failed / returned

Ledger (each transition that moves money is one journal transaction, keyed by the payout key):
- created:   payable:user:<id>:<cur>  -> in_transit:<rail>:<cur>      (`<key>:create`)
- confirmed: in_transit:<rail>:<cur>  -> clearing:<rail>:<cur>        (`<key>:confirm`)
- failed before confirmation: in_transit -> payable                    (`<key>:fail`)
- returned (a reversed transfer): clearing -> payable                  (`<key>:return`), confirmed
  first if the return is heard before the confirmation

Invariants:
- at most one payout per payee, currency and period (a unique constraint), created in the same database
  transaction as its ledger move;
- the payout `key` is what the rail gets (Stripe Idempotency-Key, the distributor's payout id), so a retry
  after any crash pays at most once;
- a transition is idempotent (repeating it returns the payout and moves nothing); an impossible one
  (confirm after fail) raises PayoutTransitionError;
- rails are called outside the database transaction that made the payout;
- a rail never changes a payout: it answers an `Outcome` per payout, and `outcome_apply` here makes the
  transition (the Stripe rail one outcome per call, the chain rail a stream of them, each applied before
  the rail goes on).
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet

from accounts.models import PayoutProfile, User
from accounts.payout_identity import stripe_enabled
from common import clock
from common import currency as currencies
from common.csvsafe import SafeCsvWriter
from common.problems import ApiError, Conflict, NotFound
from royalties import selectors
from royalties.ledger import Leg, account_ensure, clearing_account, transaction_post
from royalties.models import (
    AccountKind,
    LedgerAccount,
    Payout,
    PayoutRail,
    PayoutStatus,
    TransactionKind,
)
from royalties.rails import Outcome, OutcomeKind
from royalties.reversal import clawback_recover, holdbacks_release

logger = logging.getLogger(__name__)

# A Stripe idempotency key is remembered for 24 hours: a retry later than this could pay twice, so an
# older unanswered Stripe payout waits for the operator instead of being sent again.
STRIPE_RETRY_WINDOW = timedelta(hours=23)


class PayoutTransitionError(Conflict):
    default_code = "payout_transition_invalid"
    default_detail = "This payout cannot make that transition."


class PayoutNotFound(NotFound):
    default_code = "payout_not_found"
    default_detail = "No payout has this key."


# Periods, thresholds, keys -----------------------------------------------------------------------------


def period_of(moment: datetime, kind: str | None = None) -> str:
    """The payout period containing `moment` (UTC): `2026-11` (month), `2026-W47` (week), `2026-11-21`."""
    kind = kind or str(settings.PAYOUT_PERIOD)
    moment = moment.astimezone(UTC)
    if kind == "month":
        return moment.strftime("%Y-%m")
    if kind == "week":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    if kind == "day":
        return moment.strftime("%Y-%m-%d")
    raise ValueError(f"PAYOUT_PERIOD must be month, week or day, not {kind!r}")


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a period named by `period_of`, in UTC."""
    if "-W" in period:
        year, week = period.split("-W")
        start = datetime.fromisocalendar(int(year), int(week), 1).replace(tzinfo=UTC)
        return start, start + timedelta(days=7)
    parts = [int(part) for part in period.split("-")]
    if len(parts) == 3:
        start = datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        return start, start + timedelta(days=1)
    if len(parts) == 2:
        start = datetime(parts[0], parts[1], 1, tzinfo=UTC)
        end = datetime(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1, tzinfo=UTC)
        return start, end
    raise ValueError(f"not a payout period: {period!r}")


_PERIOD_EXAMPLES = {"month": "2026-11", "week": "2026-W47", "day": "2026-11-21"}


def period_check(period: str, *, any_kind: bool = False) -> str:
    """`period` if it names a payout period exactly as `period_of` spells it, in the configured
    PAYOUT_PERIOD kind (any kind with `any_kind`, for reading back older periods); otherwise a 400
    naming the expected form. Every input of a period goes through this: a period spelled another way
    (`2026-1`, `garbage`, a week while months are configured) would make a second payout for the same
    weeks."""
    configured = str(settings.PAYOUT_PERIOD)
    kinds = list(_PERIOD_EXAMPLES) if any_kind else [configured]
    text = period.strip() if isinstance(period, str) else ""
    for kind in kinds:
        try:
            start, _ = period_bounds(text)
        except (ValueError, OverflowError):
            break
        if period_of(start, kind) == text:
            return text
    expected = " or ".join(f"{kind}s like {_PERIOD_EXAMPLES[kind]}" for kind in kinds)
    raise ApiError(
        f"{period!r} is not a payout period: payout periods are {expected} (PAYOUT_PERIOD={configured}).",
        code="invalid_period",
    )


def previous_period(period: str) -> str:
    """The period before `period`, of the same kind."""
    start, _ = period_bounds(period)
    kind = "week" if "-W" in period else ("day" if period.count("-") == 2 else "month")
    return period_of(start - timedelta(seconds=1), kind)


def threshold_minor(currency: str) -> int:
    """The smallest payable paid out: PAYOUT_THRESHOLD_MINOR[currency], else 10 whole units."""
    configured = dict(settings.PAYOUT_THRESHOLD_MINOR)
    if currency in configured:
        return max(1, int(configured[currency]))
    return 10 * 10 ** currencies.MINOR_DIGITS.get(currency, 2)


def payout_key(*, user_id: int, currency: str, period: str) -> str:
    """The payout's id on every rail. Readable, and with a random part so that a database rebuilt against
    the same chain (or Stripe account) can never reuse the id of a payout that was already paid."""
    return f"payout:{period}:{user_id}:{currency}:{secrets.token_hex(6)}"


def in_transit_key(rail: str, currency: str) -> str:
    return f"in_transit:{rail}:{currency}"


def _in_transit(rail: str, currency: str) -> LedgerAccount:
    return account_ensure(
        key=in_transit_key(rail, currency), kind=AccountKind.IN_TRANSIT, currency=currency, rail=rail
    )


def _payable(user_id: int, currency: str) -> LedgerAccount:
    return account_ensure(
        key=selectors.payable_key(user_id, currency),
        kind=AccountKind.PAYABLE,
        currency=currency,
        user_id=user_id,
    )


# Choosing a rail ---------------------------------------------------------------------------------------


def chain_configured() -> bool:
    return bool(getattr(settings, "CHAIN_PAYOUTS_ENABLED", False))


def rail_for(profile: PayoutProfile | None, currency: str) -> tuple[str, str]:
    """(rail, destination) for a payee: Stripe only when Stripe is on and the account has payouts
    enabled; the chain only when a chain is configured, the wallet is verified and the currency is USD
    (the stablecoin's); otherwise manual."""
    if profile is None:
        return PayoutRail.MANUAL, ""
    if (
        profile.rail == PayoutRail.STRIPE
        and stripe_enabled()
        and profile.stripe_account_id
        and profile.stripe_payouts_enabled
    ):
        return PayoutRail.STRIPE, profile.stripe_account_id
    if profile.rail == PayoutRail.CHAIN and chain_configured() and profile.wallet_ready and currency == "USD":
        return PayoutRail.CHAIN, profile.wallet_address
    return PayoutRail.MANUAL, ""


# Creating payouts --------------------------------------------------------------------------------------


def payout_create(*, user: User, currency: str, period: str) -> Payout | None:
    """Make this payee's payout for the period from their whole available payable, if it reaches the
    threshold and none exists yet. The Payout row and the payable -> in_transit move are one database
    transaction: both or neither. Answers None when there is nothing to do."""
    period = period_check(period)
    now = clock.now()
    key = payout_key(user_id=user.pk, currency=currency, period=period)
    if Payout.objects.filter(user=user, currency=currency, period=period).exists():
        return None
    profile = PayoutProfile.objects.filter(user=user).first()
    rail, destination = rail_for(profile, currency)
    try:
        with transaction.atomic():
            # What the payee owes (a clawback of earnings reversed after they were paid) comes off first.
            clawback_recover(user_id=user.pk, currency=currency)
            payable = _payable(user.pk, currency)
            # Read inside the transaction; the conditional UPDATE in transaction_post refuses to overdraw if
            # another writer took money in between (then this payout is not made and nothing changes).
            balance, held = LedgerAccount.objects.filter(pk=payable.pk).values_list(
                "balance_minor", "held_minor"
            )[0]
            available = balance - held
            if available < threshold_minor(currency):
                return None
            payout = Payout.objects.create(
                key=key,
                user=user,
                currency=currency,
                period=period,
                amount_minor=available,
                rail=rail,
                destination=destination,
                created_at=now,
                updated_at=now,
            )
            transaction_post(
                kind=TransactionKind.PAYOUT,
                key=f"{key}:create",
                memo=f"Payout {key} of {currencies.format_minor(available, currency)} via {rail}",
                legs=[Leg(payable, -available), Leg(_in_transit(rail, currency), available)],
            )
            return payout
    except IntegrityError:  # a concurrent run made it a moment ago
        return None


def payees_due(*, period: str) -> list[tuple[int, str]]:
    """(user id, currency) of every payable account whose available balance, less any clawback the payee
    owes, is at or above its threshold, with no payout this period. A payee whose email address is not
    confirmed is not paid yet (on any rail): an address squatted by someone else earns them nothing."""
    period = period_check(period)
    rows = LedgerAccount.objects.filter(
        kind=AccountKind.PAYABLE, user__isnull=False, user__email_verified_at__isnull=False
    ).values_list("user_id", "currency", "balance_minor", "held_minor")
    owed = {
        (user_id, currency): -balance
        for user_id, currency, balance in LedgerAccount.objects.filter(
            kind=AccountKind.CLAWBACK, balance_minor__lt=0
        ).values_list("user_id", "currency", "balance_minor")
    }
    paid = set(Payout.objects.filter(period=period).values_list("user_id", "currency"))
    due = []
    for user_id, currency, balance, held in rows.order_by("user_id", "currency"):
        available = balance - held - owed.get((user_id, currency), 0)
        if available >= threshold_minor(currency) and (user_id, currency) not in paid:
            due.append((int(user_id), str(currency)))
    return due


@dataclass
class PayoutRunResult:
    period: str
    created: list[Payout] = field(default_factory=list)
    submitted: int = 0
    confirmed: int = 0
    failed: int = 0
    waiting: int = 0  # retryable errors: sent again by the next run
    manual: int = 0


def payout_run(period: str | None = None) -> PayoutRunResult:
    """The periodic payout job: make the period's payouts, then send every unsent one on its rail, then
    confirm chain payouts that are deep enough (and resend dropped or reverted chain transactions).
    Holdbacks whose dispute window is over are released first; a payee's clawback is recovered from
    their payable before their payout is made.

    Safe to run again at any moment, including after a crash at any point of a previous run: payouts
    already made are not made again, and each rail is asked with the payout key, so a payout that was
    sent is never paid a second time.
    """
    period = period_check(period) if period is not None else period_of(clock.now())
    result = PayoutRunResult(period=period)
    holdbacks_release()  # earnings whose dispute window is over can be paid now
    due = payees_due(period=period)
    users = {u.pk: u for u in User.objects.filter(pk__in={uid for uid, _ in due})}
    for user_id, currency in due:
        payout = payout_create(user=users[user_id], currency=currency, period=period)
        if payout is not None:
            result.created.append(payout)
            if payout.rail == PayoutRail.MANUAL:
                result.manual += 1
    _send_unsent(result)
    if (
        chain_configured()
        and Payout.objects.filter(rail=PayoutRail.CHAIN, status=PayoutStatus.SUBMITTED).exists()
    ):
        confirmed = chain_confirm_pending()
        result.confirmed += confirmed.confirmed
        result.failed += confirmed.failed
    return result


def _send_unsent(result: PayoutRunResult) -> None:
    """Send every created Stripe and chain payout (this run's and any an earlier run left unsent)."""
    stripe_due = list(
        Payout.objects.filter(rail=PayoutRail.STRIPE, status=PayoutStatus.CREATED).order_by("id")
    )
    for payout in stripe_due:
        outcome = stripe_send(payout=payout)
        if outcome == PayoutStatus.SUBMITTED:
            result.submitted += 1
        elif outcome in (PayoutStatus.FAILED, PayoutStatus.RETURNED):
            result.failed += 1
        else:
            result.waiting += 1
    chain_due = list(Payout.objects.filter(rail=PayoutRail.CHAIN, status=PayoutStatus.CREATED).order_by("id"))
    if chain_due and chain_configured():
        sent = chain_send(chain_due)
        result.submitted += sent.submitted
        result.failed += sent.failed
        result.waiting += sent.waiting


def _note_attempt(payout: Payout) -> None:
    """Count an attempt before calling the rail, committed, so a crash during the call still shows."""
    Payout.objects.filter(pk=payout.pk).update(attempts=F("attempts") + 1, updated_at=clock.now())
    payout.attempts += 1


def note_error(payout: Payout, message: str) -> None:
    _note_error(payout.key, message)
    payout.last_error = message[:500]


def _note_error(key: str, message: str) -> None:
    Payout.objects.filter(key=key).update(last_error=message[:500], updated_at=clock.now())


def stripe_send(*, payout: Payout) -> str:
    """Send one Stripe payout (a transfer with the payout key as Idempotency-Key). Answers the payout's
    status after the attempt; `created` means it waits for the next run (a retryable error)."""
    from royalties.rails import stripe as stripe_rail  # written beside us; imported when needed

    if payout.attempts and clock.now() - payout.created_at > STRIPE_RETRY_WINDOW:
        note_error(
            payout,
            "Not sent again: Stripe forgets idempotency keys after 24 hours. Check the connected account "
            "for a transfer with this payout's key, then mark it confirmed or failed.",
        )
        return PayoutStatus.CREATED
    _note_attempt(payout)
    applied = outcome_apply(stripe_rail.payout_send(payout))
    return PayoutStatus.CREATED if applied is None else applied.status


@dataclass
class ChainSendResult:
    submitted: int = 0
    failed: int = 0
    waiting: int = 0


def chain_send(payouts: Iterable[Payout]) -> ChainSendResult:
    """Send created chain payouts on the chain rail (batched), applying each outcome as it comes."""
    from royalties.rails import chain as chain_rail  # web3 and the contracts: imported when needed

    result = ChainSendResult()
    for outcome in chain_rail.payouts_send(list(payouts)):
        outcome_apply(outcome)
        if outcome.kind == OutcomeKind.SUBMITTED:
            result.submitted += 1
        elif outcome.kind == OutcomeKind.FAILED:
            result.failed += 1
        else:
            result.waiting += 1
    return result


@dataclass
class ChainConfirmResult:
    confirmed: int = 0
    failed: int = 0
    resent: int = 0
    waiting: int = 0


def chain_confirm_pending() -> ChainConfirmResult:
    """Confirm submitted chain payouts whose payment is CHAIN_CONFIRMATIONS blocks deep, and send again
    those whose transaction reverted or was dropped (same payout ids: never a second payment). Each payout
    is counted by the last outcome the rail answered for it."""
    from royalties.rails import chain as chain_rail  # web3 and the contracts: imported when needed

    last: dict[str, OutcomeKind] = {}
    for outcome in chain_rail.payouts_check():
        outcome_apply(outcome)
        last[outcome.key] = outcome.kind
    kinds = list(last.values())
    return ChainConfirmResult(
        confirmed=kinds.count(OutcomeKind.CONFIRMED),
        failed=kinds.count(OutcomeKind.FAILED),
        resent=kinds.count(OutcomeKind.RESUBMITTED),
        waiting=kinds.count(OutcomeKind.WAITING),
    )


def outcome_apply(outcome: Outcome) -> Payout | None:
    """Make the transition a rail's outcome calls for: the one place a rail's answer changes a payout.
    Answers the payout, or None when it only waits (a retryable error is noted on it)."""
    if outcome.kind == OutcomeKind.SUBMITTED:
        return payout_submitted(key=outcome.key, external_id=outcome.external_id)
    if outcome.kind == OutcomeKind.RESUBMITTED:
        return chain_resubmitted(key=outcome.key, external_id=outcome.external_id)
    if outcome.kind == OutcomeKind.CONFIRMED:
        return payout_confirm(key=outcome.key, external_id=outcome.external_id)
    if outcome.kind == OutcomeKind.FAILED:
        return payout_fail(key=outcome.key, reason=outcome.note)
    if outcome.note:
        _note_error(outcome.key, outcome.note)
    return None


# Transitions -------------------------------------------------------------------------------------------


def _locked(key: str) -> Payout:
    payout = Payout.objects.select_for_update().filter(key=key).first()
    if payout is None:
        raise PayoutNotFound(f"No payout has the key {key!r}.", extra={"key": key})
    return payout


def _refuse(payout: Payout, action: str) -> PayoutTransitionError:
    return PayoutTransitionError(
        f"Payout {payout.key} is {payout.status}; it cannot be {action}.",
        extra={"key": payout.key, "status": payout.status},
    )


@transaction.atomic
def payout_submitted(*, key: str, external_id: str) -> Payout:
    """The rail accepted the payout (a Stripe transfer id, a transaction hash): created -> submitted.

    No money moves (it is already in transit). Repeating it, or hearing it after the confirmation, is a
    no-op; after a failure, or with another external id, it is refused."""
    payout = _locked(key)
    if payout.status == PayoutStatus.CREATED:
        now = clock.now()
        payout.status = PayoutStatus.SUBMITTED
        payout.external_id = external_id
        payout.submitted_at = now
        payout.updated_at = now
        payout.last_error = ""
        payout.save(update_fields=["status", "external_id", "submitted_at", "updated_at", "last_error"])
        return payout
    if payout.status in (PayoutStatus.SUBMITTED, PayoutStatus.CONFIRMED):
        if payout.external_id and external_id != payout.external_id:
            raise PayoutTransitionError(
                f"Payout {payout.key} was submitted as {payout.external_id}, not {external_id}.",
                extra={"key": payout.key, "external_id": payout.external_id},
            )
        return payout
    raise _refuse(payout, "submitted")


def chain_resubmitted(*, key: str, external_id: str) -> Payout:
    """The chain rail sent a submitted payout again in a new transaction (the first was dropped or
    reverted): only the external id changes. The payout id on chain is the same, so it pays once."""
    with transaction.atomic():
        payout = _locked(key)
        if payout.status != PayoutStatus.SUBMITTED or payout.rail != PayoutRail.CHAIN:
            raise _refuse(payout, "sent again")
        payout.external_id = external_id
        payout.updated_at = clock.now()
        payout.save(update_fields=["external_id", "updated_at"])
        return payout


@transaction.atomic
def payout_confirm(*, key: str, external_id: str) -> Payout:
    """The rail paid: created or submitted -> confirmed; in_transit -> clearing:<rail>.

    Confirming again (with the same or no recorded external id) is a no-op; after a failure, or with
    another external id than the recorded one, it is refused."""
    payout = _locked(key)
    if payout.status == PayoutStatus.CONFIRMED:
        if external_id and payout.external_id and external_id != payout.external_id:
            raise PayoutTransitionError(
                f"Payout {payout.key} was confirmed as {payout.external_id}, not {external_id}.",
                extra={"key": payout.key, "external_id": payout.external_id},
            )
        return payout
    if payout.status not in (PayoutStatus.CREATED, PayoutStatus.SUBMITTED):
        raise _refuse(payout, "confirmed")
    transaction_post(
        kind=TransactionKind.PAYOUT,
        key=f"{payout.key}:confirm",
        memo=f"Payout {payout.key} confirmed by {payout.rail} ({external_id})",
        legs=[
            Leg(_in_transit(payout.rail, payout.currency), -payout.amount_minor),
            Leg(clearing_account(rail=payout.rail, currency=payout.currency), payout.amount_minor),
        ],
    )
    now = clock.now()
    payout.status = PayoutStatus.CONFIRMED
    payout.external_id = external_id or payout.external_id
    payout.submitted_at = payout.submitted_at or now
    payout.settled_at = now
    payout.updated_at = now
    payout.last_error = ""
    payout.save(
        update_fields=["status", "external_id", "submitted_at", "settled_at", "updated_at", "last_error"]
    )
    return payout


@transaction.atomic
def payout_fail(*, key: str, reason: str, returned: bool = False) -> Payout:
    """The rail did not pay (failed), or gave the money back (returned): the money goes back to the
    payee's payable, to be paid in a later period.

    Failed before confirmation: in_transit -> payable. Returned (a reversed transfer): clearing:<rail> ->
    payable; only a payment can be given back, so a payout returned before its confirmation was heard
    is confirmed first, and the ledger is the same whichever the rail's messages arrived in. A confirmed
    payout can only be returned. Failing a failed or returned payout again is a no-op."""
    payout = _locked(key)
    if payout.status in (PayoutStatus.FAILED, PayoutStatus.RETURNED):
        return payout
    if payout.status == PayoutStatus.CONFIRMED and not returned:
        raise _refuse(payout, "failed (it was paid; a reversal is a return)")
    if returned and payout.status != PayoutStatus.CONFIRMED:
        payout = payout_confirm(key=payout.key, external_id=payout.external_id)
    payable = _payable(payout.user_id, payout.currency)
    if payout.status == PayoutStatus.CONFIRMED:
        source = clearing_account(rail=payout.rail, currency=payout.currency)
        suffix = "return"
    else:
        source = _in_transit(payout.rail, payout.currency)
        suffix = "fail"
    transaction_post(
        kind=TransactionKind.PAYOUT,
        key=f"{payout.key}:{suffix}",
        memo=f"Payout {payout.key} {'returned' if returned else 'failed'}: {reason}",
        legs=[Leg(source, -payout.amount_minor), Leg(payable, payout.amount_minor)],
    )
    now = clock.now()
    payout.status = PayoutStatus.RETURNED if returned else PayoutStatus.FAILED
    payout.failure_reason = reason[:500]
    payout.settled_at = now
    payout.updated_at = now
    payout.save(update_fields=["status", "failure_reason", "settled_at", "updated_at"])
    return payout


# Manual rail -------------------------------------------------------------------------------------------


def manual_waiting() -> QuerySet[Payout]:
    """Payouts the operator pays by hand: manual, still created, oldest first."""
    return (
        Payout.objects.filter(rail=PayoutRail.MANUAL, status=PayoutStatus.CREATED)
        .select_related("user")
        .order_by("created_at", "id")
    )


MANUAL_CSV_COLUMNS = [
    "key",
    "payee_id",
    "payee_username",
    "payee_email",
    "payee_name",
    "currency",
    "amount_minor",
    "amount",
    "period",
    "created_at",
]


def payouts_csv(payouts: Iterable[Payout]) -> str:
    """The operator's export: one row per payout, amounts exact in minor units and as text."""
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer, lineterminator="\n")
    writer.writerow(MANUAL_CSV_COLUMNS)
    for payout in payouts:
        user = payout.user
        writer.writerow(
            [
                payout.key,
                user.pk,
                user.username,
                user.email,
                user.public_name,
                payout.currency,
                payout.amount_minor,
                currencies.format_minor(payout.amount_minor, payout.currency),
                payout.period,
                payout.created_at.astimezone(UTC).isoformat(),
            ]
        )
    return buffer.getvalue()


def manual_mark_paid(*, payout: Payout, reference: str) -> Payout:
    """The operator paid a manual payout by hand (bank transfer reference)."""
    if payout.rail != PayoutRail.MANUAL:
        raise _refuse(payout, "marked paid by hand (it is on another rail)")
    if not reference.strip():
        raise PayoutTransitionError(
            "Give the payment's reference (a bank reference).", code="missing_reference"
        )
    return payout_confirm(key=payout.key, external_id=reference.strip()[:120])


def manual_mark_failed(*, payout: Payout, reason: str) -> Payout:
    if payout.rail != PayoutRail.MANUAL:
        raise _refuse(payout, "marked failed by hand (it is on another rail)")
    return payout_fail(key=payout.key, reason=reason.strip() or "marked failed by the operator")


# Reads -------------------------------------------------------------------------------------------------


def payouts_of(*, user: User) -> QuerySet[Payout]:
    return Payout.objects.filter(user=user).order_by("-created_at", "-id")


def payouts_all() -> QuerySet[Payout]:
    return Payout.objects.select_related("user").order_by("-created_at", "-id")
