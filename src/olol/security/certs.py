"""A small cluster CA and host certificates, for people who have no PKI (`olol certs`).

ECDSA P-256 keys (small, fast handshakes, supported by gRPC's BoringSSL and by
Python's ssl). The CA may only sign end-entity certificates (path length 0).
Host certificates carry both serverAuth and clientAuth, so one file pair serves
an agent's gRPC port, the proxy's HTTPS port, and either side of mutual TLS.
Private keys are written owner-only (0600) and never overwritten by accident.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertPair", "create_ca", "generate_token", "issue_host_cert", "write_token"]

CA_DAYS = 3650
HOST_DAYS = 825  # the longest validity browsers and most TLS stacks still accept


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def generate_token() -> str:
    """A cluster token: 256 random bits, URL-safe (fits a flag, an env var, a file)."""
    return secrets.token_urlsafe(32)


def write_token(path: Path, *, force: bool = False) -> str:
    token = generate_token()
    _write(path, (token + "\n").encode(), private=True, force=force)
    return token


def _write(path: Path, data: bytes, *, private: bool, force: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to replace it)")
    # Created with the final mode: a key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600 if private else 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    # Backdated a little: a peer whose clock runs slightly behind still accepts a fresh cert.
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def create_ca(out_dir: Path, name: str = "OLOL cluster CA", *, days: int = CA_DAYS, force: bool = False) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(out_dir / "ca.crt", out_dir / "ca.key")
    _write(pair.key, _key_pem(key), private=True, force=force)
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), private=False, force=force)
    return pair


def _names(name: str, dns: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for entry in [name, *dns, *ips]:
        if not entry or entry in seen:
            continue
        seen.add(entry)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            out.append(x509.DNSName(entry))
    return out


def issue_host_cert(
    ca: CertPair,
    name: str,
    out_dir: Path,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = HOST_DAYS,
    force: bool = False,
) -> CertPair:
    """A certificate for host `name` (a DNS name or an IP), valid also for `dns` and `ips`."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not an EC key made by `olol certs init`")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(min(_now() + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names(name, dns, ips)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    pair = CertPair(out_dir / f"{safe}.crt", out_dir / f"{safe}.key")
    _write(pair.key, _key_pem(key), private=True, force=force)
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), private=False, force=force)
    return pair
