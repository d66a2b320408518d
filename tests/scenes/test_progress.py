"""Job progress: a plain line every N seconds when the stream is not a terminal, a bar when it is."""

from __future__ import annotations

import io
import re

from scenes.progress import EVERY_ENV, JobProgress, format_duration

LINE = re.compile(r"^job step (\d+)/(\d+)  loss (\d+\.\d{4})  PSNR (\d+\.\d{2})  rays/s ([\d,]+)  ETA (\d+:\d\d:\d\d)$")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, clock, steps=10, seconds_per_step=7.0, **kw):
    with JobProgress("job", steps, stream=stream, clock=clock, **kw) as p:
        for step in range(1, steps + 1):
            clock.now += seconds_per_step
            p.update(step, loss=0.5 / step, psnr=10.0 + step, rays_per_s=12345.6)
    return stream.getvalue().splitlines()


def test_plain_lines_every_n_seconds_with_every_figure_and_a_last_one():
    lines = _run(io.StringIO(), FakeClock(), every_s=30.0)
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    steps = [int(m.group(1)) for m in parsed]
    # first update, then each step at least 30 s (5 steps of 7 s) after the last line, then the end
    assert steps == [1, 6, 10]
    first = parsed[0]
    assert first.group(2) == "10" and first.group(3) == "0.5000" and first.group(4) == "11.00"
    assert first.group(5) == "12,346"
    assert first.group(6) == "0:01:03"  # 9 steps left at 7 s per step
    assert parsed[-1].group(6) == "0:00:00"


def test_the_caller_s_time_budget_caps_the_eta():
    out = io.StringIO()
    clock = FakeClock()
    with JobProgress("job", 1000, stream=out, clock=clock, every_s=30.0) as p:
        clock.now += 1.0
        p.update(1, eta_s=90.0, loss=0.1)
    assert out.getvalue().splitlines()[0].endswith("ETA 0:01:30")  # not 999 s at 1 s per step


def test_every_n_seconds_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "0")
    lines = _run(io.StringIO(), FakeClock(), steps=4)
    assert [int(LINE.match(line).group(1)) for line in lines] == [1, 2, 3, 4]


def test_a_terminal_gets_a_bar_not_lines():
    lines = _run(FakeTerminal(), FakeClock(), every_s=0.0)
    text = "\n".join(lines)
    assert "━" in text and "10/10" in text
    assert not any(LINE.match(line) for line in lines)


def test_disabled_prints_nothing():
    assert _run(io.StringIO(), FakeClock(), every_s=0.0, enabled=False) == []


def test_format_duration():
    assert format_duration(3725.4) == "1:02:05" and format_duration(float("inf")) == "-:--:--"
