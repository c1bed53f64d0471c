"""Progress of a long loop, visible with or without a terminal.

On a terminal it is a tqdm bar. Without one (SLURM logs, `> log 2>&1`, CI) a bar prints nothing
useful, so instead one line goes to stderr every `every` seconds, and one when the loop closes:

    generate: 120/400 rows (30%), 4.0 rows/s, 512 tok/s, ETA 1m10s, accept=0.81
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator, Sized

_now = time.monotonic  # tests replace it to drive the clock


class Progress:
    """Count `update`s of a loop of `total` items (None: unknown) of `unit` (e.g. "row").

    `initial`: items already done before this invocation (a resumed run); rates and the ETA count
    only the items done since. `enabled=False` shows nothing (e.g. on ranks other than 0).
    """

    def __init__(
        self,
        desc: str,
        total: int | None,
        unit: str,
        every: float = 30.0,
        *,
        initial: int = 0,
        enabled: bool = True,
    ):
        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.done, self.tokens, self._initial = initial, 0, initial
        self._start = self._last = _now()
        self._postfix: dict[str, object] = {}
        self._closed = False
        self._bar = None
        self._lines = enabled and not sys.stderr.isatty()
        if enabled and not self._lines:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit)

    def update(self, n: int = 1, tokens: int = 0) -> None:
        """`n` more items done, with `tokens` more tokens processed (for tokens/s)."""
        self.done += n
        self.tokens += tokens
        now = _now()
        if self._bar is not None:
            if self.tokens:
                tok_s = self.tokens / max(now - self._start, 1e-9)
                self._bar.set_postfix({"tok_s": f"{tok_s:.0f}"} | self._postfix, refresh=False)
            self._bar.update(n)
        elif self._lines and now - self._last >= self.every:
            self._last = now
            self._print(self.line(now))

    def postfix(self, **values) -> None:
        """Extra figures shown after the counts (e.g. `accept=0.81`, `loss=1.23`)."""
        self._postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=False)

    def line(self, now: float | None = None) -> str:
        """The status line: done/total, rate, tokens/s, ETA and the postfix figures."""
        now = _now() if now is None else now
        extra = [f"{k}={v}" for k, v in self._postfix.items()]
        return f"{self.desc}: " + ", ".join([*self._fields(now).values(), *extra])

    def _fields(self, now: float) -> dict[str, str]:
        seconds = now - self._start
        rate = (self.done - self._initial) / seconds if seconds > 0 else 0.0
        count = f"{self.done} {self.unit}s"
        if self.total:
            count = f"{self.done}/{self.total} {self.unit}s ({100 * self.done / self.total:.0f}%)"
        fields = {"count": count}
        if seconds > 0:  # no rates before any time has passed
            fields["rate"] = f"{rate:.3g} {self.unit}s/s"
            if self.tokens:
                fields["tok_s"] = f"{self.tokens / seconds:.0f} tok/s"
        if self.total and rate > 0 and self.done < self.total:
            fields["eta"] = "ETA " + duration((self.total - self.done) / rate)
        return fields

    def close(self) -> None:
        """End the bar, or print the final line (with the elapsed time); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._lines:
            now = _now()
            self._print(f"{self.line(now)}, done in {duration(now - self._start)}")

    def _print(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable, desc: str, unit: str, *, enabled: bool = True) -> Iterator:
    """`items`, one `Progress` step each (total from `len()` when it has one), like `tqdm(items)`."""
    total = len(items) if isinstance(items, Sized) else None
    with Progress(desc, total, unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()


def duration(seconds: float) -> str:
    """`seconds` as `1h02m`, `3m10s` or `12s` (rounded up, so an ETA is never 0s too early)."""
    s = math.ceil(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
