from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from .filters import MAX_ID
from .problems import Problem, item_error, shown


def _invalid(name, message, expected, received):
    return Problem(
        400,
        f"{name}: {message}",
        errors=[item_error(name, message, expected=expected, received=shown(received))],
    )


class IdCursorPagination(CursorPagination):
    """`{"next", "previous", "results"}` by opaque cursor over the primary key.

    The id is unique and never changes, which cursor pagination needs; newest first.
    A page_size outside 1..1000 is a 400, not silently the default; so is a cursor that
    is not one of ours (DRF answers 404).
    """

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise _invalid(
                self.page_size_query_param,
                f"expected an integer from 1 to {self.max_page_size}",
                f"an integer from 1 to {self.max_page_size}",
                raw,
            )
        return size

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
            valid = False
        else:
            valid = cursor is None or self._valid_position(cursor.position)
        if not valid:
            raise _invalid(
                self.cursor_query_param,
                "invalid cursor",
                "the cursor of a next or previous link of this list",
                request.query_params.get(self.cursor_query_param),
            )
        return cursor

    def _valid_position(self, position):
        """A decoded cursor's position is compared with the ordering field in SQL: a forged
        one must not reach the database (`p=abc` on an id was a 500)."""
        if position is None:
            return True
        ordering = (self.ordering,) if isinstance(self.ordering, str) else self.ordering
        if ordering[0].lstrip("-") == "id":
            return position.isascii() and position.isdigit() and int(position) <= MAX_ID
        return "\x00" not in position  # PostgreSQL text cannot hold NUL

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters
