"""Every hot-path test runs against both implementations: the pure-Python twin and,
when it was built, the compiled extension (`python setup.py build_ext --inplace`)."""

from __future__ import annotations

from types import ModuleType

import pytest

from olol._fast import compiled, pure

NOT_BUILT = "Cython extension not built"


def implementations(name: str) -> list[object]:
    module = compiled(name)
    return [
        pytest.param(pure(name), id="pure"),
        pytest.param(module, id="compiled", marks=pytest.mark.skipif(module is None, reason=NOT_BUILT)),
    ]


def needs_compiled(name: str) -> pytest.MarkDecorator:
    """Skip a differential test (before hypothesis starts) when the extension is not built."""
    return pytest.mark.skipif(compiled(name) is None, reason=NOT_BUILT)


def both(name: str) -> tuple[ModuleType, ModuleType]:
    """(twin, compiled) for differential tests marked `needs_compiled(name)`."""
    module = compiled(name)
    assert module is not None
    return pure(name), module


# Module-scoped: the implementations are stateless modules, and hypothesis tests
# may only use fixtures that are not reset between examples.
@pytest.fixture(scope="module", params=implementations("quant"))
def quant(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture(scope="module", params=implementations("framing"))
def framing(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture(scope="module", params=implementations("binpack"))
def binpack(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture(scope="module", params=implementations("prefix"))
def prefix(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module
