"""Network interfaces: the addresses a host advertises, and the subnet a scan may cover."""

from __future__ import annotations

import ipaddress
import socket

import psutil

__all__ = ["interface_ipv4", "local_ipv4s", "route_source", "scan_network"]


def interface_ipv4(name: str) -> list[tuple[str, str]]:
    """(address, netmask) of each IPv4 address of interface `name`; ValueError if there is no such interface."""
    addrs = psutil.net_if_addrs()
    if name not in addrs:
        raise ValueError(f"no network interface {name!r} (have: {', '.join(sorted(addrs))})")
    return [(a.address, a.netmask or "255.255.255.255") for a in addrs[name] if a.family == socket.AF_INET]


def local_ipv4s(interface: str | None = None) -> list[str]:
    """Addresses others may dial this host at: the interface's, else every non-loopback IPv4 (loopback if none)."""
    if interface:
        return [a for a, _ in interface_ipv4(interface)]
    found: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for a in entries:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                found.append(a.address)
    return found or ["127.0.0.1"]


def route_source(host: str, port: int) -> str:
    """The local address the kernel would use toward host:port (a UDP 'connect' sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        return str(sock.getsockname()[0])


def scan_network(interface: str | None) -> ipaddress.IPv4Network:
    """The /24 a subnet scan may probe: the interface's, and only if it is a private network.

    A wider netmask is narrowed to the /24 holding our address: a scan is a last
    resort for small LANs without multicast, never a sweep of a campus network.
    """
    if interface:
        entries = interface_ipv4(interface)
        if not entries:
            raise ValueError(f"interface {interface!r} has no IPv4 address")
        address, netmask = entries[0]
    else:
        address = route_source("192.0.2.1", 9)  # TEST-NET-1: only the routing decision is used
        netmask = "255.255.255.0"
    iface = ipaddress.IPv4Interface(f"{address}/{netmask}")
    network = iface.network if iface.network.prefixlen >= 24 else ipaddress.IPv4Interface(f"{address}/24").network
    if not network.is_private or iface.ip.is_loopback or iface.ip.is_link_local:
        raise ValueError(f"refusing to scan {network}: only private LAN subnets are scanned")
    return network
