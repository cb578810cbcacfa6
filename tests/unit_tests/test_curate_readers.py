"""Input readers: every format, the chat-messages form, field mapping, stable ids, and
every kind of bad input with a message naming its file, line and field."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge.curate.errors import InputRowError, SettingsError
from refine_n_judge.curate.readers import count_rows, detect_format, read_items
from refine_n_judge.curate.records import InputItem
from refine_n_judge.curate.rows import FieldMap, stable_id

ROWS: list[dict[str, Any]] = [
    {"id": "r1", "question": "What is 2+2?", "answer": "4", "reference": "4"},
    {"id": "r2", "question": "Capital of France?", "answer": "Paris is the capital."},
    {"id": "r3", "question": "Write a haiku."},
]


def read(
    path: Path, fields: FieldMap | None = None, max_chars: int = 1000, fmt: Any = None
) -> list[InputItem | InputRowError]:
    return list(
        read_items(
            path,
            detect_format(path, fmt),
            fields or FieldMap(),
            source=path.name,
            max_chars=max_chars,
        )
    )


def items(results: list[InputItem | InputRowError]) -> list[InputItem]:
    assert all(isinstance(r, InputItem) for r in results), results
    return results  # type: ignore[return-value]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    names = ["id", "question", "answer", "reference"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, delimiter=delimiter)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in names})
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    return path


def as_tuples(results: list[InputItem | InputRowError]) -> list[tuple[Any, ...]]:
    return [(i.id, i.question, i.answer, i.reference) for i in items(results)]


EXPECTED = [
    ("r1", "What is 2+2?", "4", "4"),
    ("r2", "Capital of France?", "Paris is the capital.", None),
    ("r3", "Write a haiku.", None, None),
]


@pytest.mark.parametrize(
    "writer",
    [
        pytest.param(lambda d: write_jsonl(d / "in.jsonl", ROWS), id="jsonl"),
        pytest.param(
            lambda d: (d / "in.json").write_text(json.dumps(ROWS, indent=2)) and d / "in.json",
            id="json-array",
        ),
        pytest.param(lambda d: write_csv(d / "in.csv", ROWS), id="csv"),
        pytest.param(lambda d: write_csv(d / "in.tsv", ROWS, delimiter="\t"), id="tsv"),
        pytest.param(lambda d: write_parquet(d / "in.parquet", ROWS), id="parquet"),
    ],
)
def test_every_format_reads_the_same_items(tmp_path: Path, writer: Any) -> None:
    path = writer(tmp_path)
    results = read(path)
    assert as_tuples(results) == EXPECTED
    assert all(i.source == path.name for i in items(results))
    if path.suffix in (".jsonl", ".parquet"):
        assert [i.line for i in items(results)] == [1, 2, 3]


def test_line_numbers_point_at_the_row_in_the_file(tmp_path: Path) -> None:
    array = tmp_path / "in.json"
    array.write_text(json.dumps(ROWS, indent=2))
    text_lines = array.read_text().splitlines()
    for item in items(read(array)):
        assert text_lines[item.line - 1].strip() == "{"
        assert item.id in text_lines[item.line]
    table = write_csv(tmp_path / "in.csv", ROWS)
    assert [i.line for i in items(read(table))] == [2, 3, 4]  # line 1 is the header


def test_gzip_compressed_jsonl_and_csv(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "in.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in ROWS)
    assert as_tuples(read(tmp_path / "in.jsonl.gz")) == EXPECTED
    plain = write_csv(tmp_path / "plain.csv", ROWS)
    with gzip.open(tmp_path / "in.csv.gz", "wb") as handle:
        handle.write(plain.read_bytes())
    assert as_tuples(read(tmp_path / "in.csv.gz")) == EXPECTED


def test_a_json_file_with_one_object_per_line_is_read_as_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.json", ROWS)
    assert detect_format(path) == "jsonl"
    assert as_tuples(read(path)) == EXPECTED


def test_unknown_extension_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(SettingsError, match=r"--input-format"):
        detect_format(path)
    assert detect_format(path, "jsonl") == "jsonl"


def test_blank_lines_are_skipped_and_counted_for_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n" + json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]))
    assert [i.line for i in items(read(path))] == [2, 4]


# --------------------------------------------------------------------------- messages


def test_messages_take_the_last_user_turn_and_the_assistant_reply_after_it(
    tmp_path: Path,
) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second "}, {"text": "question"}]},
        {"role": "assistant", "content": "second answer"},
    ]
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"id": "c1", "messages": conversation},
            {"id": "c2", "messages": conversation[:4]},  # ends on the user: generate
        ],
    )
    got = items(read(path))
    assert (got[0].question, got[0].answer) == ("second question", "second answer")
    assert (got[1].question, got[1].answer) == ("second question", None)


def test_messages_in_parquet_and_csv(tmp_path: Path) -> None:
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    parquet = write_parquet(tmp_path / "chat.parquet", [{"id": "p", "messages": conversation}])
    assert [(i.question, i.answer) for i in items(read(parquet))] == [("hi", "hello")]
    table = tmp_path / "chat.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "messages"])
        writer.writerow(["c", json.dumps(conversation)])
    assert [(i.question, i.answer) for i in items(read(table))] == [("hi", "hello")]


@pytest.mark.parametrize(
    ("messages", "field", "kind", "words"),
    [
        pytest.param("not a list", "messages", "wrong_type", "list of chat messages", id="str"),
        pytest.param([{"role": "system", "content": "s"}], "messages", "missing_field",
                     "no user turn", id="no-user"),
        pytest.param([{"content": "x"}], "messages[0]", "wrong_type", "'role'", id="no-role"),
        pytest.param([{"role": "user", "content": "  "}], "messages[0].content", "empty_field",
                     "is empty", id="empty-question"),
        pytest.param([{"role": "user", "content": 3}], "messages[0].content", "wrong_type",
                     "must be a string", id="number-content"),
    ],
)  # fmt: skip
def test_bad_messages(tmp_path: Path, messages: Any, field: str, kind: str, words: str) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [{"id": "x", "messages": messages}])
    [error] = read(path)
    assert isinstance(error, InputRowError)
    assert (error.field, error.kind, error.line) == (field, kind, 1)
    assert words in error.describe()
    assert error.describe().startswith(f"chat.jsonl:1: field {field!r}: ")


# --------------------------------------------------------------------------- mapping, ids


def test_field_mapping_with_nested_names(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [{"meta": {"uid": 7}, "prompt": "Q?", "response": "A.", "gold": "G."}],
    )
    fields = FieldMap(id="meta.uid", question="prompt", answer="response", reference="gold")
    [item] = items(read(path, fields))
    assert (item.id, item.question, item.answer, item.reference) == ("7", "Q?", "A.", "G.")


def test_missing_ids_are_stable_and_made_from_the_content(tmp_path: Path) -> None:
    rows = [{"question": "q1", "answer": "a1"}, {"question": "q2"}]
    first = items(read(write_jsonl(tmp_path / "a.jsonl", rows)))
    again = items(read(write_csv(tmp_path / "b.csv", rows)))
    assert [i.id for i in first] == [i.id for i in again]
    assert first[0].id == stable_id("q1", "a1", None)
    assert first[0].id != first[1].id
    assert first[0].id.startswith("auto-")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("line", "kind", "field", "words"),
    [
        pytest.param('{"id": "a", "question": "q"', "malformed", None, "is not valid JSON",
                     id="malformed-json"),
        pytest.param('{"id": "a", "answer": "x"}', "missing_field", "question",
                     "is missing", id="missing-question"),
        pytest.param('{"id": "a", "question": "   "}', "empty_field", "question", "is empty",
                     id="empty-question"),
        pytest.param('{"id": "a", "question": "q", "answer": ""}', "empty_field", "answer",
                     "set it to null", id="empty-answer"),
        pytest.param('{"id": "", "question": "q"}', "empty_field", "id", "is empty",
                     id="empty-id"),
        pytest.param('{"id": "a", "question": ["q"]}', "wrong_type", "question",
                     "got a JSON array", id="question-list"),
        pytest.param('{"id": "a", "question": "q", "answer": 4}', "wrong_type", "answer",
                     "got a JSON number", id="answer-number"),
        pytest.param('{"id": 1.5, "question": "q"}', "wrong_type", "id",
                     "string or an integer", id="id-float"),
        pytest.param('["q", "a"]', "wrong_type", None, "not an object", id="row-array"),
        pytest.param('{"id": "a", "question": "' + "x" * 101 + '"}', "too_long", "question",
                     "more than --max-chars 100", id="too-long"),
    ],
)  # fmt: skip
def test_each_bad_row_names_file_line_field_and_the_rest_is_read(
    tmp_path: Path, line: str, kind: str, field: str | None, words: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + line + "\n" + json.dumps(ROWS[1]) + "\n")
    first, error, last = read(path, max_chars=100)
    assert isinstance(first, InputItem) and isinstance(last, InputItem)
    assert isinstance(error, InputRowError)
    assert (error.source, error.line, error.kind, error.field) == ("bad.jsonl", 2, kind, field)
    message = error.describe()
    assert message.startswith("bad.jsonl:2: ")
    if field:
        assert f"field {field!r}" in message
    assert words in message
    assert error.raw  # the failure row shows what was read


def test_missing_field_message_lists_the_keys_and_the_flag(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a"}])
    [error] = read(path)
    assert isinstance(error, InputRowError)
    assert "completion, prompt" in error.message
    assert "--question-field" in error.message


def test_invalid_utf8_line_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"question": "\xff\xfe"}\n' + json.dumps(ROWS[0]).encode() + b"\n")
    error, item = read(path)
    assert isinstance(error, InputRowError) and error.kind == "malformed"
    assert "not valid UTF-8" in error.describe() and error.line == 1
    assert isinstance(item, InputItem)


def test_bad_element_of_a_json_array_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[\n{"id": "a", "question": "q"},\n{"id": "b" "question": "q"},\n{"id": "c", '
                    '"question": "q"}\n]')  # fmt: skip
    first, error, last = read(path)
    assert isinstance(error, InputRowError)
    assert (error.line, error.kind) == (3, "malformed")
    assert [first.id, last.id] == ["a", "c"]  # type: ignore[union-attr]


def test_csv_row_with_too_many_fields(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,question\na,q\nb,q,extra\nc,q\n")
    results = read(path)
    assert [type(r).__name__ for r in results] == ["InputItem", "InputRowError", "InputItem"]
    error = results[1]
    assert isinstance(error, InputRowError)
    assert error.line == 3 and "3 fields, the header has 2" in error.describe()


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        pytest.param("broken.parquet", b"this is not parquet", "as Parquet", id="parquet"),
        pytest.param("object.json", b'{"question": "q"} trailing', "not valid JSON", id="json"),
        pytest.param("open.json", b'[{"question": "q"},\n', "ends before the array", id="cut"),
        pytest.param("empty.csv", b"", "no header row", id="empty-csv"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    results = read(path)
    errors = [r for r in results if isinstance(r, InputRowError)]
    assert errors, results
    assert errors[-1].source == name
    assert words in errors[-1].describe()


def test_a_directory_is_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "dir.jsonl"
    path.mkdir()
    [error] = read(path)
    assert isinstance(error, InputRowError)
    assert error.kind == "unreadable_file" and error.line is None
    assert error.describe().startswith("dir.jsonl: cannot read the file")


def test_count_rows_for_the_progress_total(tmp_path: Path) -> None:
    assert count_rows(write_jsonl(tmp_path / "a.jsonl", ROWS), "jsonl") == 3
    assert count_rows(write_csv(tmp_path / "a.csv", ROWS), "csv") == 3
    assert count_rows(write_parquet(tmp_path / "a.parquet", ROWS), "parquet") == 3
    assert count_rows(tmp_path / "a.json", "json") is None


def write_numbered_csv(path: Path, n: int) -> list[str]:
    """A CSV of n rows `i<k>,What is <k>?,v0`; the lines of the file (header first)."""
    lines = ["id,question,answer"] + [f"i{k},What is {k}?,v0" for k in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_an_unclosed_quote_fails_its_row_and_the_rows_after_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    lines = write_numbered_csv(path, 200)
    lines[4] = 'i4,"What is 4?,v0'  # row 4 (line 5) opens a quote it never closes
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = read(path, max_chars=100_000)
    errors = [r for r in results if isinstance(r, InputRowError)]
    good = [r for r in results if isinstance(r, InputItem)]
    assert len(good) == 199 and len(errors) == 1
    assert {i.id for i in good} == {f"i{k}" for k in range(1, 201)} - {"i4"}
    [error] = errors
    assert error.line == 5 and error.kind == "malformed"
    assert "in.csv:5" in error.describe() and "never closed" in error.describe()
    assert [i.line for i in good][3:5] == [6, 7]  # the rows after it keep their lines


def test_a_stray_quote_closed_far_below_fails_one_row_not_the_rows_between(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    lines = write_numbered_csv(path, 30)
    lines[4] = 'i4,"What is 4?,v0'  # opens a quote ...
    lines[20] = 'i20,What is 20?" she said,v0'  # ... that a quote 16 lines below closes
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = read(path, max_chars=100_000)
    errors = [r for r in results if isinstance(r, InputRowError)]
    assert [e.line for e in errors] == [5]
    assert "runs from line 5 to line 21" in errors[0].describe()
    assert len([r for r in results if isinstance(r, InputItem)]) == 29


def test_a_latin1_byte_fails_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    lines = write_numbered_csv(path, 3000)
    data = "\n".join(lines).encode("utf-8") + b"\n"
    data = data.replace(b"What is 1500?", b"What is caf\xe9 1500?")
    path.write_bytes(data)
    results = read(path)
    errors = [r for r in results if isinstance(r, InputRowError)]
    assert len(errors) == 1 and errors[0].line == 1501
    assert "in.csv:1501" in errors[0].describe() and "UTF-8" in errors[0].describe()
    assert "caf\ufffd 1500" in (errors[0].raw or "")
    assert len(results) == 3000  # every other row read


def test_multi_line_quoted_fields_still_read(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        'id,question,answer\na,"line one\nline ""two""\n\nline four",v0\nb,"x, y",v0\n',
        encoding="utf-8",
    )
    [a, b] = items(read(path))
    assert a.question == 'line one\nline "two"\n\nline four' and a.line == 2
    assert b.question == "x, y" and b.line == 6


def test_an_undecodable_byte_in_a_tsv_header_makes_the_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_bytes(b"id\tquesti\xffon\na\tq\n")
    [error] = read(path)
    assert isinstance(error, InputRowError) and error.kind == "unreadable_file"
    assert error.line == 1 and "UTF-8" in error.describe()


def test_an_undecodable_byte_in_a_json_array_fails_its_element_only(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_bytes(
        b'[\n {"id": "a", "question": "q"},\n {"id": "b",\n  "question": "caf\xe9"},\n'
        b' {"id": "c", "question": "q"}\n]\n'
    )
    results = read(path)
    assert [type(r).__name__ for r in results] == ["InputItem", "InputRowError", "InputItem"]
    assert results[1].line == 4  # type: ignore[union-attr]


def test_a_json_object_input_names_the_key_holding_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS}, indent=2))
    with pytest.raises(SettingsError, match=r"holds one JSON object.*'data' holds an array of 3"):
        detect_format(path)
    with pytest.raises(SettingsError, match="holds one JSON object"):
        detect_format(path, "json")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"question": "q", "answer": "a"}, indent=2))
    with pytest.raises(SettingsError, match="none of them holds an array"):
        detect_format(plain)


def test_a_truncated_gzip_keeps_the_rows_read_and_names_where_it_broke(tmp_path: Path) -> None:
    rows = [{"id": f"r{k}", "question": "q" * 50} for k in range(2000)]
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    results = read(path)
    *good, error = results
    assert good and all(isinstance(r, InputItem) for r in good)
    assert isinstance(error, InputRowError) and error.kind == "unreadable_file"
    assert error.line == len(good) + 1
    assert f"cannot read the file after line {len(good)}" in error.describe()
