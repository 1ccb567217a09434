"""URL converters: ``<id:name>`` for every id in a path."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter, Map

from service.core.types import MAX_ID


class IdConverter(BaseConverter):
    """``<id:name>``: a positive bigint. Any run of digits matches the route, so a number that
    cannot be an id (0, or beyond ``MAX_ID``) is a 404 for every method, as an id that does not
    exist is; a route that did not match would answer 405 to a method the path's other routes
    take. Anything but ASCII digits is no route."""

    regex = "[0-9]+"
    weight = 50
    part_isolating = True

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map)

    def to_python(self, value: str) -> int:
        # Length first: int() of thousands of digits is refused (and slow).
        if len(value) > len(str(MAX_ID)) or not 1 <= int(value) <= MAX_ID:
            # Raised while routing: Flask keeps it as the request's routing exception.
            raise NotFound(f"Nothing has the id {value}: ids run from 1 to {MAX_ID}.")
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))
