"""What the kernel knows about a process and about the host, read from /proc for the
per-second samples of a run (hopbench.run.sampling): pure readers, no run logic.

- a process's CPU seconds (user + system, every thread) and scheduler state, from
  ``/proc/PID/stat``: readable while the process is frozen or too busy to answer;
  and how often its main thread went to sleep (``voluntary_ctxt_switches`` in
  ``/proc/PID/status``): an event loop that never sleeps always had work waiting,
  whatever share of a core a crowded host gave it;
- how long its main thread (the event loop) has waited, runnable, for a CPU
  (``/proc/PID/schedstat``, the scheduler's ``run_delay``): a process that was late
  for want of a CPU, not for work of its own, shows it here;
- the host's CPU time busy and in total (``/proc/stat``), the entities runnable right
  now (``/proc/loadavg``: its ``running/total`` field) and, where the kernel has PSI,
  the share of the last 10 s in which some task waited for a CPU
  (``/proc/pressure/cpu``, ``some avg10``).

Written by hand rather than with psutil: four small files, one field each, read once
a second; psutil would read the same files behind a larger interface. Anything that
cannot be read (a process that exited, a kernel without PSI) is None, never 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcStat:
    """One process, now."""

    cpu_s: float  # user + system, every thread, since it started
    state: str  # R running, S sleeping, D waiting on I/O, T stopped, Z exited, ...
    sleeps: int  # times its main thread gave up the CPU to wait, since it started
    # seconds its main thread was runnable but waiting for a CPU, since it started;
    # None where the kernel keeps no schedstat
    waited_s: float | None = None


@dataclass(frozen=True, slots=True)
class HostStat:
    """The host, now."""

    busy_s: float  # CPU seconds spent not idle, every core together, since boot
    total_s: float  # every CPU second since boot (busy + idle + iowait)
    runnable: int  # scheduling entities running or ready to run right now
    cpu_pressure: float | None  # % of the last 10 s some task waited for a CPU (PSI)


def proc_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """A process's CPU and state, or None when it is gone (or not ours to read)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    # the command name, in parentheses, may hold spaces: split after its last ")"
    fields = text.rsplit(")", 1)[1].split()
    _, found, rest = status.partition("\nvoluntary_ctxt_switches:")
    return ProcStat(
        cpu_s=(int(fields[11]) + int(fields[12])) / _TICKS,
        state=fields[0],
        sleeps=int(rest.split(None, 1)[0]) if found else 0,
        waited_s=run_delay_s(pid, proc),
    )


def run_delay_s(pid: int, proc: Path = PROC) -> float | None:
    """Seconds the process's main thread has spent runnable, waiting for a CPU
    (``/proc/PID/schedstat``: on-CPU ns, run-queue ns, time slices); None if unread."""
    try:
        fields = (proc / str(pid) / "schedstat").read_text().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def host_stat(proc: Path = PROC) -> HostStat:
    """The host's CPU time, run queue and CPU pressure."""
    cpu = (proc / "stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(v) for v in cpu[:8]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    running = (proc / "loadavg").read_text().split()[3].split("/")[0]
    return HostStat(
        busy_s=(sum(ticks) - idle) / _TICKS,
        total_s=sum(ticks) / _TICKS,
        runnable=int(running),
        cpu_pressure=cpu_pressure(proc),
    )


def cpu_pressure(proc: Path = PROC) -> float | None:
    """PSI's ``some avg10`` for the CPU, or None where the kernel has no PSI."""
    try:
        first = (proc / "pressure" / "cpu").read_text().split("\n", 1)[0]
    except OSError:
        return None
    for field in first.split():
        key, _, value = field.partition("=")
        if key == "avg10":
            return float(value)
    return None


def cpu_share(before_s: float, after_s: float, elapsed_s: float) -> float:
    """CPU seconds used over a stretch of wall time: 1.0 is one core fully busy."""
    return max(after_s - before_s, 0.0) / elapsed_s if elapsed_s > 0 else 0.0


def find_pids(matches: Callable[[str], bool], proc: Path = PROC) -> list[int]:
    """The processes whose command line (arguments joined by spaces) matches."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if argv and matches(argv):
            found.append(int(entry.name))
    return sorted(found)
