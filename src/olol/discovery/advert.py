"""What an OLOL host says about itself (an mDNS TXT record, a registration), and its signature.

The signature covers every field, including the addresses the host is
reachable at: a stranger who copies a member's advertisement and serves it
from its own address fails verification, so the proxy never dials the
stranger (and never hands it the cluster token).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import olol
from olol import PROTOCOL_VERSION
from olol.discovery.settings import DEFAULT_CLUSTER
from olol.security.signing import SIGNATURE_FIELD, sign_fields, verify_fields

__all__ = ["ADVERT", "REGISTER_PATH", "REGISTRATION", "ROLES", "Advert", "StrangerAdvert", "format_target"]

ROLES = ("agent", "rpc")
#: Signature purposes: an mDNS advert can never be replayed as a registration, nor the reverse.
ADVERT = "advert"
REGISTRATION = "register"
#: Where a proxy takes registrations (`olol.discovery.registrar` posts, `.registration` answers).
REGISTER_PATH = "/olol/register"


class StrangerAdvert(ValueError):
    """An advertisement this cluster does not accept; the message says why (for the log)."""


def format_target(address: str, port: int) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]:{port}"
    except ValueError:
        pass
    return f"{address}:{port}"


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Advert:
    role: str
    node_id: str
    port: int
    addresses: tuple[str, ...]
    cluster: str = DEFAULT_CLUSTER
    version: str = olol.__version__
    protocol: str = PROTOCOL_VERSION
    tls: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)  # signed too (registrations add ts/nonce)

    def fields(self) -> dict[str, str]:
        return {
            **self.extra,
            "role": self.role,
            "id": self.node_id,
            "port": str(self.port),
            "addrs": ",".join(self.addresses),
            "cluster": self.cluster,
            "v": self.version,
            "proto": self.protocol,
            "tls": "1" if self.tls else "0",
        }

    def signed(self, token: str | None, purpose: str = ADVERT) -> dict[str, str]:
        """The fields, with `sig` when the cluster has a token."""
        out = self.fields()
        if token:
            out[SIGNATURE_FIELD] = sign_fields(token, purpose, out)
        return out

    def targets(self) -> list[str]:
        return [format_target(a, self.port) for a in self.addresses]

    def dial_target(self, resolved: list[str]) -> str | None:
        """The `host:port` to dial: a signed address, preferring one the advert also arrived from
        (known to be reachable from here); None when it names no address."""
        reachable = [a for a in self.addresses if a in resolved] or list(self.addresses)
        return format_target(reachable[0], self.port) if reachable else None

    @classmethod
    def parse(
        cls,
        raw: Mapping[bytes, bytes | None] | Mapping[str, str],
        *,
        token: str | None,
        cluster: str,
        purpose: str = ADVERT,
    ) -> Advert:
        """Check and decode; raises `StrangerAdvert` for anything this cluster must ignore."""
        props = {_text(k): _text(v) for k, v in raw.items()}
        if token and not verify_fields(token, purpose, props):
            reason = "unsigned" if SIGNATURE_FIELD not in props else "bad signature (wrong or no cluster token)"
            raise StrangerAdvert(reason)
        if props.get("cluster", DEFAULT_CLUSTER) != cluster:
            raise StrangerAdvert(f"cluster {props.get('cluster')!r}, not {cluster!r}")
        role = props.get("role", "")
        if role not in ROLES:
            raise StrangerAdvert(f"unknown role {role!r}")
        try:
            port = int(props.get("port", ""))
            addresses = tuple(a for a in props.get("addrs", "").split(",") if a)
            for address in addresses:
                ipaddress.ip_address(address)
        except ValueError as exc:
            raise StrangerAdvert(f"malformed advert: {exc}") from None
        if not 0 < port < 65536:
            raise StrangerAdvert(f"malformed advert: port {port}")
        if props.get("proto", PROTOCOL_VERSION).split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
            raise StrangerAdvert(f"protocol {props.get('proto')} (this proxy speaks {PROTOCOL_VERSION})")
        known = {"role", "id", "port", "addrs", "cluster", "v", "proto", "tls", SIGNATURE_FIELD}
        return cls(
            role=role,
            node_id=props.get("id", ""),
            port=port,
            addresses=addresses,
            cluster=props.get("cluster", DEFAULT_CLUSTER),
            version=props.get("v", ""),
            protocol=props.get("proto", ""),
            tls=props.get("tls") == "1",
            extra={k: v for k, v in props.items() if k not in known},
        )
