"""What a transport knows about its run: who it serves, the graph, and where things are.

A transport gets this, never the run spec: its process's identity (run, service or
``loadgen``, replica or load worker index), the resolved topology (for its in- and
out-edges and their targets), the HTTP and gRPC endpoints, the brokers' addresses,
the run's settings and its load (to reject impossible envelopes).
``TransportContext.of`` builds it from a run spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hopbench.config.runspec import RunSpec
from hopbench.config.secrets import restore_password
from hopbench.config.settings import LoadSpec, Settings
from hopbench.config.topology import Edge, Topology

# mode -> service -> one "host:port" per replica (http and grpc servers)
Endpoints = Mapping[str, Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class TransportContext:
    run_id: str
    service: str  # a service name, or "loadgen"
    replica: int  # the replica index, or the load worker index
    topology: Topology
    settings: Settings = field(default_factory=Settings)
    endpoints: Endpoints = field(default_factory=dict)
    kafka_bootstrap: str | None = None
    rabbitmq_url: str | None = None
    listen: str | None = None  # host to bind servers to; None: the endpoint's own host
    ports: Mapping[str, int] | None = None  # an agent's own data port per mode, not the spec's
    brokers_wait_s: float = 0.0  # how long to wait for a broker before connecting (--brokers-wait)
    load: LoadSpec | None = None  # the run's load: what a received envelope can be
    _edge_settings: dict[int, Settings] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def of(
        cls,
        spec: RunSpec,
        service: str,
        replica: int,
        listen: str | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> TransportContext:
        """The context of one process (service replica or load worker) of a run. The
        spec's RabbitMQ URL has no password: it comes from this process's environment
        (hopbench.config.secrets); ConfigError when it is not there."""
        url = None if spec.rabbitmq_url is None else restore_password(spec.rabbitmq_url)
        return cls(
            run_id=spec.run_id,
            service=service,
            replica=replica,
            topology=spec.resolved,
            settings=spec.settings,
            endpoints=spec.endpoints,
            kafka_bootstrap=spec.kafka_bootstrap,
            rabbitmq_url=url,
            listen=listen,
            ports=ports,
            brokers_wait_s=spec.brokers_wait_s,
            load=spec.load,
        )

    def settings_for(self, edge: Edge) -> Settings:
        """The run's settings with the edge's own on top (computed once per edge)."""
        found = self._edge_settings.get(edge.index)
        if found is None:
            found = self._edge_settings[edge.index] = self.settings.with_overrides(edge.settings)
        return found

    def bind_address(self, mode: str) -> tuple[str, int]:
        """Where this replica's server for one mode listens."""
        host, _, port = self.endpoints[mode][self.service][self.replica].rpartition(":")
        if self.ports is not None:  # an agent binds its own ports, whatever a spec says
            return self.listen or host, self.ports[mode]
        return self.listen or host, int(port)
