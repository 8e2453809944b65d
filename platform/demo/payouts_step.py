"""The demo's payout step: Sol proves he holds a wallet by signing our challenge, the payout run pays him
on the in-process chain through the PayoutDistributor, and the payment is confirmed after the configured
number of blocks. Everyone else has no payout method yet: their payouts wait as manual payouts.

The demo lowers the payout threshold to 1.00 USD: the story's earnings are small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.test.utils import override_settings
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from accounts.payout_identity import payout_profile_rail_set, wallet_challenge_create, wallet_link
from common.currency import format_minor
from royalties.chain_client import chain
from royalties.models import ChainBatch, Payout
from royalties.payouts import chain_confirm_pending, payout_run

if TYPE_CHECKING:  # story.py lists this step in STEPS: no import cycle at run time
    from demo.story import Story

DEMO_THRESHOLD_MINOR = 100


def pay_out(story: Story) -> None:
    sol = story.people["sol"]
    story.say("10. Sol links a wallet and is paid on chain; the others' payouts wait for the operator")
    # A fixed demo key, so the demo's wallet is the same on every run (never use such a key for real money).
    wallet = Account.from_key(keccak(text="tribute demo wallet: sol"))
    domain = urlsplit(settings.SITE_URL).netloc or "tribute.local"
    challenge = wallet_challenge_create(user=sol, domain=domain)
    signature = wallet.sign_message(encode_defunct(text=challenge.message)).signature.hex()
    wallet_link(
        user=sol, nonce=challenge.nonce, address=wallet.address, signature="0x" + signature.removeprefix("0x")
    )
    payout_profile_rail_set(user=sol, rail="chain")
    story.say(
        f"    signs the challenge (EIP-191) with {wallet.address}; the signature checks, the wallet is linked"
    )

    with override_settings(PAYOUT_THRESHOLD_MINOR={"USD": DEMO_THRESHOLD_MINOR}, CHAIN_PAYOUTS_ENABLED=True):
        result = payout_run()
        client = chain()
        depth = int(settings.CHAIN_CONFIRMATIONS)
        client.mine_blocks(depth)  # the in-process chain mines on demand
        confirmed = chain_confirm_pending()
    story.say(
        f"    payout run for {result.period} (threshold {format_minor(DEMO_THRESHOLD_MINOR, 'USD')}): "
        f"{len(result.created)} payouts, {result.submitted} sent on chain, {result.manual} manual"
    )
    for payout in Payout.objects.filter(pk__in=[p.pk for p in result.created]).select_related("user"):
        amount = format_minor(payout.amount_minor, payout.currency)
        if payout.rail == "chain":
            story.say(
                f"    {payout.user.public_name}: {amount} on chain, {payout.status}, "
                f"transaction {payout.external_id}"
            )
        else:
            story.say(
                f"    {payout.user.public_name}: {amount} waits as a {payout.rail} payout ({payout.status})"
            )
    for batch in ChainBatch.objects.filter(payouts__in=result.created).distinct().order_by("id"):
        story.say(
            f"    batch_pay {batch.tx_hash}: {batch.entries} payee(s), block {batch.mined_block}, "
            f"{batch.gas_used} gas; confirmed after {depth} blocks ({confirmed.confirmed} payout(s))"
        )
    held = client.balance_of(wallet.address)
    whole, fraction = divmod(held, 10**6)
    story.say(f"    Sol's wallet now holds {whole}.{fraction:06d} tUSD ({held} base units, 6 decimals)")
