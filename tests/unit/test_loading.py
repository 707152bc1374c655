"""Code named on the command line (`--check`, `--projection`): found by module or by file, and
refused with a reason when it is not there or not what was asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.checks import CheckError, load_check
from repro.loading import LoadError, load_object, load_projection, qualified_name
from tests.fixtures import planted
from worker.projection import Projection


def test_a_module_attribute_is_loaded() -> None:
    assert load_object("tests.fixtures.planted:has_empty_name") is planted.has_empty_name
    assert load_projection("tests.fixtures.planted:EmptiesCommaNames") is planted.EmptiesCommaNames
    assert load_projection("worker.projection:Projection") is Projection


def test_a_file_is_loaded_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "fix.py"
    path.write_text(
        "from worker.projection import Projection\n\nclass Fixed(Projection):\n    pass\n"
    )
    fixed = load_projection(f"{path}:Fixed")
    assert issubclass(fixed, Projection)
    assert fixed.__name__ == "Fixed"
    assert load_projection(f"{path}:Fixed") is fixed  # loaded once


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no_colon", "is not module:name"),
        ("tests.fixtures.planted:", "is not module:name"),
        ("no_such_module_here:f", "cannot import no_such_module_here"),
        ("tests.fixtures.planted:nope", "has no 'nope'"),
        ("missing/file.py:f", "is not a file"),
    ],
)
def test_what_cannot_be_loaded_is_refused_with_a_reason(spec: str, reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        load_object(spec)


def test_a_projection_must_be_a_subclass_of_the_workers() -> None:
    with pytest.raises(LoadError, match=r"is not a subclass of worker\.projection\.Projection"):
        load_projection("tests.fixtures.planted:has_empty_name")


def test_a_check_must_be_callable() -> None:
    with pytest.raises(CheckError, match="is not a function"):
        load_check("tests.fixtures.planted:EMPTY_NAMES")


def test_a_file_that_fails_to_load_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(LoadError, match=r"loading .*broken\.py failed: RuntimeError: boom"):
        load_object(f"{path}:x")


def test_the_qualified_name_is_the_one_to_give_back() -> None:
    assert qualified_name(planted.EmptiesCommaNames) == "tests.fixtures.planted:EmptiesCommaNames"
