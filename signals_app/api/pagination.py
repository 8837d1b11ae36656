from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """`{"next", "previous", "results"}` by opaque cursor over the primary key.

    The id is unique and never changes, which cursor pagination needs; newest first.
    """

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 1000
