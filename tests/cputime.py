"""CPU seconds per test (pytest plugin, loaded by conftest.py): `--cpu-durations=N` prints the N
tests that used the most CPU (user + system, of the test's process and of the children it
waited for: a command a test starts counts), each split into setup (fixtures), call and
teardown, with the session's totals. Wall time (`--durations`) hides a test that starts
processes on a busy host, and on a loaded CI host what the suite costs is CPU seconds: those
divided by the cores it gets is its wall time there.

    make test MARKS="slow or not slow" PYTEST_ARGS="--cpu-durations=25"
    make test PYTEST_ARGS="--cpu-durations=0 --cpu-log=/tmp/cpu.tsv"   # every test, and a file

Works with pytest-xdist: each worker measures its tests and the numbers travel in the reports
(`user_properties`); the controller prints them.
"""

from __future__ import annotations

import os
import resource
import time

import pytest

_KEY = "cpu_seconds"
_START = pytest.StashKey[tuple]()
_PHASES = pytest.StashKey[dict]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("cpu time")
    group.addoption("--cpu-durations", type=int, default=None, metavar="N",
                    help="print the N tests that used the most CPU seconds (self + waited "
                         "children; N=0: all)")
    group.addoption("--cpu-log", default=None, metavar="FILE",
                    help="write every test's CPU and wall seconds to FILE (TSV)")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _on(config) -> bool:
    return (config.getoption("--cpu-durations") is not None
            or config.getoption("--cpu-log") is not None)


def _measure(item, phase: str):
    if not _on(item.config):
        yield
        return
    cpu, wall = _cpu(), time.perf_counter()
    yield
    phases = item.stash.setdefault(_PHASES, {})
    phases[phase] = (_cpu() - cpu, time.perf_counter() - wall)
    if phase == "teardown":  # the teardown report carries the three phases to the controller
        item.user_properties.append((_KEY, {k: v for k, v in phases.items()}))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _measure(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _measure(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _measure(item, "teardown")


class _Collector:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict]] = []
        self.start_cpu = _cpu()
        self.start_wall = time.perf_counter()

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "teardown":
            return
        for key, value in report.user_properties:
            if key == _KEY:
                self.rows.append((report.nodeid, value))

    def pytest_terminal_summary(self, terminalreporter, config) -> None:
        if not self.rows:
            return
        rows = sorted(self.rows, key=lambda r: -sum(c for c, _ in r[1].values()))
        total = sum(sum(c for c, _ in p.values()) for _, p in rows)
        n = config.getoption("--cpu-durations")
        tr = terminalreporter
        if n is not None:
            shown = rows if n == 0 else rows[:n]
            tr.write_sep("=", f"CPU seconds per test (self + children; top {len(shown)} of "
                              f"{len(rows)})")
            tr.write_line(f"{'cpu':>8} {'setup':>7} {'call':>7} {'wall':>7}  test")
            for nodeid, p in shown:
                cpu = sum(c for c, _ in p.values())
                wall = sum(w for _, w in p.values())
                tr.write_line(f"{cpu:8.1f} {p.get('setup', (0, 0))[0]:7.1f} "
                              f"{p.get('call', (0, 0))[0]:7.1f} {wall:7.1f}  {nodeid}")
        tr.write_line(f"CPU seconds in tests: {total:.0f} over {len(rows)} tests; the whole "
                      f"session (this process, its finished workers and their children) "
                      f"{_cpu() - self.start_cpu:.0f}; wall "
                      f"{time.perf_counter() - self.start_wall:.0f} s; load "
                      f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        path = config.getoption("--cpu-log")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write("cpu\tsetup_cpu\tcall_cpu\tteardown_cpu\twall\ttest\n")
                for nodeid, p in rows:
                    cpu = sum(c for c, _ in p.values())
                    wall = sum(w for _, w in p.values())
                    f.write(f"{cpu:.2f}\t" + "\t".join(f"{p.get(k, (0, 0))[0]:.2f}" for k in
                                                       ("setup", "call", "teardown"))
                            + f"\t{wall:.2f}\t{nodeid}\n")


def pytest_configure(config) -> None:
    if _on(config) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Collector(), "ids-cpu-collector")
