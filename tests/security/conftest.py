"""Shared material for security tests: a cluster token, a CA with host certificates, and a stranger's CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from olol.security.certs import CertPair, create_ca, issue_host_cert
from olol.security.tls import TlsFiles

TOKEN = "test-cluster-token-0123456789abcdef"
WRONG_TOKEN = "a-stranger-guessing-0123456789abcdef"


@dataclass(frozen=True)
class Pki:
    ca: CertPair
    server: CertPair  # for 127.0.0.1 / localhost
    client: CertPair
    stranger_ca: CertPair
    stranger: CertPair  # a valid-looking cert from another CA

    def server_tls(self, *, mutual: bool = False) -> TlsFiles:
        return TlsFiles(self.server.cert, self.server.key, self.ca.cert if mutual else None)

    def client_tls(self, *, with_cert: bool = True) -> TlsFiles:
        if with_cert:
            return TlsFiles(self.client.cert, self.client.key, self.ca.cert)
        return TlsFiles(ca=self.ca.cert)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root: Path = tmp_path_factory.mktemp("pki")
    ca = create_ca(root / "cluster")
    server = issue_host_cert(ca, "localhost", root / "cluster", ips=["127.0.0.1"])
    client = issue_host_cert(ca, "proxy-client", root / "cluster")
    stranger_ca = create_ca(root / "stranger", "Stranger CA")
    stranger = issue_host_cert(stranger_ca, "localhost", root / "stranger", ips=["127.0.0.1"])
    return Pki(ca, server, client, stranger_ca, stranger)
