"""Chain funding: a vendor's stablecoin deposit to the platform's deposit address is credited to its
prepaid balance exactly once; an unknown sender's deposit waits in suspense, never lost."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from common.problems import ApiError, Conflict
from contracts.chain import Chain
from royalties import funding
from royalties.ledger import ledger_check
from royalties.models import ChainDeposit, DepositAddress, Receivable
from royalties.reports import ReportLine, revenue_report_record
from royalties.selectors import prepaid_available
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import organisation_of
from tests.royalties.payout_world import balance, onchain

__all__ = ["onchain"]
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _chain_settings(settings) -> None:
    settings.CHAIN_CONFIRMATIONS = 2
    settings.CHAIN_DEPOSIT_ADDRESS = ""
    settings.CHAIN_PAYOUTS_ENABLED = True


def _wallet(client: Chain, tokens: int) -> LocalAccount:
    wallet: LocalAccount = Account.create()
    client.transfer_eth(wallet.address, 10**17)  # gas money
    client.mint(wallet.address, tokens)
    return wallet


def _deposit(client: Chain, wallet: LocalAccount, amount: int) -> str:
    return client.for_signer(wallet.key).transfer(funding.deposit_address(), amount).tx_hash


def _register(organisation, wallet: LocalAccount) -> DepositAddress:
    message = funding.deposit_message(organisation=organisation, address=wallet.address)
    signature = wallet.sign_message(encode_defunct(text=message)).signature.hex()
    return funding.deposit_address_register(
        organisation=organisation, address=wallet.address, signature=signature
    )


def test_a_registered_vendor_deposit_is_credited_once_after_enough_confirmations(onchain: Chain) -> None:
    organisation = organisation_of(factories.vendor())
    wallet = _wallet(onchain, 50_000_000)
    _register(organisation, wallet)
    tx_hash = _deposit(onchain, wallet, 12_345_678)  # 12.345678 tUSD

    early = funding.chain_deposits_watch()  # one confirmation; two are needed
    assert early.credited == 0
    onchain.mine_blocks(1)
    first = funding.chain_deposits_watch()
    onchain.mine_blocks(1)
    again = funding.chain_deposits_watch()

    assert (first.credited, again.credited) == (1, 0)
    assert prepaid_available(organisation=organisation, currency="USD") == 1234
    deposit = ChainDeposit.objects.get()
    assert (deposit.tx_hash, deposit.status, deposit.amount_minor) == (tx_hash, "credited", 1234)
    assert int(deposit.dust_base_units) == 5_678
    assert (
        deposit.journal is not None and deposit.journal.key == f"funding:chain:{tx_hash}:{deposit.log_index}"
    )
    assert balance("clearing:chain:USD") == -1234
    assert ledger_check().clean


def test_reading_the_same_blocks_again_credits_nothing_twice(onchain: Chain) -> None:
    organisation = organisation_of(factories.vendor())
    wallet = _wallet(onchain, 50_000_000)
    _register(organisation, wallet)
    _deposit(onchain, wallet, 10_000_000)
    onchain.mine_blocks(2)
    funding.chain_deposits_watch()
    funding.ChainCursor.objects.update(last_block=0)  # as if the cursor was lost

    replay = funding.chain_deposits_watch()

    assert (replay.credited, replay.duplicates) == (0, 1)
    assert prepaid_available(organisation=organisation, currency="USD") == 1000


def test_an_unknown_sender_goes_to_suspense_until_the_operator_assigns_it(onchain: Chain) -> None:
    stranger = _wallet(onchain, 5_000_000)
    _deposit(onchain, stranger, 5_000_000)
    onchain.mine_blocks(2)

    result = funding.chain_deposits_watch()

    assert result.suspense == 1
    assert balance("suspense:USD") == 500
    deposit = ChainDeposit.objects.get()
    organisation = organisation_of(factories.vendor())
    funding.deposit_assign(deposit=deposit, organisation=organisation)
    funding.deposit_assign(deposit=deposit, organisation=organisation)
    assert balance("suspense:USD") == 0
    assert prepaid_available(organisation=organisation, currency="USD") == 500
    with pytest.raises(Conflict):
        funding.deposit_assign(
            deposit=deposit, organisation=organisation_of(factories.vendor(username="other"))
        )
    assert ledger_check().clean


def test_mints_to_the_deposit_address_are_recorded_but_not_credited(onchain: Chain) -> None:
    onchain.mint(funding.deposit_address(), 7_000_000)
    onchain.mine_blocks(2)

    result = funding.chain_deposits_watch()

    assert result.skipped == 1
    assert ChainDeposit.objects.get().status == "skipped"
    assert balance("suspense:USD") == 0


def test_a_deposit_address_needs_the_wallets_own_signature() -> None:
    organisation = organisation_of(factories.vendor())
    wallet: LocalAccount = Account.create()
    other: LocalAccount = Account.create()
    message = funding.deposit_message(organisation=organisation, address=wallet.address)
    forged = other.sign_message(encode_defunct(text=message)).signature.hex()

    with pytest.raises(ApiError) as refused:
        funding.deposit_address_register(organisation=organisation, address=wallet.address, signature=forged)
    assert refused.value.problem_code == "invalid_signature"
    with pytest.raises(ApiError) as malformed:
        funding.deposit_address_register(
            organisation=organisation, address=wallet.address, signature="0x1234"
        )
    assert malformed.value.problem_code == "invalid_signature"
    assert DepositAddress.objects.count() == 0

    registered = _register(organisation, wallet)
    assert _register(organisation, wallet).pk == registered.pk
    with pytest.raises(Conflict):
        _register(organisation_of(factories.vendor(username="rival")), wallet)


def test_the_watch_command_reports_what_it_credited(onchain: Chain, capsys) -> None:
    stranger = _wallet(onchain, 2_000_000)
    _deposit(onchain, stranger, 2_000_000)
    onchain.mine_blocks(2)

    call_command("watch_chain_deposits")

    assert "suspense 1" in capsys.readouterr().out


def test_a_deposit_in_suspense_can_be_a_distributors_payment_that_matches_receivables(onchain: Chain) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L1", work.pk, 500, "USD")])
    stranger = _wallet(onchain, 5_000_000)
    _deposit(onchain, stranger, 5_000_000)  # 5 tUSD = 500 cents
    onchain.mine_blocks(2)
    funding.chain_deposits_watch()
    deposit = ChainDeposit.objects.get()

    funding.deposit_assign_receipt(deposit=deposit, reporter=creator, distributor="Shop")
    with pytest.raises(Conflict):
        funding.deposit_assign_receipt(deposit=deposit, reporter=creator, distributor="shop")
    revenue_settle()

    assert Receivable.objects.get().status == "matched"
    assert (balance("suspense:USD"), balance(f"payable:user:{creator.pk}:USD")) == (0, 450)
    assert ledger_check().clean
