"""TLS from PEM files: gRPC credentials for agents and the proxy's channels, SSL contexts for HTTPS.

One set of files per process, with one meaning everywhere:
* `cert` + `key`: this process's certificate. A server presents it; a client
  presents it to a server that requires client certificates (mutual TLS).
* `ca`: the CA that signed the peers. A gRPC server given one requires client
  certificates signed by it (mutual TLS); a client verifies servers with it
  (else the system roots). `olol certs` creates such a CA and host certificates
  that are valid both as server and as client certificates.

The same contract as `olol.rpc.tls.TlsFiles`, so one set of flags works for
every mode.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc is imported when credentials are built: a proxy over plain Ollama hosts never loads it
    import grpc

__all__ = ["TlsFiles"]


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).expanduser().read_bytes() if path else None


def _path(path: str | Path | None) -> str | None:
    return str(Path(path).expanduser()) if path else None


@dataclass(frozen=True)
class TlsFiles:
    cert: str | Path | None = None
    key: str | Path | None = None
    ca: str | Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key or self.ca)

    @property
    def has_identity(self) -> bool:
        return bool(self.cert and self.key)

    def check(self) -> None:
        """Fail at start-up, with the flag names, rather than at the first connection."""
        if bool(self.cert) != bool(self.key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        for path in (self.cert, self.key, self.ca):
            if path and not Path(path).expanduser().is_file():
                raise ValueError(f"TLS file not found: {path}")

    # ------------------------------------------------------------------ gRPC
    def server_credentials(self, *, require_client_cert: bool | None = None) -> grpc.ServerCredentials | None:
        """None: serve plaintext. With a CA, clients must present a certificate it signed.

        `require_client_cert=False` serves TLS without asking clients for certificates (a
        port for clients rather than cluster members, like the proxy's HTTPS without
        `--https-client-auth`); True requires them, which needs the CA.
        """
        if not self.enabled:
            return None
        if not self.has_identity:
            raise ValueError("a TLS server needs both --tls-cert and --tls-key")
        import grpc  # import cost: only a process with gRPC TLS needs it (see the TYPE_CHECKING note)

        key, cert, ca = _read(self.key), _read(self.cert), _read(self.ca)
        assert key is not None and cert is not None
        mutual = ca is not None if require_client_cert is None else require_client_cert
        if mutual and ca is None:
            raise ValueError("requiring client certificates needs --tls-ca")
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca if mutual else None, require_client_auth=mutual
        )

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """None: dial plaintext."""
        if not self.enabled:
            return None
        self.check()
        import grpc  # import cost: only a process with gRPC TLS needs it (see the TYPE_CHECKING note)

        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca), private_key=_read(self.key), certificate_chain=_read(self.cert)
        )

    # ------------------------------------------------------------------ HTTPS
    def server_ssl_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext | None:
        """For the proxy's HTTPS listener; None without a certificate (plain HTTP)."""
        if not self.has_identity:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(_path(self.cert) or "", _path(self.key))
        if require_client_cert:
            if not self.ca:
                raise ValueError("requiring client certificates over HTTPS needs --tls-ca")
            ctx.load_verify_locations(cafile=_path(self.ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """For an agent registering with an HTTPS proxy: verify it with the CA, present our cert if any."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_path(self.ca))
        if self.has_identity:
            ctx.load_cert_chain(_path(self.cert) or "", _path(self.key))
        return ctx
