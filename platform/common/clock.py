"""The platform's one clock.

Code that decides by time (payout windows and periods, link and key expiry, statement periods, receipt
timestamps, sweeps of stuck jobs) asks `now()` here, never the wall clock of its own. It answers Django's
aware `timezone.now()`, which the model fields' defaults use too, so rows stamped by the database layer
and decisions made by the services always agree.

Tests move this clock with time-machine (`time_machine.travel(...)`): it moves every reading of the
system's real-time clock in the process at once, so a test can never mix a pinned date with today's.
Durations measured inside one process (cache lifetimes, timeouts) use `time.monotonic()`, which no clock
change may move.
"""

from __future__ import annotations

from datetime import date, datetime

from django.utils import timezone


def now() -> datetime:
    """The current moment, timezone-aware (UTC)."""
    return timezone.now()


def today() -> date:
    """The current date in UTC."""
    return now().date()
