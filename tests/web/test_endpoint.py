"""service.web.endpoint: a rate limit per credential needs authentication, at import time."""

from __future__ import annotations

import pytest

from service.web.endpoint import endpoint


def test_a_write_limit_without_auth_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="needs auth"):
        endpoint(rate="write")
