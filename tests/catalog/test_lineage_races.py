"""Two parent links made at the same moment cannot close a cycle (PostgreSQL, where they can overlap;
SQLite runs one write transaction at a time)."""

from __future__ import annotations

import pytest

from catalog.models import WorkParent
from catalog.services import ParentClaim, grant_create, work_parents_add
from common.problems import ApiError
from tests import factories
from tests.interleave import Session, paused_inside_transaction, wait_until_blocked_or_done


def _derivable(owner):
    work = factories.work(owner, title=f"Work of {owner.username}")
    offer = factories.offer(owner, work, derivative_share_bps=1_000, uses={"derivative": 0})
    return work, offer


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_parent_links_cannot_close_a_cycle():
    # given B derives from C, and the owners of A and C each hold a licence to derive from the other side
    a_owner, b_owner, c_owner = (factories.creator(username=name) for name in ("ann", "ben", "cat"))
    a, offer_a = _derivable(a_owner)
    b, offer_b = _derivable(b_owner)
    c, offer_c = _derivable(c_owner)
    grant_bc = grant_create(offer=offer_c, user=b_owner).grant
    work_parents_add(work=b, user=b_owner, parents=[ParentClaim(c.pk, grant_bc.pk)])
    grant_ab = grant_create(offer=offer_b, user=a_owner).grant
    grant_ca = grant_create(offer=offer_a, user=c_owner).grant

    # when A -> B is being linked (not yet committed) and C -> A is asked for meanwhile
    first, commit_first = paused_inside_transaction(
        lambda: work_parents_add(work=a, user=a_owner, parents=[ParentClaim(b.pk, grant_ab.pk)])
    )
    second = Session(lambda: work_parents_add(work=c, user=c_owner, parents=[ParentClaim(a.pk, grant_ca.pk)]))
    second.start()
    second_waited = wait_until_blocked_or_done(second)
    commit_first.set()
    first.join()
    second.join()

    # then the second waited for the first and, seeing its edge, refused the cycle
    assert first.error is None
    assert second_waited
    assert isinstance(second.error, ApiError) and second.error.problem_code == "lineage_cycle"
    assert sorted(WorkParent.objects.values_list("child__title", "parent__title")) == [
        ("Work of ann", "Work of ben"),
        ("Work of ben", "Work of cat"),
    ]
