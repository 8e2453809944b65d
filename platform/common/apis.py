from typing import Any

from rest_framework import generics


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
