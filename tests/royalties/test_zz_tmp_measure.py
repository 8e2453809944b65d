import time
import pytest
from django.test import Client
from eth_account import Account
from eth_account.messages import encode_defunct
from accounts.models import Organisation
from accounts.payout_identity import signer_of
from royalties.rails import stripe as gateway
from tests import factories
from tests.royalties.stripe_world import deliver, event, recorded, signature_header

pytestmark = pytest.mark.django_db

def test_measure(stripe_on):
    web = Client()
    vendor = factories.vendor()
    org = Organisation.objects.get(membership__user=vendor)
    payloads = []
    for n in range(300):
        intent = recorded("payment_intent") | {"id": f"pi_m{n}", "amount_received": 1000, "status": "succeeded",
            "metadata": {gateway.META_ORGANISATION: str(org.pk)}}
        payloads.append(event("payment_intent.succeeded", intent, event_id=f"evt_m{n}"))
    p = payloads[0]; h = signature_header(p)
    t = time.perf_counter()
    for _ in range(2000): gateway.webhook_verify(p, h)
    print("verify_us", (time.perf_counter()-t)/2000*1e6)
    deliver(web, payloads[0])
    t = time.perf_counter()
    for q in payloads[1:]: assert deliver(web, q).status_code == 200
    print("new_event_ms", (time.perf_counter()-t)/299*1e3)
    t = time.perf_counter()
    for q in payloads[1:]: assert deliver(web, q).status_code == 200
    print("duplicate_ms", (time.perf_counter()-t)/299*1e3)
    w = Account.create(); msg = "x" * 300
    s = "0x" + w.sign_message(encode_defunct(text=msg)).signature.hex().removeprefix("0x")
    t = time.perf_counter()
    for _ in range(200): signer_of(message=msg, signature=s)
    print("recover_ms", (time.perf_counter()-t)/200*1e3)
