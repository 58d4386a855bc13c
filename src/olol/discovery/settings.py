"""`DiscoverySettings`: how an agent makes itself known and how a proxy finds hosts. Off by default."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_CLUSTER", "SERVICE_TYPE", "DiscoverySettings"]

SERVICE_TYPE = "_olol._tcp.local."
DEFAULT_CLUSTER = "olol"


@dataclass
class DiscoverySettings:
    #: Agents: advertise `_olol._tcp` over mDNS. Proxy: browse for it, and accept signed registrations.
    enabled: bool = False
    #: With `enabled`: use mDNS (set False on networks without multicast: registrations and scans still work).
    mdns: bool = True
    #: Network interface (e.g. eth0) to advertise on / browse / scan; None: every interface (scan: the default route's).
    interface: str | None = None
    #: Cluster name in adverts: several clusters can share a LAN; a proxy only takes its own.
    cluster: str = DEFAULT_CLUSTER
    #: Agents: proxies ("host:port" or URLs) to register with, which works across subnets.
    proxies: list[str] = field(default_factory=list)
    #: Agents: the address others should dial (default: the interface's, or the route toward each proxy).
    advertise_host: str | None = None
    #: Agents: seconds between registrations (a proxy forgets a registration not renewed for 3x this).
    register_interval: float = 10.0
    #: Proxy: probe the interface's private /24 for agents (opt-in; never a public or larger network).
    scan_subnet: bool = False
    #: Proxy: ports the scan probes.
    scan_ports: list[int] = field(default_factory=lambda: [50051])
    #: Proxy: connection attempts per second at most during a scan.
    scan_rate: float = 20.0
    #: Proxy: seconds between scans.
    scan_interval: float = 300.0
