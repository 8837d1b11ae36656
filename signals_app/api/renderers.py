"""The API's JSON renderer."""

import math

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer, writing a number JSON cannot carry (inf, nan) as null.

    Readings are bounded at ingestion, so no statistic overflows now; one stored before
    (a baseline's mean of inf, a comparison over such readings) made the whole response a
    500, for every caller of the list. The fallback walks the data only when that happens.
    """

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return super().render(finite(data), accepted_media_type, renderer_context)


def finite(data):
    """`data` with every float that is not finite replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(value) for value in data]
    return data
