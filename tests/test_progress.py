"""Progress: a tqdm bar on a terminal, timed status lines without one."""

from __future__ import annotations

import io

import pytest

from mixsd import progress
from mixsd.progress import Progress, duration


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress, "_now", c)
    return c


def test_lines_every_interval_with_rate_tokens_and_eta(clock, capsys):
    with Progress("generate", 400, "row", every=30.0) as p:
        p.update(10, tokens=500)  # t=0: within the interval, nothing printed
        clock.t += 29.0
        p.update(50, tokens=2400)  # 29 s: still nothing
        assert capsys.readouterr().err == ""
        clock.t += 1.0
        p.postfix(accept="0.81")
        p.update(60, tokens=3100)  # 30 s: 120 rows, 6000 tokens
        clock.t += 10.0
        p.update(1)  # 40 s since start but 10 s since the last line: nothing
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "generate: 120/400 rows (30%), 4 rows/s, 200 tok/s, ETA 1m10s, accept=0.81"
    # The closing line: 121 rows in 40 s, 279 still to go.
    assert lines[1] == (
        "generate: 121/400 rows (30%), 3.02 rows/s, 150 tok/s, ETA 1m33s, accept=0.81, done in 40s"
    )
    assert len(lines) == 2


def test_unknown_total_resume_and_disabled(clock, capsys):
    p = Progress("train", None, "step", every=0.0, initial=100)
    clock.t += 5.0
    p.update(10)  # the rate counts only the 10 steps of this invocation
    assert capsys.readouterr().err == "train: 110 steps, 2 steps/s\n"
    p.close()
    p.close()  # idempotent: one closing line
    assert capsys.readouterr().err == "train: 110 steps, 2 steps/s, done in 5s\n"
    with Progress("fisher", 3, "ex", every=0.0, enabled=False) as q:
        q.update(3)
    assert capsys.readouterr().err == ""


def test_terminal_gets_a_bar_not_lines(clock, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    with Progress("evaluate", 4, "model", every=0.0) as p:
        p.update(4, tokens=8)
    text = err.getvalue()
    assert "evaluate: 100%" in text and "4/4" in text  # tqdm's bar
    assert "models/s," not in text  # not the status line


def test_duration():
    assert [duration(s) for s in (0, 11.2, 190, 3720)] == ["0s", "12s", "3m10s", "1h02m"]


def test_track_counts_the_items_of_an_iterable(clock, capsys):
    def slow(n):
        for i in range(n):
            clock.t += 20.0
            yield i

    assert list(progress.track(slow(3), "nll set", "row")) == [0, 1, 2]
    assert capsys.readouterr().err.splitlines() == [
        "nll set: 2 rows, 0.05 rows/s",  # the first line once 30 s have passed
        "nll set: 3 rows, 0.05 rows/s, done in 1m00s",
    ]
    every = [0.0] * 4
    assert list(progress.track(every, "drift", "model")) == every
    assert capsys.readouterr().err == "drift: 4/4 models (100%), done in 0s\n"  # a list: a total
