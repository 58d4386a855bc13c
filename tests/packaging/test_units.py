"""The systemd units: valid for systemd, unprivileged and hardened, rpc-server's worker on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.packaging._support import (
    MODES,
    UNITS,
    fake_standalone,
    install,
    parse_unit,
    require,
    run,
    unit_root_with_systemd,
)

# What every unit must say, whatever the mode (values as systemd reads them).
REQUIRED = {
    "User": "olol",
    "Group": "olol",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as the packages install them (prefix /usr), beside the host's systemd units."""
    root = tmp_path_factory.mktemp("root")
    install(root, fake_standalone(tmp_path_factory.mktemp("bin")))
    return unit_root_with_systemd(root)


def unit(root: Path, name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit(root / "usr/lib/systemd/system" / name)


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_unprivileged_and_hardened(installed: Path, name: str) -> None:
    service = unit(installed, name)["Service"]
    # The rpc-server's ggml worker runs in a user + network namespace of its own (docs/security.md).
    required = {**REQUIRED, "RestrictNamespaces": "user net"} if name == "olol-rpc-server.service" else REQUIRED
    for key, want in required.items():
        assert service.get(key, [None])[-1] == want, f"{name}: {key}={service.get(key)} (want {want!r})"
    assert "root" not in service.get("User", [])
    assert "DynamicUser" not in service  # a fixed user owns /var/lib/olol across restarts
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["SystemCallFilter"][1].startswith("~@privileged")
    # Its own cache folder: the binary unpacks there, never where another unit runs from.
    mode = name.removeprefix("olol-").removesuffix(".service")
    assert service["CacheDirectory"] == [f"olol/{mode}"]
    assert f"XDG_CACHE_HOME=%C/olol/{mode}" in " ".join(service["Environment"])
    assert service["ExecStart"][0].startswith(f"/usr/bin/olol {mode} --config /etc/olol/{mode}.toml")
    assert "StandardOutput" not in service  # stdout/stderr go to the journal (systemd's default)
    assert unit(installed, name)["Install"]["WantedBy"] == ["multi-user.target"]


def test_proxy_is_the_strictest(installed: Path) -> None:
    """The proxy touches no devices and never needs W+X memory; GPU hosts' units do."""
    proxy = unit(installed, "olol-proxy.service")["Service"]
    assert proxy["PrivateDevices"] == ["yes"] and proxy["MemoryDenyWriteExecute"] == ["yes"]
    for name in ("olol-server.service", "olol-rpc-server.service"):
        service = unit(installed, name)["Service"]
        assert "PrivateDevices" not in service, f"{name} must see /dev/nvidia* etc."


def test_rpc_server_pins_the_ggml_worker_to_loopback(installed: Path) -> None:
    """The flag beats the config file (flag > env > file): an edited rpc-server.toml cannot expose
    the unauthenticated ggml worker; only an explicit ExecStart override can."""
    service = unit(installed, "olol-rpc-server.service")["Service"]
    assert service["ExecStart"][0].endswith(" --worker-host 127.0.0.1")
    conf = (installed / "etc/olol/rpc-server.toml").read_text()
    assert re.search(r'^worker_host = "127\.0\.0\.1"$', conf, re.M)


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_systemd_analyze_verify(tmp_path: Path, prefix: str) -> None:
    """systemd accepts the units as rendered for each prefix, and the ExecStart binary exists."""
    require("systemd-analyze")
    root = tmp_path / "root"
    install(root, fake_standalone(tmp_path), prefix=prefix)
    unit_root_with_systemd(root)
    units = [f"{prefix}/lib/systemd/system/{name}" for name in UNITS]
    done = run(["systemd-analyze", "verify", f"--root={root}", *units], check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert f"ExecStart={prefix}/bin/olol" in (root / units[0].lstrip("/")).read_text()


def test_systemd_analyze_verify_catches_a_broken_unit(installed: Path, tmp_path: Path) -> None:
    """The check above has teeth: a typo in a unit fails it."""
    require("systemd-analyze")
    broken = installed / "usr/lib/systemd/system/olol-broken.service"
    text = (installed / "usr/lib/systemd/system/olol-proxy.service").read_text()
    broken.write_text(text.replace("ExecStart=/usr/bin/olol", "ExecStart=/usr/bin/olol-missing"))
    try:
        done = run(["systemd-analyze", "verify", f"--root={installed}", "olol-broken.service"], check=False)
    finally:
        broken.unlink()
    assert done.returncode != 0 and "olol-missing" in done.stderr


@pytest.mark.parametrize("name", UNITS)
def test_exposure_score(installed: Path, name: str) -> None:
    """systemd's own security review rates each unit OK (below 2.0 of 10; 10 is root, unconfined).

    The rpc-server's unit may reach 2.0: it allows user and network namespaces, which put the
    unauthenticated ggml worker where no other local user can reach it (a bigger gain than the 0.4).
    """
    require("systemd-analyze")
    done = run(["systemd-analyze", "security", "--offline=yes", f"--root={installed}", name], check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    limit = 2.05 if name.startswith("olol-rpc-server") else 2.0
    assert float(match.group(1)) < limit, done.stdout


def test_every_mode_has_a_unit_and_a_config() -> None:
    from tests.packaging._support import COMMON

    assert sorted(p.name for p in (COMMON / "systemd").iterdir()) == sorted(f"{u}.in" for u in UNITS)
    assert sorted(p.name for p in (COMMON / "config").iterdir()) == sorted(f"{m}.toml" for m in MODES)
