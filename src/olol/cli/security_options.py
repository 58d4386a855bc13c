"""Security and discovery flags shared by `olol server`, `olol proxy` and `olol rpc-server`, and the
settings they build; and the client side's (`olol client`, `status`, `pull`, `models`).

Each flag resolves flag > env > config file > default, like every other flag
(`olol.config.Settings`); the token also comes from `--token-file` or
`$OLOL_TOKEN_FILE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from olol.config import ConfigError, Settings

__all__ = [
    "ADVERTISE_HOST",
    "API_KEY",
    "API_KEYS_FILE",
    "BODY_TIMEOUT",
    "CLIENT_API_KEY",
    "CLIENT_CA",
    "CLIENT_CERT",
    "CLIENT_KEY",
    "CLUSTER",
    "DISCOVERY_AGENT",
    "DISCOVERY_PROXY",
    "HTTPS",
    "HTTPS_CLIENT_AUTH",
    "INTERFACE",
    "MAX_BODY",
    "MDNS",
    "PROXY",
    "RATE_BURST",
    "RATE_LIMIT",
    "SCAN_RATE",
    "SCAN_SUBNET",
    "STRICT_FIELDS",
    "TLS_CA",
    "TLS_CERT",
    "TLS_KEY",
    "TOKEN",
    "TOKEN_FILE",
    "client_credentials",
    "discovery_settings",
    "security_settings",
]

TOKEN = typer.Option(
    None,
    "--token",
    help="Cluster token: required on every gRPC call \\[env var: OLOL_TOKEN]. A flag shows in `ps`: prefer the "
    "environment variable or --token-file.",
)
TOKEN_FILE = typer.Option(None, "--token-file", help="File holding the cluster token \\[env var: OLOL_TOKEN_FILE].")
TLS_CERT = typer.Option(None, "--tls-cert", help="PEM certificate of this host (see `olol certs`).")
TLS_KEY = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert.")
TLS_CA = typer.Option(
    None, "--tls-ca", help="PEM CA of the cluster: agents require client certs it signed; the proxy verifies agents."
)
HTTPS = typer.Option(
    None, "--https/--no-https", show_default=False, help="Serve HTTPS with --tls-cert.  \\[default: on with a cert]"
)
HTTPS_CLIENT_AUTH = typer.Option(
    None, "--https-client-auth", help="HTTPS clients must present a certificate signed by --tls-ca."
)
API_KEY = typer.Option(
    None,
    "--api-key",
    help="HTTP API key: KEY, KEY:read (status/metrics only) or KEY:admin (also every key's sessions); repeatable "
    "\\[env var: OLOL_API_KEYS, comma separated]. A flag shows in `ps`: prefer the environment variable or "
    "--api-keys-file.",
)
API_KEYS_FILE = typer.Option(
    None,
    "--api-keys-file",
    help="File of API keys, one `KEY`, `KEY:read` or `KEY:admin` a line \\[env var: OLOL_API_KEYS_FILE].",
)
MAX_BODY = typer.Option(
    None, "--max-body", show_default=False, help="Largest JSON request body in bytes.  \\[default: 64 MiB]"
)
BODY_TIMEOUT = typer.Option(
    None, "--body-timeout", show_default=False, help="Seconds a client has to send its body.  \\[default: 60]"
)
RATE_LIMIT = typer.Option(
    None, "--rate-limit", help="Requests/s per API key (or client address without keys). \\[default: off]"
)
RATE_BURST = typer.Option(None, "--rate-burst", help="Requests a key may burst above --rate-limit.")
STRICT_FIELDS = typer.Option(
    None,
    "--strict-fields/--lenient-fields",
    show_default=False,
    help="Answer 400 `json: unknown field` to unknown fields of /api requests; Ollama ignores them, "
    "and so does the default.  \\[default: lenient]",
)
DISCOVERY_AGENT = typer.Option(
    None, "--discovery/--no-discovery", show_default=False,
        help="Advertise this host over mDNS (_olol._tcp)."
        "  \\[env var: OLOL_DISCOVERY]  \\[default: off]"
)
DISCOVERY_PROXY = typer.Option(
    None,
    "--discovery/--no-discovery",
    show_default=False,
    help="Add hosts that advertise over mDNS or register with this proxy.  \\[env var: OLOL_DISCOVERY]  "
    "\\[default: off]",
)
MDNS = typer.Option(
    None, "--mdns/--no-mdns", show_default=False,
        help="Use mDNS for --discovery (off: registrations only)."
        "  \\[default: on]"
)
INTERFACE = typer.Option(
    None, "--interface",
    help="Network interface for discovery (e.g. eth0).  \\[env var: OLOL_INTERFACE]  \\[default: all]",
)
CLUSTER = typer.Option(None, "--cluster",
    help="Cluster name in adverts (several clusters on one LAN).  \\[env var: OLOL_CLUSTER]  \\[default: olol]")
PROXY = typer.Option(
    None, "--proxy", help="Register with this proxy (host:port or URL); repeatable.  \\[env var: OLOL_PROXY]"
)
ADVERTISE_HOST = typer.Option(None, "--advertise-host", help="Address others should dial this host at.")
SCAN_SUBNET = typer.Option(
    None, "--scan-subnet", help="Probe the interface's private /24 for agents (rate-limited). \\[default: off]"
)
SCAN_RATE = typer.Option(None, "--scan-rate", help="Connection attempts per second of --scan-subnet. \\[default: 20]")

# Clients of a secured cluster.
CLIENT_API_KEY = typer.Option(
    None,
    "--api-key",
    envvar="OLOL_API_KEY",
    help="The proxy's API key (Authorization: Bearer) \\[env var: OLOL_API_KEY; prefer it: a flag shows in `ps`].",
)
CLIENT_CA = typer.Option(
    None, "--ca", envvar="OLOL_CA",
        help="PEM CA that signed the server's certificate (HTTPS, gRPC TLS) \\[env var: OLOL_CA]."
)
CLIENT_CERT = typer.Option(None, "--cert", help="PEM client certificate, for servers that require one (mutual TLS).")
CLIENT_KEY = typer.Option(None, "--key", help="PEM private key of --cert.")


def _str(value: Path | str | None) -> str | None:
    return str(value) if value is not None else None


def security_settings(
    s: Settings,
    *,
    token: str | None,
    token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    **proxy: Any,
) -> Any:
    """`SecuritySettings` from the flags; the proxy-only ones (keys, limits, https) come as keywords."""
    from olol.security.apikeys import ApiKeys
    from olol.security.limits import HttpLimits
    from olol.security.settings import SecuritySettings
    from olol.security.tls import TlsFiles
    from olol.security.tokens import load_token

    tls = TlsFiles(
        s.get("tls_cert", _str(tls_cert), None),
        s.get("tls_key", _str(tls_key), None),
        s.get("tls_ca", _str(tls_ca), None),
    )
    try:
        tls.check()
        out = SecuritySettings(
            token=load_token(s.get("token", token, None), s.get("token_file", _str(token_file), None)), tls=tls
        )
        if not proxy:
            return out
        keys = s.get("api_keys", proxy.get("api_key") or None, [], env="OLOL_API_KEYS")
        keys_file = s.get("api_keys_file", _str(proxy.get("api_keys_file")), None, env="OLOL_API_KEYS_FILE")
        out.api_keys = ApiKeys.parse(keys, keys_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    out.https = s.get("https", proxy.get("https"), True)
    out.https_client_auth = s.get("https_client_auth", proxy.get("https_client_auth"), False)
    defaults = HttpLimits()
    out.limits = HttpLimits(
        max_body=s.get("max_body", proxy.get("max_body"), defaults.max_body),
        body_timeout=s.get("body_timeout", proxy.get("body_timeout"), defaults.body_timeout),
        # Config file only ([proxy] section): rarely changed, no flag of their own.
        max_blob=s.get("max_blob", None, defaults.max_blob),
        blob_idle_timeout=s.get("blob_idle_timeout", None, defaults.blob_idle_timeout),
        body_budget=s.get("body_budget", None, defaults.body_budget),
        max_connections_per_client=s.get("max_connections_per_client", None, None),
        rate=s.get("rate_limit", proxy.get("rate_limit"), None),
        burst=s.get("rate_burst", proxy.get("rate_burst"), None),
        reject_unknown_fields=s.get("strict_fields", proxy.get("strict_fields"), False),
    )
    return out


def discovery_settings(
    s: Settings,
    *,
    discovery: bool | None,
    interface: str | None,
    cluster: str | None,
    mdns: bool | None = None,
    **extra: Any,
) -> Any:
    """`DiscoverySettings`: agents and rpc-servers add `proxy`/`advertise_host`, the proxy
    `scan_subnet`/`scan_rate`."""
    from olol.discovery.settings import DEFAULT_CLUSTER, DiscoverySettings

    out = DiscoverySettings(
        enabled=s.get("discovery", discovery, False, env="OLOL_DISCOVERY"),
        mdns=s.get("mdns", mdns, True),
        interface=s.get("interface", interface, None, env="OLOL_INTERFACE"),
        cluster=s.get("cluster", cluster, DEFAULT_CLUSTER, env="OLOL_CLUSTER"),
    )
    if "proxy" in extra:
        out.proxies = s.get("proxy", extra["proxy"] or None, [], env="OLOL_PROXY")
    if "advertise_host" in extra:
        out.advertise_host = s.get("advertise_host", extra["advertise_host"], None)
    if "scan_subnet" in extra:
        out.scan_subnet = s.get("scan_subnet", extra["scan_subnet"], False)
        out.scan_rate = s.get("scan_rate", extra.get("scan_rate"), 20.0)
    return out


def client_credentials(
    *,
    api_key: str | None = None,
    token: str | None = None,
    token_file: Path | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> Any:
    """`ClientCredentials` from a client command's flags; the token also from $OLOL_TOKEN / $OLOL_TOKEN_FILE."""
    from olol.client.credentials import ClientCredentials
    from olol.security.tokens import load_token

    try:
        return ClientCredentials(
            api_key=api_key or None,
            token=load_token(token, _str(token_file)),
            ca=ca,
            cert=cert,
            key=key,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
