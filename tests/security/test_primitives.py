"""Tokens, signatures, replay protection, API keys, adverts: the building blocks, property-tested."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olol.discovery.advert import ADVERT, REGISTRATION, Advert, StrangerAdvert
from olol.discovery.netif import scan_network
from olol.security.apikeys import READ, ApiKeys
from olol.security.signing import ReplayGuard, sign_fields, verify_fields
from olol.security.tokens import Unauthorized, check_token, is_loopback, load_token, token_metadata, warn_if_open
from tests.security.conftest import TOKEN

fields = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(lambda k: k != "sig"), st.text(max_size=40), max_size=8
)


@given(fields, st.text(min_size=1, max_size=40))
def test_signatures_verify_only_with_the_same_token_purpose_and_fields(data: dict[str, str], token: str) -> None:
    signed = {**data, "sig": sign_fields(token, "advert", data)}
    assert verify_fields(token, "advert", signed)
    assert not verify_fields(token + "x", "advert", signed)
    assert not verify_fields(token, "register", signed)  # purposes never cross
    for key in data:
        assert not verify_fields(token, "advert", {**signed, key: data[key] + "!"})
    assert not verify_fields(token, "advert", {**signed, "added": "field"})


def test_check_token_in_constant_shape() -> None:
    check_token(token_metadata(TOKEN), TOKEN)
    check_token((), None)  # auth off
    for metadata in ((), token_metadata("nope"), (("authorization", TOKEN),), (("authorization", b"Bearer x"),)):
        with pytest.raises(Unauthorized):
            check_token(metadata, TOKEN)


def test_load_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "token"
    file.write_text("from-file\n")
    monkeypatch.delenv("OLOL_TOKEN", raising=False)
    monkeypatch.delenv("OLOL_TOKEN_FILE", raising=False)
    assert load_token(None, None) is None
    assert load_token(None, file) == "from-file"
    monkeypatch.setenv("OLOL_TOKEN", "from-env")
    assert load_token(None, file) == "from-env"
    assert load_token("from-flag", file) == "from-flag"
    (tmp_path / "empty").write_text("\n")
    monkeypatch.delenv("OLOL_TOKEN")
    with pytest.raises(ValueError):
        load_token(None, tmp_path / "empty")


def test_no_token_beyond_loopback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("t")
    with caplog.at_level(logging.WARNING):
        warn_if_open(log, "127.0.0.1", 1, None, "agent")
        warn_if_open(log, "0.0.0.0", 1, "token", "agent")
        assert not caplog.records
        warn_if_open(log, "0.0.0.0", 50051, None, "agent")
    assert "no cluster token" in caplog.text
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


def test_replay_guard_accepts_once_and_only_fresh() -> None:
    guard = ReplayGuard(window=60, max_nonces=3)
    assert guard.accept(1000.0, "a", now=1000.0)
    assert not guard.accept(1000.0, "a", now=1001.0)
    assert not guard.accept(900.0, "b", now=1000.0)
    assert not guard.accept(1000.0, "", now=1000.0)
    for nonce in "cdefg":
        assert guard.accept(1000.0, nonce, now=1000.0)
    assert len(guard._seen) <= 3


def test_api_keys_scopes_and_parsing(tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text("# team keys\nfile-key-0123456789abcdef\nmonitor-0123456789abcdef:read  # grafana\n\n")
    keys = ApiKeys.parse(["flag:with:colons-0123456789"], file)
    assert len(keys) == 3
    assert keys.from_header("Bearer monitor-0123456789abcdef").scope == READ  # type: ignore[union-attr]
    assert keys.from_header("bearer file-key-0123456789abcdef") is not None
    assert keys.from_header("Bearer flag:with:colons-0123456789") is not None
    for header in (None, "", "Bearer", "Basic file-key-0123456789abcdef", "Bearer monitor-0123456789abcdef:read"):
        assert keys.from_header(header) is None
    with pytest.raises(ValueError):
        ApiKeys.parse(["short"])


def test_adverts_signed_for_one_cluster_and_purpose() -> None:
    advert = Advert("agent", "gpu1:50051", 50051, ("10.0.0.2",), cluster="lab")
    txt = {k.encode(): v.encode() for k, v in advert.signed(TOKEN).items()}
    assert Advert.parse(txt, token=TOKEN, cluster="lab").targets() == ["10.0.0.2:50051"]
    with pytest.raises(StrangerAdvert, match="cluster"):
        Advert.parse(txt, token=TOKEN, cluster="other")
    with pytest.raises(StrangerAdvert, match="signature"):
        Advert.parse(txt, token="another-token", cluster="lab")
    with pytest.raises(StrangerAdvert, match="unsigned"):
        Advert.parse(advert.signed(None), token=TOKEN, cluster="lab")
    with pytest.raises(StrangerAdvert):  # an advert is not a registration
        Advert.parse(advert.signed(TOKEN, ADVERT), token=TOKEN, cluster="lab", purpose=REGISTRATION)
    relayed = {**advert.signed(TOKEN), "addrs": "10.6.6.6"}
    with pytest.raises(StrangerAdvert):
        Advert.parse(relayed, token=TOKEN, cluster="lab")
    assert Advert.parse(advert.signed(None), token=None, cluster="lab").node_id == "gpu1:50051"  # auth off


def test_scan_is_limited_to_a_private_slash_24(monkeypatch: pytest.MonkeyPatch) -> None:
    from olol.discovery import netif

    def fake(name: str) -> list[tuple[str, str]]:
        return {
            "lan": [("192.168.7.23", "255.255.0.0")],
            "wan": [("8.8.4.4", "255.255.255.0")],
            "small": [("10.1.2.3", "255.255.255.240")],
        }[name]

    monkeypatch.setattr(netif, "interface_ipv4", fake)
    assert str(scan_network("lan")) == "192.168.7.0/24"  # a /16 is narrowed to our /24
    assert str(scan_network("small")) == "10.1.2.0/28"  # a smaller network stays as small
    with pytest.raises(ValueError, match="private"):
        scan_network("wan")
