from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class SelectorListApi(generics.ListAPIView):
    """A paginated, filterable list whose rows come from a selector (in get_queryset).

    Subclasses set `queryset = Model.objects.none()` so the schema generator, which has no user, can learn
    the model without calling the selector.
    """

    queryset: Any = None

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return self.select()

    def select(self) -> Any:
        raise NotImplementedError


class HealthApi(APIView):
    """Liveness: answers without touching the database (also the baseline of the access benchmark)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []  # probed by load balancers; counts against nobody's quota

    @extend_schema(
        responses={200: inline_serializer("Health", {"ok": serializers.BooleanField()})},
        operation_id="health",
    )
    def get(self, request: Request) -> Response:
        return Response({"ok": True})
