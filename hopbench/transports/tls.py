"""TLS for HTTP and gRPC edges: the run's certificate authority made into contexts.

The orchestrator makes one CA per run and one server certificate for every host
the run's servers listen on (hopbench.run.tls); the spec carries them as PEM text
(``TlsMaterial``), so an agent on another host gets them too. Python's ``ssl``
loads a certificate chain only from files: they are written to a private
temporary folder, loaded, and removed at once.

Session resumption (``tls_resumption``) on the HTTP client: asyncio (and uvloop)
never pass a saved session to a new connection, so ``ResumingContext`` does,
in ``wrap_bio``: every new connection offers the newest session ticket an earlier
connection received (TLS 1.3 tickets arrive after the handshake). It also counts
the handshakes it saw finish, and how many of them the server resumed.
"""

from __future__ import annotations

import contextlib
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hopbench.config.runspec import TlsMaterial
from hopbench.errors import TransportError

# The name every server certificate of a run carries beside its hosts. gRPC clients
# check it instead of the address: gRPC sends no server name (SNI) to an IP address,
# and its TLS session cache is keyed by that name, so without one it never resumes.
SERVER_NAME = "localhost"
# handshakes not seen to finish yet (a connection that failed never finishes): at most
# this many are kept for counting
_PENDING_MAX = 4096


@contextlib.contextmanager
def _pem_files(material: TlsMaterial) -> Iterator[tuple[str, str]]:
    """(certificate file, key file), removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="hopbench-tls-") as folder:
        cert, key = Path(folder) / "server.pem", Path(folder) / "server.key"
        key.touch(mode=0o600)
        key.write_text(material.key_pem)
        cert.write_text(material.cert_pem)
        yield str(cert), str(key)


def server_context(material: TlsMaterial) -> ssl.SSLContext:
    """A server's context: the run's certificate; session tickets on (the server
    resumes a session when a client offers one)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with _pem_files(material) as (cert, key):
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TransportError(f"the run's TLS certificate does not load: {exc}") from exc
    return context


class ResumingContext(ssl.SSLContext):
    """A client context that resumes the newest session it has (when ``resume``) and
    counts the handshakes it saw finish: ``handshakes``, of which ``resumed``."""

    resume: bool
    handshakes: int
    resumed: int
    _session: ssl.SSLSession | None
    _pending: list[ssl.SSLObject]

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        self.tally()
        if session is None and self.resume:
            session = self._session
        made = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self._pending.append(made)
        if len(self._pending) > _PENDING_MAX:
            del self._pending[0]
        return made

    def tally(self) -> None:
        """Count the connections whose handshake finished since the last call, and keep
        the newest session ticket they received."""
        waiting: list[ssl.SSLObject] = []
        for made in self._pending:
            if made.version() is None:  # the handshake has not finished (yet)
                waiting.append(made)
                continue
            self.handshakes += 1
            self.resumed += bool(made.session_reused)
            found = made.session
            if found is not None and found.has_ticket:
                self._session = found
        self._pending = waiting


def client_context(material: TlsMaterial, resume: bool) -> ResumingContext:
    """A client's context: trusts the run's CA only, checks the server's name."""
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=material.ca_pem)
    context.resume = resume
    context.handshakes = 0
    context.resumed = 0
    context._session = None
    context._pending = []
    return context


def grpc_server_credentials(material: TlsMaterial) -> Any:
    import grpc

    pair = (material.key_pem.encode(), material.cert_pem.encode())
    return grpc.ssl_server_credentials([pair])


def grpc_channel_credentials(material: TlsMaterial) -> Any:
    import grpc

    return grpc.ssl_channel_credentials(root_certificates=material.ca_pem.encode())
