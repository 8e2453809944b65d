"""What every dashboard view uses: the signed-in user, pagination, and the role and staff gates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Role, User

PAGE_SIZE = 10


def current_user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # login_required let an anonymous user through: a wiring mistake
        raise Http404
    return user


def paginate(
    request: HttpRequest, items: QuerySet[Any] | list[Any], size: int = PAGE_SIZE, param: str = "page"
) -> Page:
    return Paginator(items, size).get_page(request.GET.get(param))


def role_only(request: HttpRequest, role: str, what: str) -> HttpResponse | None:
    """A page for one role answers the others with a plain explanation (403), never with data."""
    if current_user(request).role == role:
        return None
    return render(
        request, "dashboard/not_for_role.html", {"what": what, "role": Role(role).label}, status=403
    )


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Operator pages do not exist for anyone else."""

    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not current_user(request).is_staff:
            raise Http404
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped
