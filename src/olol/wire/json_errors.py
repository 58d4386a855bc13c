"""Python's JSON syntax errors in the words of Go's `encoding/json`, which is what Ollama answers.

Ollama binds a body with gin (`ShouldBindJSON`) and sends the decoder's error as it is: a client
or a test written against Ollama sees "invalid character 'n' looking for beginning of object key
string", never Python's "Expecting property name enclosed in double quotes: line 1 column 2".
The common cases map exactly; the rest keep Go's shape ("invalid character 'c' ...").
"""

from __future__ import annotations

import json

__all__ = ["go_syntax_error"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", "\\": "\\\\"}


def _quote(char: str) -> str:
    """A character as Go's decoder quotes it (`quoteChar`)."""
    if char == "'":
        return "'\\''"
    if char in _ESCAPES:
        return f"'{_ESCAPES[char]}'"
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"'\\x{ord(char):02x}'"
    return f"'{char}'"


def _innermost(doc: str, end: int) -> str | None:
    """The innermost open container (`{` or `[`) at `end`, skipping strings; None at top level."""
    stack: list[str] = []
    in_string = escaped = False
    for char in doc[:end]:
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else None


def go_syntax_error(exc: json.JSONDecodeError) -> str:
    """What Go's decoder says for the input `exc` was raised on."""
    doc, pos, msg = exc.doc, exc.pos, exc.msg
    if msg.startswith("Unterminated string") or not doc[pos:].strip():
        return "unexpected EOF"  # the input ended inside a value (Go reads a stream: io.ErrUnexpectedEOF)
    char = doc[pos]
    if msg.startswith("Invalid \\escape"):
        return f"invalid character {_quote(doc[pos + 1])} in string escape code"
    if msg.startswith("Invalid control character"):
        return f"invalid character {_quote(char)} in string literal"
    if msg.startswith("Expecting property name"):
        return f"invalid character {_quote(char)} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {_quote(char)} after object key"
    if msg.startswith("Expecting ','"):
        where = "object key:value pair" if _innermost(doc, pos) == "{" else "array element"
        return f"invalid character {_quote(char)} after {where}"
    if msg.startswith("Extra data"):
        return f"invalid character {_quote(char)} after top-level value"
    return f"invalid character {_quote(char)} looking for beginning of value"
