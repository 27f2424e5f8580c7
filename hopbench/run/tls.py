"""The run's own certificate authority, made when an edge sets ``tls``.

trustme makes a CA and one server certificate naming every host the run's HTTP and
gRPC servers listen on (and ``localhost``). Keys are ECDSA P-256, trustme's default.
Made per run, kept in the run's spec only: nothing outside the run trusts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import trustme

from hopbench.config.runspec import TlsMaterial
from hopbench.config.settings import Settings
from hopbench.config.topology import Topology
from hopbench.transports.tls import SERVER_NAME


def uses_tls(topology: Topology, settings: Settings) -> bool:
    return any(settings.with_overrides(e.settings).tls for e in topology.edges)


def make_tls(endpoints: Mapping[str, Mapping[str, Sequence[str]]]) -> TlsMaterial:
    """A CA and a server certificate for the hosts of these endpoints."""
    hosts = {SERVER_NAME, "127.0.0.1"}
    for by_service in endpoints.values():
        for addresses in by_service.values():
            hosts.update(a.rpartition(":")[0].strip("[]") for a in addresses)
    ca = trustme.CA(organization_name="hopbench run")
    cert = ca.issue_cert(*sorted(hosts))
    return TlsMaterial(
        ca_pem=ca.cert_pem.bytes().decode(),
        cert_pem=b"".join(blob.bytes() for blob in cert.cert_chain_pems).decode(),
        key_pem=cert.private_key_pem.bytes().decode(),
    )


def tls_for(
    topology: Topology, settings: Settings, endpoints: Mapping[str, Mapping[str, Sequence[str]]]
) -> TlsMaterial | None:
    """The run's TLS material when an edge uses TLS, else None."""
    return make_tls(endpoints) if uses_tls(topology, settings) else None
