"""Quant levels: parsing names, the compatibility matrix, and picking the best stand-in."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from olol._fast._quant_table import ALIASES, LEVELS, TOKENS
from tests.fast.conftest import both, needs_compiled

LEGACY = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")
SEED = {
    "q4_0": {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0"},
    "q5_0": {"q5_0", "q5_1", "q8_0"},
    "q8_0": {"q8_0"},
    "f16": {"f16"},
}


def served_by(quant: ModuleType, requested: str) -> set[str]:
    return {a for a in LEVELS if quant.compatible(requested, a)}


@pytest.mark.parametrize("requested", sorted(SEED))
def test_seed_matrix(quant: ModuleType, requested: str) -> None:
    assert served_by(quant, requested) == SEED[requested]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("q4_k_s", {"q4_k_s", "q4_k_m", "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k", "q8_0"}),
        ("q4_k_m", {"q4_k_m", "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k", "q8_0"}),
        ("q6_k", {"q6_k", "q8_0"}),
        ("iq4_xs", {"iq4_xs", "q4_k_s", "iq4_nl", "q4_k_m", "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k", "q8_0"}),
        ("tq1_0", {"tq1_0", "tq2_0"}),
        ("mxfp4", {"mxfp4"}),
        ("bf16", {"bf16"}),
        ("f32", {"f32"}),
    ],
)
def test_extended_matrix(quant: ModuleType, requested: str, expected: set[str]) -> None:
    assert served_by(quant, requested) == expected


def test_legacy_requests_never_get_newer_formats(quant: ModuleType) -> None:
    for requested in LEGACY:
        assert served_by(quant, requested) <= set(LEGACY)


def test_matrix_is_reflexive_and_transitive(quant: ModuleType) -> None:
    # A stand-in for a stand-in is a stand-in, so a router may chain substitutions.
    for r in LEVELS:
        assert quant.compatible(r, r)
        for a in served_by(quant, r):
            assert served_by(quant, a) <= served_by(quant, r), (r, a)


def test_candidates_agree_with_compatible(quant: ModuleType) -> None:
    for r in TOKENS:
        cands = quant.candidates(r)
        assert cands[0] == TOKENS[r]
        assert [quant.rank(c) for c in cands[1:]] == sorted(quant.rank(c) for c in cands[1:])
        assert all(quant.rank(c) > quant.rank(r) for c in cands[1:])
        for a in TOKENS:
            assert quant.compatible(r, a) == (TOKENS[a] in cands), (r, a)


def test_candidates_order_is_closest_higher_quality_first(quant: ModuleType) -> None:
    assert quant.candidates("q4_0") == ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
    assert quant.candidates("Q4_K_M")[:3] == ["q4_k_m", "q5_0", "q5_1"]


def test_ranks(quant: ModuleType) -> None:
    assert [quant.rank(level) for level in LEGACY] == sorted(quant.rank(level) for level in LEGACY)
    assert quant.rank("Q4_K_M") == quant.rank("q4_k") > quant.rank("q4_k_s") > quant.rank("q3_k_l")
    assert quant.rank("fp16") == quant.rank("f16")
    assert quant.rank("q7_x") == -1


def test_unknown_levels_match_only_themselves(quant: ModuleType) -> None:
    assert quant.compatible("Q7_X", "q7_x")
    assert not quant.compatible("q7_x", "q8_0")
    assert not quant.compatible("q4_0", "q7_x")
    assert quant.candidates("Q7_X") == ["q7_x"]
    assert quant.normalize_level("q7_x") is None


def test_aliases(quant: ModuleType) -> None:
    for alias, level in ALIASES.items():
        assert quant.normalize_level(alias.upper()) == level
    assert quant.compatible("fp16", "F16")


@pytest.mark.parametrize(
    ("name", "base", "level"),
    [
        ("llama3:8b-instruct-q4_0", "llama3:8b-instruct", "q4_0"),
        ("llama3:8b-instruct-Q4_K_M", "llama3:8b-instruct", "q4_k_m"),
        ("llama3:70b-instruct-fp16", "llama3:70b-instruct", "f16"),
        ("gemma2:9b-instruct-bf16", "gemma2:9b-instruct", "bf16"),
        ("qwen2.5:7b-instruct-iq4_xs", "qwen2.5:7b-instruct", "iq4_xs"),
        ("llava:13b-v1.6-vicuna-q8_0", "llava:13b-v1.6-vicuna", "q8_0"),
        ("mistral:7b-instruct-q4_K", "mistral:7b-instruct", "q4_k_m"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/llama-3.2-1b-instruct-gguf:latest",
            "q4_k_m",
        ),
        ("Meta-Llama-3-8B-Instruct.Q5_K_S.gguf", "meta-llama-3-8b-instruct:latest", "q5_k_s"),
        ("phi3_mini_q4_k_m", "phi3_mini:latest", "q4_k_m"),
        ("localhost:5000/team/model:7b-q6_K", "localhost:5000/team/model:7b", "q6_k"),
        ("llama3", "llama3:latest", None),
        ("llama3:8b", "llama3:8b", None),
        ("qwen2.5:0.5b", "qwen2.5:0.5b", None),
        ("q4_0", "q4_0:latest", None),  # a model called q4_0, not a quant of nothing
        ("  Llama3:8B-Q4_0 ", "llama3:8b", "q4_0"),
    ],
)
def test_split_name(quant: ModuleType, name: str, base: str, level: str | None) -> None:
    assert quant.split_name(name) == (base, level)
    assert quant.parse_level(name) == level
    assert quant.base_name(name) == base


def test_names_are_compared_with_the_one_normaliser(quant: ModuleType) -> None:
    # (The normaliser's own cases: tests/fast/test_names.py.) The default registry is no part of a name,
    # nor is a GGUF file's extension.
    assert quant.best_match("registry.ollama.ai/library/llama3:8b-q5_1", REGISTRY) == "llama3:8b-q5_1"
    assert quant.best_match("library/llama3:8b-q4_0", REGISTRY) == "llama3:8b-q5_1"
    assert quant.best_match("llama3:8b-q8_0", ["library/llama3:8b-q8_0"]) == "library/llama3:8b-q8_0"
    assert quant.best_match("Llama3.gguf", ["llama3:latest"]) == "llama3:latest"
    assert quant.split_name("registry.ollama.ai/library/llama3:8b-Q4_0") == ("llama3:8b", "q4_0")


REGISTRY = [
    "mistral:7b-q4_0",
    "llama3:8b-q8_0",
    "llama3:8b-q5_1",
    "llama3:8b-q4_k_m",
    "llama3:8b-fp16",
    "llama3:70b-q4_0",
]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("llama3:8b-q4_0", "llama3:8b-q5_1"),  # closest higher legacy level, not q8_0 nor q4_k_m
        ("LLAMA3:8B-Q5_1", "llama3:8b-q5_1"),  # exact, case-insensitively
        ("llama3:8b-q4_K_S", "llama3:8b-q4_k_m"),
        ("llama3:8b-q6_k", "llama3:8b-q8_0"),
        ("llama3:8b-f16", "llama3:8b-fp16"),
        ("llama3:8b-bf16", None),
        ("llama3:8b", "llama3:8b-q8_0"),  # no level asked: best quantized, not the float
        ("llama3:70b-q8_0", None),  # only a lower level exists
        ("mixtral:8x7b-q4_0", None),
    ],
)
def test_best_match(quant: ModuleType, requested: str, expected: str | None) -> None:
    assert quant.best_match(requested, REGISTRY) == expected


def test_best_match_exact_name_wins(quant: ModuleType) -> None:
    models = ["llama3:8b-q8_0", "llama3", "llama3:latest-q4_0"]
    assert quant.best_match("llama3:latest", models) == "llama3"
    assert quant.best_match("Llama3", ["llama3:q8_0", "llama3:latest"]) == "llama3:latest"
    # the tag holds only the level: base llama3:latest
    assert quant.best_match("llama3:q4_0", ["llama3:q8_0", "llama3:q4_1"]) == "llama3:q4_1"


def test_best_match_ties_keep_input_order(quant: ModuleType) -> None:
    assert quant.best_match("m:1b-q4_0", ["m:1b-Q4_1", "m:1b-q4_1"]) == "m:1b-Q4_1"
    assert quant.best_match("m:1b-q4_0", []) is None


tags = st.sampled_from(["", "8b", "8b-instruct", "70b-text-v1.5", "latest"])
bases = st.sampled_from(["llama3", "qwen2.5", "hf.co/ns/Model-GGUF", "host:5000/a/b"])


@given(base=bases, tag=tags, token=st.sampled_from(sorted(TOKENS)), upper=st.booleans())
def test_split_recovers_parts(quant: ModuleType, base: str, tag: str, token: str, upper: bool) -> None:
    suffix = token.upper() if upper else token
    name = f"{base}:{tag}-{suffix}" if tag else f"{base}:{suffix}"
    expected_base = f"{base}:{tag or 'latest'}".lower()
    assert quant.split_name(name) == (expected_base, TOKENS[token])
    # whatever the registry order, the exact name is found
    assert quant.best_match(name.upper(), [f"{base}:other", name]) == name


names = st.text(alphabet=st.sampled_from("abQK_-.:/0123458 fpi"), max_size=24) | st.text(max_size=12)


@needs_compiled("quant")
@settings(max_examples=300)
@given(name=names, other=names, models=st.lists(names, max_size=6))
@example(name="", other="", models=["\x1f"])  # str.strip() also removes \x1c-\x1f
@example(name=" Q4_0\x1c", other="\tq4_0 ", models=["\u00c9t\u00e9:Q4_0", "\x1cm:Q4_1 "])
def test_compiled_matches_twin(name: str, other: str, models: list[str]) -> None:
    twin, compiled = both("quant")
    assert compiled.split_name(name) == twin.split_name(name)
    assert compiled.compatible(name, other) == twin.compatible(name, other)
    assert compiled.candidates(name) == twin.candidates(name)
    assert compiled.rank(name) == twin.rank(name)
    assert compiled.best_match(name, models) == twin.best_match(name, models)
