"""Keep the generated olol._proto in step with protos/ when running from a source checkout.

Importing a stale generated module would fail, or lack the newest calls, when a
.proto changed since the last build; an unbuilt checkout has none at all. An
installed package or a binary was generated at build time and has no protos/
beside it (and no protoc: `olol._proto_build` is left out of binaries), so the
check is only made in the `src/` layout of a checkout.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ensure_current"]


def ensure_current() -> None:
    package = Path(__file__).resolve().parent
    if package.parent.name != "src":
        return
    protos = package.parents[1] / "protos"
    out = package / "_proto"
    for proto in protos.glob("*.proto"):
        generated = out / f"{proto.stem}_pb2.py"
        if not generated.exists() or generated.stat().st_mtime < proto.stat().st_mtime:
            from olol._proto_build import generate  # build-time tool (grpc_tools)

            generate(protos, out)
            return
