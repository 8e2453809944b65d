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
    # Query parameters a subclass reads itself, besides pagination, ordering and its filters.
    extra_query_params: tuple[str, ...] = ()

    def allowed_query_params(self) -> set[str]:
        allowed = {"page", "page_size", "format", *self.extra_query_params}
        if getattr(self, "ordering_fields", None):
            allowed.add("ordering")
        fields = getattr(self, "filterset_fields", None) or ()
        allowed.update(fields)
        filterset_class = getattr(self, "filterset_class", None)
        if filterset_class is not None:
            allowed.update(filterset_class.base_filters)
        return allowed

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Unknown query parameters answer 400 instead of being ignored (a misspelt filter would otherwise
        return everything)."""
        super().initial(request, *args, **kwargs)
        unknown = sorted(set(request.query_params) - self.allowed_query_params())
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown query parameter."] for name in unknown}, code="unknown_query_parameter"
            )

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
