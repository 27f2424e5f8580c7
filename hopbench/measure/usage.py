"""What a process costs: CPU seconds and peak memory, of ourselves or of another
process by pid (from /proc), and the host it runs on."""

from __future__ import annotations

import os
import platform
import resource
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """A process's CPU seconds (user + system) and peak RSS so far."""

    cpu_s: float
    peak_rss_mb: float


def usage() -> Usage:
    """CPU seconds (user + system) and peak RSS of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(cpu_s=ru.ru_utime + ru.ru_stime, peak_rss_mb=ru.ru_maxrss / 1024)


def machine() -> dict[str, Any]:
    """The host a process runs on, as results record it."""
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def proc_usage(pid: int) -> Usage | None:
    """The same, read from /proc for a process that is not ours to ask (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), "0")
    return Usage(cpu_s=(int(stat[11]) + int(stat[12])) / ticks, peak_rss_mb=int(hwm) / 1024)
