"""The loader picks the compiled module unless told not to, and both twins expose one API."""

from __future__ import annotations

import importlib

import pytest

import olol._fast as fast
from tests.fast.conftest import NOT_BUILT


@pytest.mark.parametrize("name", fast.NAMES)
def test_load_prefers_compiled_and_env_forces_twin(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fast.PURE_PYTHON_ENV, raising=False)
    built = fast.compiled(name) is not None
    assert fast.load(name).__name__ == (f"olol._fast.{name}_c" if built else f"olol._fast._{name}_py")
    assert fast.active()[name] is built
    monkeypatch.setenv(fast.PURE_PYTHON_ENV, "1")
    assert fast.load(name) is fast.pure(name)
    assert fast.active()[name] is False
    monkeypatch.setenv(fast.PURE_PYTHON_ENV, "0")  # "0" means unset
    assert fast.active()[name] is built


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown hot path"):
        fast.load("nope")


@pytest.mark.parametrize("name", fast.NAMES)
def test_twins_share_public_api(name: str) -> None:
    compiled = fast.compiled(name)
    if compiled is None:
        pytest.skip(NOT_BUILT)
    twin = fast.pure(name)
    assert list(compiled.__all__) == list(twin.__all__)
    for attr in twin.__all__:
        assert hasattr(compiled, attr), attr


@pytest.mark.parametrize("name", fast.NAMES)
def test_facade_exports_the_loaded_implementation(name: str) -> None:
    facade = importlib.import_module(f"olol._fast.{name}")
    assert fast.load(name).__name__ == facade.IMPLEMENTATION
    for attr in facade.__all__:
        assert hasattr(facade, attr), attr
