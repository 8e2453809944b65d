"""Fixtures of the security and reliability suite (docs/security.md lists what each test proves).

`live_site` is gunicorn with DEBUG off on a scratch SQLite database, shared by the tests that need a real
server (schemathesis, upload abuse): a creator, a fan and a vendor with API keys, a published work.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.security.live import Gunicorn, migrate, run_python, server_env
from tests.security.worlds import build_world

SETUP = """
from accounts.services import api_key_create, user_create
from catalog.services import Terms, asset_upload, grant_create, offer_publish, work_create
from common.money import Money
from royalties.funding import prepaid_fund
from tests import factories

creator = user_create(
    username="cora", email="cora@example.com", password=None, role="creator", email_verified=True
)
fan = user_create(username="finn", email="finn@example.com", password=None, role="fan", email_verified=True)
vendor = user_create(
    username="vera", email="vera@example.com", password=None, role="vendor", organisation_name="Vera AI",
    email_verified=True,
)
work = work_create(user=creator, title="Harbour", kind="image")
asset_upload(work=work, user=creator, data=factories.png_bytes(), filename="harbour.png")
offer = offer_publish(
    work=work,
    user=creator,
    terms=Terms(currency="USD", uses={"ai-train": 2, "derivative": 0}, derivative_share_bps=2000),
)
grant = grant_create(offer=offer, user=fan).grant
organisation = vendor.organisations.get()
prepaid_fund(organisation=organisation, amount=Money(1_000_000, "USD"), external_ref="security-suite")
print(json.dumps({
    "creator_key": api_key_create(user=creator, name="suite", scopes=["read", "write"]).secret,
    "fan_key": api_key_create(user=fan, name="suite", scopes=["read", "write"]).secret,
    "vendor_key": api_key_create(user=vendor, name="suite", scopes=["read", "access", "outputs"]).secret,
    "work_id": work.pk,
    "offer_id": offer.pk,
    "grant_id": grant.pk,
}))
"""


@dataclass
class LiveSite:
    server: Gunicorn
    env: dict[str, str]
    var_dir: Path
    data: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url

    def stored_files(self) -> list[Path]:
        uploads = self.var_dir / "uploads"
        return sorted(p for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else []


@pytest.fixture(scope="session")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    var_dir = tmp_path_factory.mktemp("live-site")
    env = server_env(var_dir)
    migrate(env)
    data = run_python(SETUP, env)
    # No request-line limit: an over-long query must reach Django (and get its 400), not stop at gunicorn's
    # own HTML 414, which a proxy in front would answer differently anyway.
    server = Gunicorn(env, workers=1, log=var_dir / "gunicorn.log", options=("--limit-request-line", "0"))
    try:
        yield LiveSite(server=server, env=env, var_dir=var_dir, data=data)
    finally:
        server.stop()


@pytest.fixture
def world() -> dict[str, Any]:
    """A creator and a vendor whose private objects carry worlds.MARK, and a fan who licensed the work."""
    return build_world()
