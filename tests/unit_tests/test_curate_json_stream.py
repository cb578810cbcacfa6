"""The streaming JSON array splitter: elements, line numbers, chunk boundaries, errors."""

from __future__ import annotations

import io
import json
import random

import pytest

from refine_n_judge.curate.json_stream import JsonArrayError, JsonArrayReader


def split(text: str, chunk: int = 3) -> list[tuple[int, str]]:
    return [(e.line, e.text) for e in JsonArrayReader(io.StringIO(text), chunk_chars=chunk)]


def test_elements_with_tricky_strings_and_nesting() -> None:
    text = '[{"a": "x,]\\"}"}, 2,\n [3, {"b": [1]}]\n, "s\\\\"]'
    assert split(text) == [
        (1, '{"a": "x,]\\"}"}'),
        (1, "2"),
        (2, '[3, {"b": [1]}]'),
        (3, '"s\\\\"'),
    ]


@pytest.mark.parametrize("text", ["[]", "  \n[ ]  \n", "\ufeff[]"])
def test_empty_arrays(text: str) -> None:
    assert split(text) == []


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param("", 1, "empty", id="empty-file"),
        pytest.param('\n{"a": 1}', 2, "not a JSON array", id="object"),
        pytest.param("[1,]", 1, "empty", id="trailing-comma"),
        pytest.param("[1,\n,2]", 2, "empty", id="double-comma"),
        pytest.param("[1,\n2", 2, "ends before the array is closed", id="unclosed"),
        pytest.param('[1, "abc', 1, "ends inside a string", id="unclosed-string"),
        pytest.param("[1]\n x", 2, "after the closing", id="trailing-text"),
    ],
)
def test_structural_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(JsonArrayError, match=words) as caught:
        split(text)
    assert caught.value.line == line


def test_a_malformed_element_is_isolated() -> None:
    elements = split('[{"a":1 "b":2},\n{"c":3}]')
    assert elements == [(1, '{"a":1 "b":2}'), (2, '{"c":3}')]
    with pytest.raises(json.JSONDecodeError):
        json.loads(elements[0][1])


@pytest.mark.parametrize("chunk", [1, 2, 7, 4096])
def test_matches_json_loads_on_random_documents(chunk: int) -> None:
    rng = random.Random(chunk)
    alphabet = 'ab,[]{}":\\\n\t é'
    for _ in range(60):
        data = [
            {
                "q": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))),
                "n": [1, {"x": "]"}, None, True],
            }
            for _ in range(rng.randint(0, 5))
        ]
        text = json.dumps(data, indent=rng.choice([None, 1]), ensure_ascii=rng.random() < 0.5)
        got = [json.loads(e.text) for e in JsonArrayReader(io.StringIO(text), chunk_chars=chunk)]
        assert got == data
