"""A host tuned with `--quantize` (OLLAMA_QUANTIZE) is offered that level first by `olol pull`."""

from __future__ import annotations

from olol.placement.quant import host_preferred_level, variant_name


def test_the_hosts_reported_quantize_is_its_preferred_level() -> None:
    assert host_preferred_level({"settings": {"quantize": "q8_0"}}) == "q8_0"
    assert host_preferred_level({"settings": {"quantize": "q5_0"}}) == "q5_0"
    assert variant_name("llama3:8b", "q5_0") == "llama3:8b-q5_0"


def test_default_f16_or_an_unreported_setting_is_no_preference() -> None:
    assert host_preferred_level({"settings": {"quantize": "f16"}}) is None
    assert host_preferred_level({}) is None
    assert host_preferred_level({"settings": "junk"}) is None
