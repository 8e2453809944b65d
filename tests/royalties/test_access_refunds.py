"""An access taken back because what it paid for was never delivered (access.services.access_refund, the
ledger's part in royalties.reversal.access_refund): its price goes back to the balance that paid it once,
settled first and taken back from the payees (their clawback if already paid out), with the grant's quota
use and the month's spend; its key is never replayed; a claim's hold makes it wait, changing nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from access.models import AccessEvent, AccessRefund
from access.services import AccessRequest, access_refund, access_request, spend_cap_set
from accounts.models import ApiKey, Organisation
from catalog.models import Grant, Work, WorkStatus
from common.money import Money
from common.problems import Conflict
from royalties import payouts
from royalties.funding import prepaid_fund
from royalties.ledger import ledger_check
from royalties.models import JournalTransaction
from royalties.reversal import RefundNotYet
from royalties.selectors import prepaid_available, prepaid_key
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import balance, payable

pytestmark = pytest.mark.django_db


def _market(price_minor: int, funded_minor: int, **terms):
    creator, vendor = factories.creator(username="mira"), factories.vendor(username="acme")
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-train": price_minor}, **terms)
    organisation = vendor.organisations.get()
    factories.key(vendor, "access")
    prepaid_fund(organisation=organisation, amount=Money(funded_minor, "USD"), external_ref="top-up")
    return creator, work, organisation, ApiKey.objects.get(user=vendor)


def _access(organisation: Organisation, api_key: ApiKey, work: Work, key: str):
    request = AccessRequest(work_id=work.pk, use_class="ai-train", territory="US")
    return access_request(organisation=organisation, api_key=api_key, idempotency_key=key, request=request)


def _available(organisation: Organisation) -> int:
    return prepaid_available(organisation=organisation, currency="USD")


def _refunds() -> int:
    return JournalTransaction.objects.filter(key__startswith="refund:access:").count()


def test_an_unsettled_access_is_refunded_once_with_its_quota_and_spend_and_its_key_never_replayed() -> None:
    creator, work, organisation, api_key = _market(price_minor=100, funded_minor=1_000, quota=1)
    spend_cap_set(organisation=organisation, api_key=None, currency_code="USD", cap_minor=500)
    _access(organisation, api_key, work, "job-1")
    grant = Grant.objects.get(organisation=organisation)
    assert (_available(organisation), grant.accesses_used) == (900, 1)

    refund = access_refund(organisation=organisation, idempotency_key="job-1", reason="not delivered")
    again = access_refund(organisation=organisation, idempotency_key="job-1", reason="not delivered")

    assert refund is not None and again is not None and again.pk == refund.pk
    assert refund.journal is not None and refund.journal.key.startswith("refund:access:")
    assert (_refunds(), AccessRefund.objects.count()) == (1, 1)
    # The money is back where it came from, and nobody keeps any of it.
    assert _available(organisation) == 1_000
    assert balance(prepaid_key(organisation.pk, "USD")) == 1_000
    assert (payable(creator), balance("platform_fee:USD")) == (0, 0)
    grant.refresh_from_db()
    assert grant.accesses_used == 0
    assert organisation.spend_caps.get().spent_minor == 0
    assert ledger_check().clean
    # The refunded key answers nothing again (no receipt for money that went back), and charges nothing.
    with pytest.raises(Conflict) as refused:
        _access(organisation, api_key, work, "job-1")
    assert refused.value.problem_code == "access_refunded"
    assert (AccessEvent.objects.count(), _available(organisation)) == (1, 1_000)
    # The quota use came back: a new access fits the quota of one.
    _access(organisation, api_key, work, "job-2")
    assert _available(organisation) == 900
    # Settling later finds nothing left of the refunded access to split.
    revenue_settle()
    assert (payable(creator), balance("platform_fee:USD")) == (90, 10)
    assert ledger_check().clean


def test_an_access_already_paid_out_is_taken_back_from_the_payee_as_a_clawback(time_machine) -> None:
    time_machine.move_to(datetime(2026, 6, 1, 12, tzinfo=UTC))
    creator, work, organisation, api_key = _market(price_minor=10_000, funded_minor=10_000)
    _access(organisation, api_key, work, "job-1")
    revenue_settle()
    [paid] = payouts.payout_run().created
    payouts.manual_mark_paid(payout=paid, reference="BANK-OUT-1")
    assert (paid.amount_minor, _available(organisation)) == (9_000, 0)

    access_refund(organisation=organisation, idempotency_key="job-1", reason="not delivered")

    assert _available(organisation) == 10_000
    assert (payable(creator), balance(f"clawback:user:{creator.pk}:USD")) == (0, -9_000)
    assert balance("platform_fee:USD") == 0
    assert ledger_check().clean


def test_a_refund_waits_while_a_block_holds_the_revenue_and_changes_nothing_meanwhile() -> None:
    creator, work, organisation, api_key = _market(price_minor=100, funded_minor=1_000)
    _access(organisation, api_key, work, "job-1")
    Work.objects.filter(pk=work.pk).update(status=WorkStatus.BLOCKED)  # a claim's block holds its revenue

    with pytest.raises(RefundNotYet):
        access_refund(organisation=organisation, idempotency_key="job-1", reason="not delivered")

    assert (AccessRefund.objects.count(), _refunds(), _available(organisation)) == (0, 0, 900)
    assert Grant.objects.get(organisation=organisation).accesses_used == 1

    Work.objects.filter(pk=work.pk).update(status=WorkStatus.PUBLISHED)  # the block is lifted
    access_refund(organisation=organisation, idempotency_key="job-1", reason="not delivered")

    assert (AccessRefund.objects.count(), _refunds(), _available(organisation)) == (1, 1, 1_000)
    assert (payable(creator), balance("platform_fee:USD")) == (0, 0)
    assert ledger_check().clean


def test_a_free_access_gives_back_its_quota_use_and_no_access_gives_back_nothing() -> None:
    _, work, organisation, api_key = _market(price_minor=0, funded_minor=1_000, quota=1)
    _access(organisation, api_key, work, "job-1")

    refund = access_refund(organisation=organisation, idempotency_key="job-1", reason="not delivered")
    unknown = access_refund(organisation=organisation, idempotency_key="never-made", reason="not delivered")

    assert refund is not None and refund.journal is None and unknown is None
    assert Grant.objects.get(organisation=organisation).accesses_used == 0
    assert (_refunds(), _available(organisation)) == (0, 1_000)
