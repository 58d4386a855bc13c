"""Generated protobuf modules are regenerated in a source checkout when missing or stale, and never in an
installed layout (which has no protoc)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import olol._proto_build
from olol import _proto_fresh


def layout(root: Path, *, generated_age: float | None) -> Path:
    """A checkout-like tree under `root`: protos/x.proto and, unless None, a generated x_pb2.py that is
    `generated_age` seconds older (negative: newer) than the proto."""
    (root / "protos").mkdir(parents=True)
    proto = root / "protos" / "x.proto"
    proto.write_text('syntax = "proto3";\n')
    package = root / "src" / "olol"
    (package / "_proto").mkdir(parents=True)
    if generated_age is not None:
        generated = package / "_proto" / "x_pb2.py"
        generated.write_text("")
        stamp = proto.stat().st_mtime - generated_age
        os.utime(generated, (stamp, stamp))
    return package / "_proto_fresh.py"


@pytest.mark.parametrize(
    ("age", "regenerated"), [(None, True), (60.0, True), (-60.0, False)], ids=["missing", "stale", "current"]
)
def test_checkout_regenerates_only_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, age: float | None, regenerated: bool
) -> None:
    calls: list[tuple[Path, Path]] = []
    monkeypatch.setattr(olol._proto_build, "generate", lambda protos, out: calls.append((protos, out)))
    monkeypatch.setattr(_proto_fresh, "__file__", str(layout(tmp_path, generated_age=age)))
    _proto_fresh.ensure_current()
    assert calls == ([(tmp_path / "protos", tmp_path / "src" / "olol" / "_proto")] if regenerated else [])


def test_installed_layout_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(olol._proto_build, "generate", lambda *a: calls.append(a))
    fake = layout(tmp_path / "site", generated_age=None)  # protos missing generated files, but...
    installed = tmp_path / "site-packages" / "olol" / "_proto_fresh.py"  # ...not in a src/ layout
    installed.parent.mkdir(parents=True)
    monkeypatch.setattr(_proto_fresh, "__file__", str(installed))
    _proto_fresh.ensure_current()
    assert calls == [] and fake.parent.exists()
