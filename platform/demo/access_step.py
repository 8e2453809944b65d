"""The demo's vendor steps: Acme AI pays per access until its balance runs out, pays one access on-chain
with x402, then registers a generated output that copies a photo it never licensed; the trace finds it
and a claim opens for the photographer."""

from __future__ import annotations

import base64
import io
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from PIL import Image, ImageOps

from access import payments
from access.services import AccessRequest, access_quote, access_request
from accounts.models import ApiKey, Organisation
from catalog import fingerprinting, tracing
from catalog.models import Asset, ClaimCharge, FingerprintStatus, Offer, OfferStatus
from catalog.services import Terms, offer_publish
from common.currency import format_minor
from common.money import Money
from royalties import claims, selectors
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds
from royalties.licences import licence_accept

if TYPE_CHECKING:
    from demo.story import Story


def _fingerprint_everything(story: Story) -> None:
    pending = Asset.objects.exclude(fingerprint_status=FingerprintStatus.DONE).order_by("pk")
    for asset in pending:
        fingerprinting.asset_fingerprint(asset_id=asset.pk)  # what the Celery worker does after each upload
    story.say(
        f"    fingerprinted {pending.count() or 'all'} uploaded files (image, audio and voice fingerprints)"
    )


def _x402_signature(required: dict[str, Any]) -> tuple[str, str]:
    """What a vendor's wallet does with a payment requirement: sign an EIP-3009 authorization."""
    import x402.mechanisms.evm.exact.client as x402_client
    import x402.schemas.payments as x402_payments
    from eth_account import Account

    wallet = Account.create()
    payments.chain().mint(wallet.address, 10_000_000)  # 10 tUSD in the vendor's wallet
    requirements = x402_payments.PaymentRequirements.model_validate(required["accepts"][0])
    payload = x402_payments.PaymentPayload(
        payload=x402_client.ExactEvmScheme(wallet).create_payment_payload(requirements), accepted=requirements
    )
    return base64.b64encode(payload.model_dump_json(by_alias=True).encode()).decode(), wallet.address


def pay_per_access(story: Story) -> None:
    acme = story.people["acme"]
    organisation = Organisation.objects.filter(membership__user=acme).order_by("id").get()
    api_key = ApiKey.objects.filter(organisation=organisation).order_by("id").get()
    style = story.works["style"]
    request = AccessRequest(work_id=style.pk, use_class="style", territory="US")

    story.say("6. Acme AI pays per access: POST /api/v1/access with its key")
    _fingerprint_everything(story)
    prepaid_fund(organisation=organisation, amount=Money(50, "USD"), external_ref="demo-top-up-1")
    story.say(
        f"    tops up {format_minor(50, 'USD')}; "
        f"each style use of Mira's style costs {format_minor(12, 'USD')}"
    )
    granted = 0
    while True:
        try:
            access_request(
                organisation=organisation, api_key=api_key, idempotency_key=str(uuid.uuid4()), request=request
            )
            granted += 1
        except InsufficientFunds:
            break
    left = selectors.prepaid_available(organisation=organisation, currency="USD")
    story.say(
        f"    {granted} accesses granted with signed receipts; "
        f"then HTTP 402 with {format_minor(left, 'USD')} left"
    )
    price = access_quote(organisation=organisation, request=request)
    required = payments.payment_required(
        price_minor=price.amount_minor, currency=price.currency, access=request
    )
    signature, wallet = _x402_signature(required)
    settlement = payments.x402_pay(
        organisation=organisation,
        api_key=api_key,
        request=request,
        payment_header=signature,
        idempotency_key=str(uuid.uuid4()),
    )
    if settlement.result is None:
        # Credited (and the access charged) once CHAIN_CONFIRMATIONS deep; the demo's chain mines on demand.
        payments.chain().mine_blocks(int(settings.CHAIN_CONFIRMATIONS))
        payments.x402_confirm(payment=settlement.payment, api_key=api_key)
    story.say(
        f"    pays the next access with x402 from wallet {wallet[:10]}…: "
        f"{int(settlement.payment.amount_base_units)} tUSD base units, "
        f"tx {settlement.payment.transaction_hash}"
    )
    prepaid_fund(organisation=organisation, amount=Money(5_000, "USD"), external_ref="demo-top-up-2")
    song_offer = Offer.objects.get(work=story.works["song"], status=OfferStatus.CURRENT)
    grant = licence_accept(offer=song_offer, user=acme, organisation=organisation).grant
    story.say(
        f"    tops up {format_minor(5_000, 'USD')} by card and licenses “Harbour hymn” "
        f"(licence fee {format_minor(grant.fee_minor, grant.currency)} from its balance)"
    )
    song_request = AccessRequest(work_id=story.works["song"].pk, use_class="ai-train", territory="US")
    for _ in range(40):
        access_request(
            organisation=organisation,
            api_key=api_key,
            idempotency_key=str(uuid.uuid4()),
            request=song_request,
        )
    story.say("    trains on “Harbour hymn” 40 times")


def output_claim(story: Story) -> None:
    acme = story.people["acme"]
    organisation = Organisation.objects.filter(membership__user=acme).order_by("id").get()
    photo = story.works["photo1"]
    asset = photo.assets.select_related("blob").get()
    story.say("7. Acme AI registers a generated image that copies one of Mira's photos (mirrored, cropped)")
    # A draft is nobody else's business (the trace hides it, and no claim discloses it): Mira's photograph
    # is in the catalogue, offered for training, which Acme never licensed.
    offer_publish(
        work=photo,
        user=story.people["mira"],
        terms=Terms(currency="USD", uses={"ai-train": 3}, commercial_use=True),
    )
    story.say(f"    Mira publishes “{photo.title}” for AI training at 0.03 USD a use")
    from django.core.files.storage import default_storage

    with default_storage.open(asset.blob.storage_name, "rb") as handle, Image.open(handle) as source:
        image = source.convert("RGB")
        width, height = image.size
        copy = ImageOps.mirror(image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10)))
        buffer = io.BytesIO()
        copy.save(buffer, "JPEG", quality=80)
    result = tracing.output_register(
        organisation=organisation,
        user=acme,
        data=buffer.getvalue(),
        filename="acme-output-0001.jpg",
        receipts={},
    )
    for match in result.uncovered:
        where = match.match.region and ", ".join(f"{v:.2f}" for v in match.match.region)
        story.say(
            f"    the trace finds “{match.work.title}”: {match.match.kind} match, confidence "
            f"{match.match.confidence:.3f}, mirrored {match.match.mirrored}, region ({where}); "
            "no receipt covers it"
        )
    for claim in result.claims:
        owner = claim.work.created_by
        story.say(f"    claim #{claim.pk} opens for {owner.public_name}: monetize, track or block")
        # Her terms do not price generation, so she names what Acme owes for the use its output shows.
        decided = claims.claim_decide(
            claim=claim, user=owner, decision="monetize", price=claims.NamedPrice(250, "USD")
        )
        where = (
            "held in escrow from its balance"
            if decided.charge == ClaimCharge.HELD
            else "owed until its balance covers it"
        )
        story.say(
            f"    {owner.public_name} monetizes it: Acme owes 2.50 USD for the {decided.charge_use} use, "
            f"{where}; it is hers once the decision is final ({settings.CLAIM_DISPUTE_DAYS} days without "
            "a dispute)"
        )
