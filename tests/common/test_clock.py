"""common.clock: the one clock that every service reads, and that tests move with time-machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from common import clock


def test_the_clock_is_aware_utc_and_moves_with_the_test(time_machine) -> None:
    moment = datetime(2031, 2, 28, 23, 59, 30, tzinfo=UTC)
    time_machine.move_to(moment, tick=False)

    assert clock.now() == moment
    assert clock.now().tzinfo is not None and clock.now().utcoffset() == timedelta(0)
    assert clock.today() == date(2031, 2, 28)
    time_machine.shift(timedelta(seconds=45))
    assert clock.today() == date(2031, 3, 1)
