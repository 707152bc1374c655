"""SIGTERM stops an offline tool as SIGINT does (`repro.interrupts`): an `Interrupted` naming it,
held off a commit, never raised inside a database driver's protocol code."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from repro import interrupts
from repro.interrupts import Hold, Interrupted, stopped_by_signals

# Long enough for a signal sent now to arrive; the wait ends as soon as it does.
SIGNAL_WAIT = 5.0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_raises_interrupted_naming_it_and_the_handlers_are_restored(
    signum: signal.Signals,
) -> None:
    before = signal.getsignal(signum)
    with stopped_by_signals(), pytest.raises(Interrupted) as stopped:
        signal.raise_signal(signum)
        time.sleep(SIGNAL_WAIT)
    assert stopped.value.signum == signum
    assert str(stopped.value) == f"interrupted by {signum.name}"
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert signal.getsignal(signum) is before


def test_a_signal_during_a_hold_is_kept_for_the_caller_not_raised() -> None:
    hold = Hold()
    with stopped_by_signals():
        hold.hold()
        try:
            signal.raise_signal(signal.SIGTERM)
            time.sleep(0.1)  # the handler has run by now: nothing was raised
        finally:
            hold.release()
    assert hold.signum == signal.SIGTERM


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stopped_by_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def protocol_frame() -> tuple[Iterator[None], FrameType]:
    """A suspended generator of a module named as psycopg's are, and its frame: where psycopg
    is between sending a statement and reading its answer."""
    namespace: dict[str, object] = {"__name__": "psycopg._protocol_double"}
    exec("def step():\n    yield\n", namespace)
    generator = namespace["step"]()  # type: ignore[operator]
    next(generator)
    return generator, generator.gi_frame


def test_a_signal_inside_a_drivers_protocol_code_is_delivered_again_outside_it() -> None:
    """Raised there, the driver could not cancel the statement and read the rest of its answer
    (its connection would stay busy and the rollback fail); delivered again a moment later, it
    lands where the driver waits, or here."""
    _generator, frame = protocol_frame()
    with stopped_by_signals():
        try:
            interrupts._handle(signal.SIGTERM, frame)
        except Interrupted:
            pytest.fail("raised inside the driver's protocol code")
        with pytest.raises(Interrupted) as stopped:
            time.sleep(SIGNAL_WAIT)
    assert stopped.value.signum == signal.SIGTERM
