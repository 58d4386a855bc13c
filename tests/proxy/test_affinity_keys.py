from __future__ import annotations

from olol.proxy.affinity import session_key


def chat(*messages: tuple[str, str], model: str = "llama3") -> dict[str, object]:
    return {"model": model, "messages": [{"role": r, "content": c} for r, c in messages]}


def test_header_wins() -> None:
    assert session_key("abc", chat(("user", "hi"))) == "h:abc"


def test_follow_up_turns_share_the_prefix_key() -> None:
    first = chat(("system", "be brief"), ("user", "hi"))
    later = chat(("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "more"))
    assert session_key(None, first) == session_key(None, later) is not None


def test_model_spelling_does_not_matter_but_the_model_does() -> None:
    assert session_key(None, chat(("user", "hi"), model="llama3")) == \
        session_key(None, chat(("user", "hi"), model="llama3:latest"))
    assert session_key(None, chat(("user", "hi"), model="phi3")) != session_key(None, chat(("user", "hi")))


def test_different_system_prompt_is_another_conversation() -> None:
    assert session_key(None, chat(("system", "a"), ("user", "hi"))) != \
        session_key(None, chat(("system", "b"), ("user", "hi")))


def test_no_key_without_header_or_user_message() -> None:
    assert session_key(None, {"model": "m", "prompt": "hi"}) is None
    assert session_key("  ", chat(("system", "s"))) is None
