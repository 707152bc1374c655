"""Progress on a terminal: a tqdm bar with the rate and an ETA, its total estimated from the
position range when the number of events is not known."""

from __future__ import annotations

import pytest

from repro.progress import Progress


def test_a_terminal_gets_a_bar_with_rate_and_an_estimated_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Progress("replay", span=(0, 1000), terminal=True) as progress:
        progress.update(100, 250)  # a quarter of the positions
        assert progress.total == 400
        progress.update(100, 500)
        assert progress.total == 400
    bar = capsys.readouterr().err
    assert "replay" in bar
    assert "200/400" in bar
    assert "ev/s" in bar


def test_a_known_total_is_kept_and_no_span_means_no_estimate() -> None:
    with Progress("export", 10, terminal=False) as progress:
        progress.update(5, 123)
        assert progress.total == 10
    with Progress("export", terminal=False) as progress:
        progress.update(5, 123)
        assert progress.total is None


def test_the_estimate_never_falls_below_what_is_done() -> None:
    with Progress("replay", span=(0, 100), terminal=False) as progress:
        progress.update(50, 100)  # more events than positions suggest
        progress.update(10, 90)  # a position before the last one seen
        assert progress.total is not None and progress.total >= progress.done
