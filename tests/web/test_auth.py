"""service.web.auth: one credential per request; a credential that fails fails the request,
whatever else is presented."""

from __future__ import annotations

import httpx
import pytest

from service.core.errors import Unauthenticated
from service.web.auth import credential_from
from tests.support.api import account


def test_the_credential_of_either_header() -> None:
    assert credential_from("nd_key", None) == "nd_key"
    assert credential_from(None, "Bearer nds_token") == "nds_token"
    assert credential_from(None, "bearer  nds_token ") == "nds_token"
    assert credential_from(None, None) is None


@pytest.mark.parametrize(
    ("api_key", "authorization"),
    [
        ("nd_key", "Bearer nds_token"),  # two credentials, whatever each holds
        ("", None),  # an empty API-Key header
        (None, "Basic dXNlcjpwYXNz"),  # a scheme this API does not accept
        (None, "Bearer "),
        ("", "Bearer nds_token"),
    ],
)
def test_two_or_unusable_credentials_are_refused(
    api_key: str | None, authorization: str | None
) -> None:
    with pytest.raises(Unauthenticated):
        credential_from(api_key, authorization)


async def test_a_failing_credential_fails_the_request_whatever_the_other_header(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    garbage_key = "nd_" + "A" * 48
    combinations = [
        {"Authorization": "Bearer garbage", "API-Key": ann.key},
        {"API-Key": ann.key, "Authorization": "Bearer garbage"},
        {"Authorization": ann.session["Authorization"], "API-Key": garbage_key},
        {"API-Key": "", "Authorization": ann.session["Authorization"]},
        {"Authorization": "Basic dXNlcjpwYXNz", "API-Key": ann.key},
        # Two valid credentials are refused too: the rule is one credential per request.
        {**ann.api_key, **ann.session},
    ]
    for headers in combinations:
        for method, path in (("GET", "/api/v1/users/me"), ("GET", "/api/v1/api-keys")):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (headers, path)
            assert response.json()["error"]["code"] == "unauthorized"
            assert "www-authenticate" in response.headers
        created = await client.post(
            "/api/v1/articles", json={"title": "t", "content": "c"}, headers=headers
        )
        assert created.status_code == 401, headers
    # Each valid credential alone still works.
    for headers in (ann.api_key, ann.session):
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
