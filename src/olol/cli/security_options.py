"""The option bundles several modes share, declared once, and the settings they build.

* `TokenTls`: the cluster token and gRPC TLS (`olol server`, `proxy`, `rpc-server`, `dist`);
* `HttpSecurity`: the proxy's HTTPS, API keys and input limits;
* `Lan` (interface, cluster name), `Advertise` (agents and rpc-servers: mDNS advert, registration with
  proxies), `Mdns` and `Finding` (the proxy: hosts that advertise, register or answer a scan);
* `ClientCredentials`: what a client of a secured cluster presents (`olol client`, `status`, `pull`, `models`).

Each is a dataclass of `olol.config.setting` fields, so its options, their `[env var: ...]  [default: ...]`
help and the flag > env > config file > default resolution are made by `olol.cli.options`; a command lists
the bundles it takes in `settings_options(...)`. The token also comes from `--token-file` or `$OLOL_TOKEN_FILE`.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from olol.cli.options import Given, resolve
from olol.config import ConfigError, Settings, setting
from olol.discovery.settings import DEFAULT_CLUSTER
from olol.security.limits import HttpLimits

__all__ = [
    "Advertise",
    "ClientCredentials",
    "Finding",
    "HttpSecurity",
    "Lan",
    "Mdns",
    "TokenTls",
    "client_credentials",
    "discovery_settings",
    "security_settings",
]

_LIMITS = HttpLimits()


@dataclass
class TokenTls:
    token: str | None = setting(
        None, "--token", help="Cluster token: required on every gRPC call. A flag shows in `ps`: prefer the "
        "environment variable or --token-file.", env="OLOL_TOKEN", shown="none (open)",
    )
    token_file: str | None = setting(
        None, "--token-file", help="File holding the cluster token.", env="OLOL_TOKEN_FILE"
    )
    tls_cert: str | None = setting(None, "--tls-cert", help="PEM certificate of this host (see `olol certs`).")
    tls_key: str | None = setting(None, "--tls-key", help="PEM private key of --tls-cert.")
    tls_ca: str | None = setting(
        None, "--tls-ca",
        help="PEM CA of the cluster: servers require client certs it signed; clients verify servers with it.",
    )


@dataclass
class HttpSecurity:
    https: bool = setting(True, "--https/--no-https", help="Serve HTTPS with --tls-cert.", shown="on with a cert")
    https_client_auth: bool = setting(
        False, "--https-client-auth", help="HTTPS clients must present a certificate signed by --tls-ca."
    )
    api_keys: list[str] = setting(
        [], "--api-key", help="HTTP API key: KEY, KEY:read (status/metrics only) or KEY:admin (also every key's "
        "sessions); repeatable (the environment variable: comma separated). A flag shows in `ps`: prefer the "
        "environment variable or --api-keys-file.", env="OLOL_API_KEYS", type=list[str], shown="none (open)",
    )
    api_keys_file: str | None = setting(
        None, "--api-keys-file", help="File of API keys, one `KEY`, `KEY:read` or `KEY:admin` a line.",
        env="OLOL_API_KEYS_FILE",
    )
    max_body: int = setting(_LIMITS.max_body, "--max-body", help="Largest JSON request body in bytes.",
                            shown="64 MiB")
    body_timeout: float = setting(_LIMITS.body_timeout, "--body-timeout", help="Seconds a client has to send its body.")
    rate_limit: float | None = setting(
        None, "--rate-limit", help="Requests/s per API key (or client address without keys).", type=float,
        shown="off",
    )
    rate_burst: int | None = setting(
        None, "--rate-burst", help="Requests a key may burst above --rate-limit.", type=int, shown="--rate-limit"
    )
    strict_fields: bool = setting(
        False, "--strict-fields/--lenient-fields",
        help="Answer 400 `json: unknown field` to unknown fields of /api requests; Ollama ignores them, and so does "
        "the default.", shown="lenient",
    )


@dataclass
class Lan:
    interface: str | None = setting(
        None, "--interface", help="Network interface for discovery (e.g. eth0).", env="OLOL_INTERFACE", shown="all"
    )
    cluster: str = setting(
        DEFAULT_CLUSTER, "--cluster", help="Cluster name in adverts (several clusters on one LAN).", env="OLOL_CLUSTER"
    )


@dataclass
class Advertise:
    discovery: bool = setting(
        False, "--discovery/--no-discovery", help="Advertise this host over mDNS (_olol._tcp).", env="OLOL_DISCOVERY"
    )
    proxy: list[str] = setting(
        [], "--proxy", help="Register with this proxy (host:port or URL); repeatable.", env="OLOL_PROXY",
        type=list[str],
    )
    advertise_host: str | None = setting(
        None, "--advertise-host", help="Address others should dial this host at.",
        shown="the interface's, or the route toward each proxy",
    )


@dataclass
class Mdns:
    mdns: bool = setting(True, "--mdns/--no-mdns", help="Use mDNS for --discovery (off: registrations only).")


@dataclass
class Finding:
    discovery: bool = setting(
        False, "--discovery/--no-discovery", help="Add hosts that advertise over mDNS or register with this proxy.",
        env="OLOL_DISCOVERY",
    )
    scan_subnet: bool = setting(
        False, "--scan-subnet", help="Probe the interface's private /24 for agents (rate-limited)."
    )
    scan_rate: float = setting(20.0, "--scan-rate", help="Connection attempts per second of --scan-subnet.")


@dataclass
class ClientCredentials:
    api_key: str | None = setting(
        None, "--api-key", help="The proxy's API key (Authorization: Bearer); prefer the environment variable: "
        "a flag shows in `ps`.", env="OLOL_API_KEY",
    )
    ca: str | None = setting(
        None, "--ca", help="PEM CA that signed the server's certificate (HTTPS, gRPC TLS).", env="OLOL_CA",
        shown="the system's",
    )
    cert: str | None = setting(
        None, "--cert", help="PEM client certificate, for servers that require one (mutual TLS).",
        env="OLOL_CLIENT_CERT",
    )
    client_key: str | None = setting(None, "--key", help="PEM private key of --cert.", env="OLOL_CLIENT_KEY")


def security_settings(s: Settings, given: Given, env_prefix: str, *, http: bool = False) -> Any:
    """`SecuritySettings` from `TokenTls` (and, for the proxy, `HttpSecurity`)."""
    from olol.security.apikeys import ApiKeys
    from olol.security.settings import SecuritySettings
    from olol.security.tls import TlsFiles
    from olol.security.tokens import load_token

    got = resolve(TokenTls, s, given, env_prefix=env_prefix)
    tls = TlsFiles(got["tls_cert"], got["tls_key"], got["tls_ca"])
    web = resolve(HttpSecurity, s, given, env_prefix=env_prefix) if http else {}
    try:
        tls.check()
        out = SecuritySettings(token=load_token(got["token"], got["token_file"]), tls=tls)
        if not http:
            return out
        out.api_keys = ApiKeys.parse(web["api_keys"], web["api_keys_file"])
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    out.https = web["https"]
    out.https_client_auth = web["https_client_auth"]
    out.limits = HttpLimits(
        max_body=web["max_body"],
        body_timeout=web["body_timeout"],
        # Config file only ([proxy] section): rarely changed, no flag of their own.
        max_blob=s.get("max_blob", None, _LIMITS.max_blob),
        blob_idle_timeout=s.get("blob_idle_timeout", None, _LIMITS.blob_idle_timeout),
        body_budget=s.get("body_budget", None, _LIMITS.body_budget),
        max_connections_per_client=s.get("max_connections_per_client", None, None),
        rate=web["rate_limit"],
        burst=web["rate_burst"],
        reject_unknown_fields=web["strict_fields"],
    )
    return out


def token_and_tls(s: Settings, given: Given, env_prefix: str) -> tuple[str | None, Any]:
    """The cluster token and `TlsFiles` of `TokenTls` (rpc-server, dist: no SecuritySettings there)."""
    from olol.security.tls import TlsFiles
    from olol.security.tokens import load_token

    got = resolve(TokenTls, s, given, env_prefix=env_prefix)
    return load_token(got["token"], got["token_file"]), TlsFiles(got["tls_cert"], got["tls_key"], got["tls_ca"])


def discovery_settings(s: Settings, given: Given, env_prefix: str, *bundles: type) -> Any:
    """`DiscoverySettings` from `Lan` and those of `bundles` (Advertise, Mdns, Finding) the command takes."""
    from olol.discovery.settings import DiscoverySettings

    got: dict[str, Any] = resolve(Lan, s, given, env_prefix=env_prefix)
    for bundle in bundles:
        got.update(resolve(bundle, s, given, env_prefix=env_prefix))
    out = DiscoverySettings(enabled=got.get("discovery", False), interface=got["interface"], cluster=got["cluster"])
    if Mdns in bundles:
        out.mdns = got["mdns"]
    if Advertise in bundles:
        out.proxies = got["proxy"]
        out.advertise_host = got["advertise_host"]
    if Finding in bundles:
        out.scan_subnet = got["scan_subnet"]
        out.scan_rate = got["scan_rate"]
    return out


def client_credentials(given: Given, *, token: str | None = None, token_file: str | None = None) -> Any:
    """`ClientCredentials` of a client command (no config file: flag > env > default); the token also
    from $OLOL_TOKEN / $OLOL_TOKEN_FILE."""
    from olol.client.credentials import ClientCredentials as Credentials
    from olol.security.tokens import load_token

    got = resolve(ClientCredentials, Settings("client"), given, env_prefix="OLOL_")
    try:
        return Credentials(
            api_key=got["api_key"] or None,
            token=load_token(token, token_file),
            ca=got["ca"],
            cert=got["cert"],
            key=got["client_key"],
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
