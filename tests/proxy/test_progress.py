"""Merging several hosts' pull feeds into one Ollama-shaped feed."""

from __future__ import annotations

from olol.placement.progress import ProgressMerger

LAYER = {"status": "pulling abc", "digest": "sha256:abc", "total": 100}


def test_opening_phase_once_then_layer_progress_as_one_ollama() -> None:
    # Was: total summed over replicas (200 for two copies of a 100-byte layer). The issue changes it:
    # total is the layer's size, completed the mean of the hosts, and no line repeats the last.
    m = ProgressMerger(["a", "b"])
    assert m.feed("a", {"status": "pulling manifest"}) == [{"status": "pulling manifest"}]
    assert m.feed("b", {"status": "pulling manifest"}) == []
    assert m.feed("a", {**LAYER, "completed": 50}) == [
        {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 25}]
    assert m.feed("b", {**LAYER, "completed": 0}) == []  # nothing new to say
    assert m.feed("b", {**LAYER, "completed": 100}) == [
        {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 75}]


def test_later_phases_wait_for_every_live_host_and_keep_order() -> None:
    m = ProgressMerger(["a", "b"])
    m.feed("a", {**LAYER, "completed": 100})
    assert m.feed("a", {"status": "verifying sha256 digest"}) == []
    assert m.feed("a", {"status": "writing manifest"}) == []
    assert m.feed("b", {"status": "verifying sha256 digest"}) == [{"status": "verifying sha256 digest"}]
    assert m.feed("b", {"status": "writing manifest"}) == [{"status": "writing manifest"}]


def test_a_failed_host_is_reported_and_no_longer_awaited() -> None:
    m = ProgressMerger(["a", "b"])
    m.feed("a", {**LAYER, "completed": 100})
    m.feed("a", {"status": "writing manifest"})
    lines = m.feed("b", {"error": "pull model manifest: file does not exist"})
    assert lines[0] == {"status": "b: pull model manifest: file does not exist",
                        "olol": {"host": "b", "error": "pull model manifest: file does not exist"}}
    assert lines[1:] == [{"status": "writing manifest"}]
    assert "error" not in lines[0]  # clients abort a feed on an error key
    m.feed("a", {"status": "success"})
    assert m.final() == {"status": "success", "olol": {"hosts": ["a"], "failed": {
        "b": "pull model manifest: file does not exist"}, "skipped": {}}}


def test_a_failed_host_never_moves_the_bar_back() -> None:
    m = ProgressMerger(["a", "b"])
    m.feed("a", {**LAYER, "completed": 40})
    m.feed("b", {**LAYER, "completed": 100})  # mean 70
    m.fail("b", "disk full")
    assert m.feed("a", {**LAYER, "completed": 60}) == []  # 60 < 70 shown: no line backwards
    assert m.feed("a", {**LAYER, "completed": 90})[0] == {**LAYER, "completed": 90}


def test_every_host_failed_ends_with_an_error() -> None:
    m = ProgressMerger(["a", "b"])
    m.fail("a", "x")
    m.fail("b", "y")
    assert m.final() == {"error": "failed on every host: a: x; b: y"}


def test_skipped_hosts_are_not_failures() -> None:
    m = ProgressMerger(["a", "b"])
    m.skip("b", "llamacpp backend cannot pull models")
    m.feed("a", {"status": "success"})
    final = m.final()
    assert final["status"] == "success" and final["olol"]["skipped"] == {"b": "llamacpp backend cannot pull models"}
