import pytest

from worker.backoff import Backoff


def test_delays_double_up_to_the_maximum() -> None:
    backoff = Backoff(0.2, 1.0, random_factor=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.attempt == 5


def test_jitter_scales_each_delay_between_half_and_all_of_it() -> None:
    backoff = Backoff(1.0, 8.0)
    for expected in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert expected / 2 <= backoff.next_delay() <= expected


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.5, 10.0, random_factor=lambda: 1.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_many_failures_never_overflow() -> None:
    backoff = Backoff(0.1, 3.0, random_factor=lambda: 1.0)
    for _ in range(2000):
        delay = backoff.next_delay()
    assert delay == 3.0


def test_non_positive_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(0, 1)
