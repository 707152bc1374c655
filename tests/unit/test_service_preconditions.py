"""Entity tags: `If-Match` compares strongly, `If-None-Match` weakly; a malformed header matches
nothing."""

from __future__ import annotations

import pytest

from service.preconditions import etag, parse


def test_the_etag_of_a_revision_is_its_number_quoted() -> None:
    assert etag(12) == '"12"'


def test_an_absent_header_is_no_condition() -> None:
    assert parse(None) is None


@pytest.mark.parametrize(
    ("header", "strong", "weak"),
    [
        ('"3"', True, True),
        ('W/"3"', False, True),
        ('"1", "3"', True, True),
        (' "1" ,W/"3" ', False, True),
        ("*", True, True),
        ('"4"', False, False),
        ("3", False, False),
        ('"03"', False, False),
        ('"3" "4"', False, False),
        ('"a", "3"', True, True),
        ("", False, False),
        ('"3', False, False),
    ],
)
def test_which_headers_match_revision_3(header: str, strong: bool, weak: bool) -> None:
    condition = parse(header)
    assert condition is not None
    assert condition.matches_strongly(3) is strong
    assert condition.matches_weakly(3) is weak
