"""JSON syntax errors read as Go's `encoding/json` words them (what Ollama answers, through gin)."""

from __future__ import annotations

import json

import pytest

from olol.wire.json_errors import go_syntax_error

# Each Go text is what encoding/json reports for the input (json.Unmarshal's SyntaxError; a stream
# that ends inside a value is io.ErrUnexpectedEOF, as gin's decoder reads the body).
CASES = [
    ('{not json', "invalid character 'n' looking for beginning of object key string"),
    ('{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    ('{"a" 1}', "invalid character '1' after object key"),
    ('{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    ('[1 2]', "invalid character '2' after array element"),
    ('{"a":[1 2]}', "invalid character '2' after array element"),
    ('{"a":"[{", "b":1 "c":2}', "invalid character '\"' after object key:value pair"),  # brackets in strings
    ('[1,]', "invalid character ']' looking for beginning of value"),
    ('{"a":', "unexpected EOF"),
    ('{"a":"b', "unexpected EOF"),
    ('{"a":"\x01"}', "invalid character '\\x01' in string literal"),
    ('{"a":"\n"}', "invalid character '\\n' in string literal"),
    ('{"a":"\\q"}', "invalid character 'q' in string escape code"),
    ("{} x", "invalid character 'x' after top-level value"),
    ("'a'", "invalid character '\\'' looking for beginning of value"),
]


@pytest.mark.parametrize(("doc", "go"), CASES)
def test_python_errors_read_as_gos(doc: str, go: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads(doc)
    assert go_syntax_error(caught.value) == go
