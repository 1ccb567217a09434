"""service.web.endpoint: a rate limit per credential needs authentication, at import time; one
rule for every query string."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from werkzeug.datastructures import MultiDict

from service.core.errors import InvalidInput
from service.domain.schemas import ArticleListQuery
from service.web.endpoint import Answer, Link, endpoint, query_values


def test_a_write_limit_without_auth_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="needs auth"):
        endpoint(rate="write")


class Repeatable(BaseModel):
    ids: list[int] | None = None
    labels: list[str] = []
    one: str | None = None


def refused(model: type[BaseModel] | None, pairs: list[tuple[str, str]]) -> list[object]:
    with pytest.raises(InvalidInput) as error:
        query_values(model, MultiDict(pairs))
    assert error.value.code == "validation_error"
    assert error.value.details
    return [detail["loc"] for detail in error.value.details]


def test_declared_parameters_pass_single_values_and_lists() -> None:
    assert query_values(ArticleListQuery, MultiDict([("tag", "a"), ("page", "2")])) == {
        "tag": "a",
        "page": "2",
    }
    pairs = [("ids", "1"), ("ids", "2"), ("labels", "x"), ("one", "y")]
    assert query_values(Repeatable, MultiDict(pairs)) == {
        "ids": ["1", "2"],
        "labels": ["x"],
        "one": "y",
    }
    assert query_values(None, MultiDict()) == {}


def test_an_unknown_parameter_is_refused_by_name() -> None:
    assert refused(ArticleListQuery, [("foo", "bar")]) == [["query", "foo"]]
    # An endpoint without parameters refuses every one.
    assert refused(None, [("limit", "3")]) == [["query", "limit"]]


def test_a_repeated_single_value_parameter_is_refused() -> None:
    assert refused(ArticleListQuery, [("tag", "a"), ("tag", "b")]) == [["query", "tag"]]
    assert refused(Repeatable, [("one", "a"), ("one", "a")]) == [["query", "one"]]


def test_every_problem_is_listed_and_named_in_the_message() -> None:
    with pytest.raises(InvalidInput) as error:
        query_values(ArticleListQuery, MultiDict([("tag", "a"), ("tag", "b"), ("foo", "1")]))
    assert error.value.details == [
        {
            "loc": ["query", "tag"],
            "message": "given more than once; it takes one value",
            "type": "repeated_parameter",
        },
        {"loc": ["query", "foo"], "message": "unknown parameter", "type": "extra_forbidden"},
    ]
    assert "'foo'" in error.value.message and "'tag'" in error.value.message


async def _view() -> None:
    """A view."""


def test_the_decorator_records_the_whole_contract() -> None:
    declared = endpoint(
        response=Repeatable,
        cached=True,
        errors=(404,),
        operation_id="get_thing",
        headers=("Location",),
        links={"Next": Link(operation_id="get_thing", parameters={}, description="Again.")},
    )(_view)
    operation = declared.openapi  # type: ignore[attr-defined]
    assert operation.operation_id == "get_thing"
    assert operation.cached and operation.errors == (304, 404, 422)
    assert operation.headers == ("Location",) and set(operation.links) == {"Next"}
    assert endpoint()(_view).openapi.operation_id == "_view"  # type: ignore[attr-defined]


def test_a_probe_ignores_the_query_string_and_declares_no_422() -> None:
    answer = Answer(description="Down", code="not_ready", message="Down.")
    operation = endpoint(extra_query="ignore", answers={503: answer})(_view).openapi  # type: ignore[attr-defined]
    assert operation.errors == (503,) and operation.answers == {503: answer}
    with pytest.raises(ValueError, match="cannot be ignored"):
        endpoint(query=Repeatable, extra_query="ignore")
