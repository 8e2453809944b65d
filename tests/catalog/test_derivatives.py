from decimal import Decimal

import pytest

from catalog.models import Work, WorkParent
from catalog.services import ParentClaim, derivative_create, grant_create
from tests import factories

pytestmark = pytest.mark.django_db


def _licensed(owner, licensee, *, share_bps: int, title: str, uses=None):
    work = factories.work(owner, title=title)
    offer = factories.offer(owner, work, derivative_share_bps=share_bps, uses=uses or {"derivative": 0})
    return work, grant_create(offer=offer, user=licensee).grant


def test_a_fan_registers_a_derivative_and_the_stack_follows_the_grant(as_user) -> None:
    singer, fan = factories.creator(), factories.fan()
    voice, grant = _licensed(singer, fan, share_bps=5000, title="Her voice")

    response = as_user(fan).post(
        "/api/v1/derivatives",
        {"title": "Fan song", "kind": "audio", "parents": [{"work": voice.pk, "grant": grant.pk}]},
        format="json",
    )

    assert response.status_code == 201
    lineage = as_user(fan).get(f"/api/v1/works/{response.json()['id']}/lineage").json()
    assert lineage["stack"] == [{"work": voice.pk, "title": "Her voice", "share_bps": "5000"}]
    assert lineage["owners_share_bps"] == "5000"
    assert as_user(fan).get("/api/v1/derivatives").json()["count"] == 1


def test_a_three_level_chain_with_two_parents_has_an_exact_multi_level_stack() -> None:
    # grandparent A (20% of B's revenue); B and C are parents of D (30% and 25%); E derives from D (10%).
    a_owner, b_owner, c_owner, d_owner, e_owner = (factories.creator() for _ in range(5))
    a, grant_ab = _licensed(a_owner, b_owner, share_bps=2000, title="A")
    b = derivative_create(user=b_owner, title="B", kind="image", parents=[ParentClaim(a.pk, grant_ab.pk)])
    factories.offer(b_owner, b, derivative_share_bps=3000, uses={"derivative": 0})
    grant_bd = grant_create(offer=b.offers.get(), user=d_owner).grant
    c, grant_cd = _licensed(c_owner, d_owner, share_bps=2500, title="C")
    d = derivative_create(
        user=d_owner,
        title="D",
        kind="image",
        parents=[ParentClaim(b.pk, grant_bd.pk), ParentClaim(c.pk, grant_cd.pk)],
    )
    factories.offer(d_owner, d, derivative_share_bps=1000, uses={"derivative": 0})
    grant_de = grant_create(offer=d.offers.get(), user=e_owner).grant
    e = derivative_create(user=e_owner, title="E", kind="image", parents=[ParentClaim(d.pk, grant_de.pk)])

    from catalog.selectors import lineage_of

    stack = {entry["work"].title: entry["share_bps"] for entry in lineage_of(work=e)["stack"]}

    # D 10%; B 10% x 30% = 3%; C 10% x 25% = 2.5%; A 3% x 20% = 0.6%.
    assert stack == {"D": Decimal("1000"), "B": Decimal("300"), "C": Decimal("250"), "A": Decimal("60")}
    assert lineage_of(work=e)["owners_share_bps"] == Decimal("9000")
    assert {w.title for w in lineage_of(work=e)["ancestors"]} == {"A", "B", "C", "D"}


def test_parents_whose_shares_exceed_100_percent_are_refused(as_user) -> None:
    fan = factories.fan()
    first, g1 = _licensed(factories.creator(), fan, share_bps=6000, title="One")
    second, g2 = _licensed(factories.creator(), fan, share_bps=5000, title="Two")

    response = as_user(fan).post(
        "/api/v1/derivatives",
        {
            "title": "Too much",
            "kind": "image",
            "parents": [{"work": first.pk, "grant": g1.pk}, {"work": second.pk, "grant": g2.pk}],
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "royalty_stack_over_100"
    assert "11000" in response.json()["detail"]
    assert not Work.objects.filter(title="Too much").exists()


def test_a_cycle_is_refused(as_user) -> None:
    alice, bob = factories.creator(), factories.creator()
    a, grant_ab = _licensed(alice, bob, share_bps=1000, title="A")
    b = derivative_create(user=bob, title="B", kind="image", parents=[ParentClaim(a.pk, grant_ab.pk)])
    factories.offer(bob, b, derivative_share_bps=1000, uses={"derivative": 0})
    grant_ba = grant_create(offer=b.offers.get(), user=alice).grant

    response = as_user(alice).post(
        f"/api/v1/works/{a.pk}/parents", {"parents": [{"work": b.pk, "grant": grant_ba.pk}]}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "lineage_cycle"
    assert not WorkParent.objects.filter(child=a).exists()


def test_a_derivative_names_at_most_sixteen_parents(as_user) -> None:
    fan = factories.fan()
    parents = [_licensed(factories.creator(), fan, share_bps=100, title=f"P{i}") for i in range(17)]
    body = {
        "title": "Collage",
        "kind": "image",
        "parents": [{"work": w.pk, "grant": g.pk} for w, g in parents],
    }

    refused = as_user(fan).post("/api/v1/derivatives", body, format="json")
    body["parents"] = body["parents"][:16]
    accepted = as_user(fan).post("/api/v1/derivatives", body, format="json")

    assert refused.status_code == 400 and refused.json()["code"] == "too_many_parents"
    assert accepted.status_code == 201
    assert WorkParent.objects.count() == 16


def test_a_grant_that_does_not_allow_derivatives_cannot_be_used(as_user) -> None:
    fan = factories.fan()
    work, grant = _licensed(factories.creator(), fan, share_bps=0, title="Train only", uses={"ai-train": 3})
    response = as_user(fan).post(
        "/api/v1/derivatives",
        {"title": "x", "kind": "image", "parents": [{"work": work.pk, "grant": grant.pk}]},
        format="json",
    )
    assert response.status_code == 403 and response.json()["code"] == "derivative_not_allowed"
    assert not Work.objects.filter(title="x").exists()


def test_someone_elses_grant_cannot_be_used(as_user) -> None:
    holder, thief = factories.fan(), factories.fan()
    work, grant = _licensed(factories.creator(), holder, share_bps=1000, title="Licensed")
    response = as_user(thief).post(
        "/api/v1/derivatives",
        {"title": "x", "kind": "image", "parents": [{"work": work.pk, "grant": grant.pk}]},
        format="json",
    )
    assert response.status_code == 404 and response.json()["code"] == "grant_not_found"
