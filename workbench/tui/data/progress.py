"""Rate and remaining time of a job, from the progress counts that the UI polls."""

from __future__ import annotations

import datetime
from collections import deque
from dataclasses import dataclass

# Rate is measured over the samples of this many recent seconds, so it follows
# a job whose speed changes (e.g. once its workers have loaded the model).
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class ProgressEstimate:
    """Done and total work items, with the rate (items per second) and seconds left when known."""

    done: int
    total: int | None
    rate: float | None
    remaining: float | None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


class ProgressRate:
    """Estimate a job's rate from (time, done) samples.

    Rate comes from the samples of the last RATE_WINDOW_SECONDS. Until two
    samples differ, for instance right after the app reopens a running job, it
    falls back to the average since the job started.
    """

    def __init__(self, window: float = RATE_WINDOW_SECONDS):
        self.window = window
        self.job_id: int | None = None
        self.samples: deque[tuple[float, int]] = deque()

    def update(
        self,
        job_id: int,
        now: float,
        done: int,
        total: int | None,
        started_seconds_ago: float | None = None,
    ) -> ProgressEstimate:
        """Add a sample and return the estimate.

        Args:
            job_id: The job the sample belongs to; a new id drops older samples.
            now: A monotonic time in seconds.
            done, total: The job's progress counts.
            started_seconds_ago: Seconds since the job started, for the fallback.
        """
        if job_id != self.job_id:
            self.job_id = job_id
            self.samples.clear()
        if self.samples and done < self.samples[-1][1]:
            self.samples.clear()
        if not self.samples or self.samples[-1][1] != done:
            self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()

        rate = None
        first_time, first_done = self.samples[0]
        if len(self.samples) >= 2 and now > first_time and done > first_done:
            rate = (done - first_done) / (now - first_time)
        elif started_seconds_ago and started_seconds_ago > 0 and done > 0:
            rate = done / started_seconds_ago
        remaining = None
        if rate and total is not None:
            remaining = max(0, total - done) / rate
        return ProgressEstimate(done, total, rate, remaining)


def format_duration(seconds: float | None) -> str:
    """Format seconds as 'H:MM:SS', or '--:--' when unknown."""
    if seconds is None:
        return "--:--"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_rate(rate: float | None) -> str:
    """Format a rate in items per second, or per minute when below one a second."""
    if rate is None:
        return "rate --"
    if rate >= 1:
        return f"{rate:.1f}/s"
    return f"{rate * 60:.1f}/min"


def seconds_since(timestamp: str | None, now: datetime.datetime | None = None) -> float | None:
    """Return the seconds from an ISO 8601 timestamp of the store to `now` (default: the clock)."""
    if not timestamp:
        return None
    moment = datetime.datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (now - moment).total_seconds()
