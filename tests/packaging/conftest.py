"""Packaging tests: recipe checks run in the default suite; `packaging`-marked ones need dist/olol.

The marked tests (the built binary, the .deb in a debootstrap root) are deselected
unless the run asks for them with `-m packaging`, as `packaging/package-test` does:
building the binary takes half an hour, so the default `python -m pytest` never does.
"""

from __future__ import annotations

import pytest

MARKER = "packaging"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: needs the built one-file binary (dist/olol); run packaging/package-test"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MARKER in (config.option.markexpr or ""):
        return
    deselected = [item for item in items if item.get_closest_marker(MARKER)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(MARKER)]
