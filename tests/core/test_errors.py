"""service.core.errors: domain refusals carry a code, a message and field details; the
envelope lists details only when there are some."""

from __future__ import annotations

from service.core.errors import Conflict, InvalidInput, NotFound, envelope


def test_each_refusal_has_its_code_and_may_override_it() -> None:
    assert NotFound("gone").code == "not_found"
    assert Conflict("taken", code="email_taken").code == "email_taken"


def test_an_input_error_names_the_field() -> None:
    error = InvalidInput.at(["query", "cursor"], "Bad cursor.", code="invalid_cursor", why="no")
    assert error.code == "invalid_cursor" and error.message == "Bad cursor."
    assert error.details == [{"loc": ["query", "cursor"], "message": "no", "type": "value_error"}]


def test_the_envelope_omits_empty_details() -> None:
    assert envelope("not_found", "gone", "rid") == {
        "error": {"code": "not_found", "message": "gone", "request_id": "rid"}
    }
    assert "details" in envelope("x", "y", "rid", [{"a": 1}])["error"]
