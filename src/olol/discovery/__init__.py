"""Hosts finding each other: mDNS/DNS-SD adverts, registration with a proxy, an opt-in subnet scan."""
