"""URL converters: ``<id:name>`` for every id in a path."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter, Map

from service.core.types import MAX_ID


class IdConverter(IntegerConverter):
    """``<id:name>``: a positive bigint; anything else is no route (404), never a 500."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)
