"""Progress of a job: done and total, rate, ETA, a text progress bar, throttled writes.

Does not import TensorFlow; `svd-workbench status` formats stored progress with it.
"""

from __future__ import annotations

import collections
import time
from typing import TextIO

# The job row is written at most this often while results arrive...
STORE_INTERVAL_S = 0.25
# ...and at least this often as a heartbeat while none arrive. The store counts
# a job as stale after two minutes without one.
HEARTBEAT_INTERVAL_S = 5.0
# The progress line is redrawn at most this often on a terminal...
TTY_INTERVAL_S = 0.5
# ...and a new line is printed at most this often to a file or pipe.
PLAIN_INTERVAL_S = 10.0
# The rate is measured over the results of this many recent seconds.
RATE_WINDOW_S = 60.0
BAR_WIDTH = 24


def format_duration(seconds: float | None) -> str:
    """Format seconds as 'H:MM:SS' or 'M:SS'; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_rate(rate: float | None) -> str:
    """Format a rate in evaluations per second, or per minute below one per second."""
    if rate is None or rate <= 0:
        return "? eval/s"
    if rate < 1:
        return f"{rate * 60:.1f} eval/min"
    return f"{rate:.2f} eval/s"


def progress_line(done: int, total: int | None, rate: float | None, eta: float | None) -> str:
    """Return one line such as '[######------]  12/40  30%  1.80 eval/s  ETA 0:15'."""
    if not total:
        return f"{done} done  {format_rate(rate)}"
    fraction = min(1.0, done / total)
    filled = int(round(fraction * BAR_WIDTH))
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    width = len(str(total))
    return f"[{bar}] {done:>{width}}/{total}  {fraction:4.0%}  {format_rate(rate)}  ETA {format_duration(eta)}"


class Progress:
    """Count finished tasks, and report them to the job row and to a stream, throttled.

    Args:
        total: Number of tasks of this run.
        stream: Where the progress line goes (e.g. sys.stderr); None for none.
            On a terminal the line is redrawn in place; elsewhere a new line is
            written every PLAIN_INTERVAL_S seconds.
        write: Called as write(done, total) to record progress and a heartbeat,
            e.g. a bound `Store.update_job_progress` for one job; None for none.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, total: int, stream: TextIO | None = None, write=None, clock=time.monotonic):
        self.total = total
        self.done = 0
        self.stream = stream
        self.write = write
        self.clock = clock
        self.started = clock()
        # (time, done) at each result. The rate starts at the first result, so the
        # workers' start-up (importing TensorFlow, loading the model) does not count.
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.is_tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._written = (None, -1)  # (time, done) of the last store write
        self._printed_at: float | None = None
        self._line_open = False

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW_S:
            self.samples.popleft()

    def rate(self) -> float | None:
        """Finished tasks per second over the last RATE_WINDOW_S seconds; None before the second result."""
        if len(self.samples) < 2:
            return None
        (first_time, first_done), (last_time, last_done) = self.samples[0], self.samples[-1]
        if last_done == first_done or last_time <= first_time:
            return None
        return (last_done - first_done) / (last_time - first_time)

    def eta(self) -> float | None:
        """Estimated seconds left at the current rate; None while the rate is unknown."""
        rate = self.rate()
        if rate is None:
            return None
        return max(0, self.total - self.done) / rate

    def line(self) -> str:
        return progress_line(self.done, self.total, self.rate(), self.eta())

    def tick(self, force: bool = False) -> None:
        """Write the job row and redraw the line if their intervals have passed (always if `force`)."""
        now = self.clock()
        if self.write is not None:
            last_time, last_done = self._written
            changed = self.done != last_done
            due = last_time is None or now - last_time >= (STORE_INTERVAL_S if changed else HEARTBEAT_INTERVAL_S)
            if force or due:
                self.write(self.done, self.total)
                self._written = (now, self.done)
        if self.stream is not None:
            interval = TTY_INTERVAL_S if self.is_tty else PLAIN_INTERVAL_S
            if force or self._printed_at is None or now - self._printed_at >= interval:
                self._print(self.line())
                self._printed_at = now

    def _print(self, text: str) -> None:
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + text)
            self._line_open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line of text without breaking the progress line."""
        if self.stream is None:
            return
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Write the final counts and end the progress line."""
        self.tick(force=True)
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False
