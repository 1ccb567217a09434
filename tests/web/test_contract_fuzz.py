"""The served OpenAPI document against the live server, by schemathesis: every check it has
(server errors, status codes, content types, bodies and headers as documented, negative data
refused, valid data accepted, authentication not ignored, deleted resources gone, ...), on
generated requests to each operation (valid and invalid) and on stateful scenarios that follow
the document's links (create an article, then read, edit, delete it; page on with
``next_cursor``; create an API key, then revoke it).

Two users take turns, so the scenarios also edit and delete articles of another user (403).
Every finding fails the test unless ``ALLOWED`` names it with a reason. Bounded: a few
examples per operation and mode, short scenarios.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import Failure, FailureGroup

from tests.support.api import Account
from tests.support.live import LiveServer

# (check, a piece of the answer's body) -> why that finding is expected: a rule the server
# enforces that JSON Schema cannot state. Anything else a check finds fails the test.
ALLOWED: dict[tuple[str, str], str] = {
    ("positive_data_acceptance", '"code":"invalid_token"'): (
        "A password reset token is valid only if the server issued it (signed, single-use): "
        "a schema-valid made-up token is refused with 400 invalid_token, as documented."
    ),
    ("positive_data_acceptance", '"code":"invalid_cursor"'): (
        "A cursor is opaque: only a next_cursor the server gave is one; a made-up string of "
        "the right length is refused with 422."
    ),
    ("positive_data_acceptance", '"code":"page_too_deep"'): (
        "Offset pages reach the first 10,000 articles: page x per_page beyond that is a 422 "
        "(said in the page parameter's description); a rule between two parameters, which "
        "JSON Schema cannot state."
    ),
    ("positive_data_acceptance", "conflicts with page"): (
        "page and cursor exclude each other (both descriptions say so, both at once is a "
        "422); OpenAPI parameters cannot state that two of them are exclusive."
    ),
    ("positive_data_acceptance", "value is not a valid email address"): (
        "format: email is checked by email-validator, which also refuses addresses the "
        "format's syntax allows: special-use and reserved domains (.test, .invalid, "
        ".localhost), quoted local parts."
    ),
    ("positive_data_acceptance", "The article has changed: its ETag is now"): (
        "If-Match comes from a link (the ETag the create answered); a scenario that updates "
        "or deletes twice sends the second with the ETag the first made stale: 412 is the "
        "documented optimistic concurrency of PATCH and DELETE, not a refusal of valid data."
    ),
    ("positive_data_acceptance", '"type":"search_word_too_short"'): (
        "Each search word needs SEARCH_MIN_PREFIX characters, words being runs of letters and "
        "digits: a rule on the words q splits into, stated in q's description, which a JSON "
        "Schema pattern over the whole string cannot state readably."
    ),
    ("positive_data_acceptance", '"type":"search_too_many_words"'): (
        "At most SEARCH_MAX_TERMS different words in q (stated in its description): a count "
        "of distinct words, which JSON Schema cannot state."
    ),
    ("positive_data_acceptance", "must not contain NUL (U+0000) characters"): (
        "PostgreSQL text cannot hold U+0000: every text input refuses it (422), said in the "
        "error; the schemas leave it out of their patterns to stay readable."
    ),
}


def _allowed(check: str, body: str) -> bool:
    return any(check == name and piece in body for name, piece in ALLOWED)


EXAMPLES_PER_MODE = 8
SCENARIOS = 12
STEPS = 8
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


def _check_name(failure: Failure) -> str:
    return failure.checks[0] if failure.checks else type(failure).__name__


class Findings:
    """The failures seen, each once by (check, operation) and title."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], str] = {}

    def record(self, case: Case[Any], error: BaseException, response: Any) -> None:
        failures = error.exceptions if isinstance(error, FailureGroup) else (error,)
        for failure in failures:
            if not isinstance(failure, Failure):
                raise failure
            key = (_check_name(failure), case.operation.label, failure.title)
            if not _allowed(key[0], response.text):
                sent = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"
                got = f"{response.status_code} {response.text[:300]}"
                self.seen.setdefault(
                    key, f"{failure.message[:400]}\nsent: {sent[:400]}\ngot: {got}"
                )

    def report(self) -> str:
        return "\n\n".join(
            f"{check} on {operation}: {title}\n{message}"
            for (check, operation, title), message in sorted(self.seen.items())
        )


def _users(live: LiveServer) -> list[Account]:
    """Two users, each with a session and an API key (made with plain HTTP: set-up only)."""
    users: list[Account] = []
    with httpx.Client(base_url=live.url, timeout=30) as http:
        for name in ("Fuzz One", "Fuzz Two"):
            email = f"fuzz-{name[-3:].lower()}-{id(users)}@example.com"
            password = "correct horse battery"
            made = http.post(
                "/api/v1/users", json={"email": email, "password": password, "name": name}
            )
            assert made.status_code == 201, made.text
            token = http.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            ).json()["token"]
            key = http.post(
                "/api/v1/api-keys",
                json={"name": "fuzz"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()["key"]
            users.append(Account(made.json()["id"], email, name, token, key))
    return users


def _credentials(live: LiveServer, case: Case[Any], user: Account) -> dict[str, str]:
    """What ``case`` presents: nothing where no credential is declared, a session where only
    a session is accepted (a fresh one for logout, which ends it), else the API key."""
    security = case.operation.definition.raw.get("security")
    if not security:
        return {}
    schemes = {name for requirement in security for name in requirement}
    if "apiKey" in schemes:
        return {"API-Key": user.key}
    if case.operation.label == "POST /api/v1/auth/logout":
        with httpx.Client(base_url=live.url, timeout=30) as http:
            return {"Authorization": f"Bearer {_fresh_session(http, user)}"}
    return {"Authorization": f"Bearer {user.token}"}


def _fresh_session(http: httpx.Client, user: Account) -> str:
    response = http.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "correct horse battery"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_every_schemathesis_check_holds_on_generated_and_linked_requests(
    live: LiveServer,
) -> None:
    schema = schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json")
    users = _users(live)
    turns = itertools.cycle(users)
    findings = Findings()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 19

    def call(case: Case[Any]) -> None:
        headers = _credentials(live, case, next(turns))
        response = case.call(headers=headers, base_url=live.url)
        try:
            case.validate_response(
                response, headers=headers, transport_kwargs={"base_url": live.url}
            )
        except (Failure, FailureGroup) as error:
            findings.record(case, error, response)

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_MODE, **SETTINGS)
            def generated(case: Case[Any]) -> None:
                call(case)

            try:
                generated()
            except Unsatisfiable:
                # No invalid request exists when every input takes any value (the probes,
                # GET /articles/popular, whose only input is If-None-Match).
                assert mode is GenerationMode.NEGATIVE, operation.label

    # Stateful: scenarios that follow the links, each call made by the next user in turn.
    base = schema.as_state_machine()

    class Scenarios(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"headers": _credentials(live, case, next(turns)), "base_url": live.url}

        def validate_response(
            self, response: Any, case: Case[Any], additional_checks: Any = None, **kwargs: Any
        ) -> None:
            try:
                super().validate_response(response, case, additional_checks, **kwargs)
            except (Failure, FailureGroup) as error:
                findings.record(case, error, response)

    Scenarios.run(settings=settings(max_examples=SCENARIOS, stateful_step_count=STEPS, **SETTINGS))
    assert not findings.seen, findings.report()
