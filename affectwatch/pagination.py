"""Limit / offset pagination that refuses what its schema refuses: `limit` and `offset`
are whole numbers in the declared range, given once; anything else is a 400 that names
the parameter (DRF's own class quietly falls back to its defaults instead)."""
import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

WHOLE = re.compile(r"[0-9]{1,10}")
LARGEST = 2**31 - 1  # the database's integer, well past any list


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination whose parameters are checked and declared with their range."""

    def _whole(self, request, name, smallest, default):
        values = request.query_params.getlist(name)
        if not values:
            return default
        if len(values) > 1 or not WHOLE.fullmatch(values[0]) or not smallest <= int(values[0]) <= LARGEST:
            raise ValidationError({name: [f"{name} must be given once, as a whole number from {smallest} to "
                                          f"{LARGEST}."]})
        return int(values[0])

    def get_limit(self, request):
        """The page size asked for (`limit`, 1 or more), else the default."""
        limit = self._whole(request, self.limit_query_param, 1, self.default_limit)
        return min(limit, self.max_limit) if self.max_limit and limit is not None else limit

    def get_offset(self, request):
        """Where the page starts (`offset`, 0 or more), else 0."""
        return self._whole(request, self.offset_query_param, 0, 0)

    def get_schema_operation_parameters(self, view):
        """The parameters as DRF declares them, with their range."""
        params = super().get_schema_operation_parameters(view)
        for p in params:
            p["schema"].update(minimum=1 if p["name"] == self.limit_query_param else 0, maximum=LARGEST)
        return params
