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

from hopbench.config.runspec import RunSpec, TlsMaterial
from hopbench.config.secrets import POSTGRES_PASSWORD_ENV, POSTGRES_URL_ENV, restore_password
from hopbench.config.settings import LoadSpec, Settings
from hopbench.config.topology import Edge, Topology
from hopbench.errors import TransportError

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
    redis_url: str | None = None  # a shared cache's Redis (work.cache store redis)
    postgres_url: str | None = None  # for a service whose work runs queries (work.db)
    listen: str | None = None  # host to bind servers to; None: the endpoint's own host
    ports: Mapping[str, int] | None = None  # an agent's own data port per mode, not the spec's
    brokers_wait_s: float = 0.0  # how long to wait for a broker before connecting (--brokers-wait)
    load: LoadSpec | None = None  # the run's load: what a received envelope can be
    tls: TlsMaterial | None = None  # the run's CA and server certificate (edges with tls)
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
        postgres = None
        if spec.postgres_url is not None:
            postgres = restore_password(
                spec.postgres_url,
                broker="PostgreSQL",
                password_env=POSTGRES_PASSWORD_ENV,
                url_env=POSTGRES_URL_ENV,
            )
        return cls(
            run_id=spec.run_id,
            service=service,
            replica=replica,
            topology=spec.resolved,
            settings=spec.settings,
            endpoints=spec.endpoints,
            kafka_bootstrap=spec.kafka_bootstrap,
            rabbitmq_url=url,
            redis_url=spec.redis_url,
            postgres_url=postgres,
            listen=listen,
            ports=ports,
            brokers_wait_s=spec.brokers_wait_s,
            load=spec.load,
            tls=spec.tls,
        )

    def settings_for(self, edge: Edge) -> Settings:
        """The run's settings with the edge's own on top (computed once per edge)."""
        found = self._edge_settings.get(edge.index)
        if found is None:
            found = self._edge_settings[edge.index] = self.settings.with_overrides(edge.settings)
        return found

    def tls_material(self, edge: Edge) -> TlsMaterial:
        """The run's TLS material, for an edge that sets tls."""
        if self.tls is None:
            raise TransportError(f"{edge.name} sets tls, but the run made no certificates")
        return self.tls

    def bind_address(self, mode: str) -> tuple[str, int]:
        """Where this replica's server for one mode listens."""
        host, _, port = self.endpoints[mode][self.service][self.replica].rpartition(":")
        if self.ports is not None:  # an agent binds its own ports, whatever a spec says
            return self.listen or host, self.ports[mode]
        return self.listen or host, int(port)
