"""The run spec: everything a child process (service replica or load worker) needs.

Settings and LoadSpec live in hopbench.config.settings; they are re-exported here
for the readers of a spec.

The orchestrator writes it as JSON into the run directory; children read it at
start. Pydantic lives here, at the edge; the hot path uses the resolved
``Topology`` and the plain ``Settings`` fields.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from hopbench.config.outdir import atomic_write_text
from hopbench.config.settings import LoadSpec, Settings
from hopbench.config.topology import Edge, Topology

__all__ = ["LoadSpec", "RunSpec", "Settings", "TlsMaterial"]


class TlsMaterial(BaseModel):
    """The run's own certificate authority and the certificate of every HTTP and gRPC
    server of the run (one, naming every host they listen on), as PEM text. Made per
    run (hopbench.run.tls) when an edge sets ``tls``; a throwaway: its key signs
    nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_pem: str
    cert_pem: str
    key_pem: str


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    run_id: str
    topology: dict[str, Any]
    settings: Settings = Settings()
    load: LoadSpec
    # mode -> service -> one "host:port" per replica (http and grpc servers)
    endpoints: dict[str, dict[str, list[str]]] = {}
    kafka_bootstrap: str | None = None
    rabbitmq_url: str | None = None
    redis_url: str | None = None  # a shared cache's Redis (work.cache store redis)
    postgres_url: str | None = None  # with no password, as rabbitmq_url (a service's work.db)
    brokers_wait_s: float = 0.0  # children wait this long for a broker (--brokers-wait)
    tls: TlsMaterial | None = None  # when an edge sets tls

    @cached_property
    def resolved(self) -> Topology:
        return Topology.from_dict(self.topology)

    def for_edge(self, edge: Edge) -> Settings:
        """The settings of one edge: the run's, with the edge's own on top."""
        cache: dict[int, Settings] = self.__dict__.setdefault("_edge_settings", {})
        found = cache.get(edge.index)
        if found is None:
            found = cache[edge.index] = self.settings.with_overrides(edge.settings)
        return found

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.model_dump(mode="json"), indent=2))

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        return cls.model_validate_json(path.read_text())
