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


def test_prefix_text_grows_with_the_conversation_and_matches_generate() -> None:
    from olol.proxy.affinity import prefix_text

    turn1 = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    turn2 = [*turn1, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    one, two = prefix_text({"messages": turn1}), prefix_text({"messages": turn2})
    assert one is not None and two is not None and two.startswith(one) and len(two) > len(one)
    assert prefix_text({"system": "be brief", "prompt": "hi"}) == one  # same words, same cache key
    with_tools = prefix_text({"messages": turn1, "tools": [{"type": "function"}]})
    assert with_tools is not None and with_tools.endswith(one) and with_tools != one
    assert prefix_text({"prompt": ""}) is None and prefix_text({}) is None
    assert session_key(None, {"messages": turn1}, conversations=False) is None
    assert session_key("u1", {"messages": turn1}, conversations=False) == "h:u1"


def test_prefix_text_keeps_lone_surrogates_from_json() -> None:
    from olol.proxy.affinity import prefix_text

    text = prefix_text({"prompt": "odd \ud800 text"})  # valid JSON ("\\ud800"), not encodable as plain UTF-8
    assert text is not None and text.endswith(b"\x1e")


def test_prefix_text_keeps_the_first_quarter_mebichar_of_a_long_prompt() -> None:
    from olol.proxy.affinity.keys import MAX_PREFIX_CHARS, prefix_text

    system = {"role": "system", "content": "s" * 100}
    short = prefix_text({"messages": [system, {"role": "user", "content": "u" * 100}]})
    document = "d" * (4 * MAX_PREFIX_CHARS)
    long = prefix_text({"messages": [system, {"role": "user", "content": document},
                                     {"role": "user", "content": "and a question"}]})
    assert short is not None and long is not None
    assert len(long) == MAX_PREFIX_CHARS and long.startswith(short[: short.index(b"user")])
    assert long.endswith(b"d" * 1000)  # cut inside the document: the question after it is not reached
