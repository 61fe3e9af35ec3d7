"""Conversations for generation: chat JSONL problems named by line, prompt and response
cells, the dataset-wide system prompt, duplicates, and the token-length report."""

from __future__ import annotations

import json

import pytest

from worker.training.tasks.conversations import (
    ChatFile,
    conversation_problem,
    from_cells,
    looks_chat,
    read_chat_jsonl,
    summarise,
    token_length_report,
    with_system,
)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def jsonl(*records: object) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


def chat(*messages: object) -> dict[str, object]:
    return {"messages": list(messages)}


def only(problems: list, code: str):
    [found] = [p for p in problems if p.code == code]
    return found


def clean(f: ChatFile) -> None:
    assert f.errors == [] and f.warnings == [], (f.errors, f.warnings)


def test_a_chat_file_reads_with_its_lines_and_only_role_and_content() -> None:
    data = jsonl(
        chat(user("Hi"), assistant("Hello!")),
        {"id": 7, "messages": [system("Be brief."), user("2+2?"), {**assistant("4"), "x": 1}]},
    )
    f = read_chat_jsonl(b"\n" + data.replace(b"\n", b"\r\n", 1))  # a blank first line, CRLF
    clean(f)
    assert [c.line for c in f.chats] == [2, 3]
    assert f.conversations[1] == [system("Be brief."), user("2+2?"), assistant("4")]
    assert looks_chat(data) and looks_chat(b"\xef\xbb\xbf" + data)
    assert not looks_chat(jsonl({"prompt": "a", "response": "b"}))
    assert not looks_chat(b"text,label\nmessages,x\n")
    assert not looks_chat(jsonl({"messages": "hi there", "label": "greeting"}))
    assert looks_chat(b'{"id": 1, "messages" : [{"role": "user", "content": "a"}, {"role"')


@pytest.mark.parametrize(
    ("messages", "code", "says"),
    [
        ("hi", "not_a_list", "must be a list"),
        ([], "empty_conversation", "empty"),
        ([user("a"), "b"], "bad_message", "message 2"),
        ([user("a"), {"role": "bot", "content": "b"}], "unknown_role", "'bot'"),
        ([user("a"), {"role": "assistant", "content": ["b"]}], "bad_content", "list, not text"),
        ([user("a"), {"role": "assistant", "content": None}], "bad_content", "null"),
        ([user("  "), assistant("b")], "empty_content", "message 1 (user)"),
        ([user("a")], "no_assistant", "no assistant turn"),
        ([system("s"), system("t"), user("a"), assistant("b")], "wrong_order", "message 2"),
        ([user("a"), system("s"), assistant("b")], "wrong_order", "only the first"),
        ([assistant("b"), user("a"), assistant("c")], "wrong_order", "begin with the user"),
        ([system("s"), assistant("b")], "wrong_order", "message 2 is the assistant's"),
        ([user("a"), user("b"), assistant("c")], "wrong_order", "1 and 2 are both user"),
        ([user("a"), assistant("b"), assistant("c")], "wrong_order", "both assistant"),
        ([user("a"), assistant("b"), user("c")], "wrong_order", "ends on a user turn"),
    ],
)
def test_each_malformed_conversation_says_what_is_wrong(
    messages: object, code: str, says: str
) -> None:
    problem = conversation_problem(messages)
    assert problem is not None and problem[0] == code and says in problem[1], problem


def test_multi_turn_with_a_system_prompt_is_a_conversation() -> None:
    turns = [system("s"), user("a"), assistant("b"), user("c"), assistant("d")]
    assert conversation_problem(turns) is None


def test_bad_rows_are_errors_named_by_line_and_grouped_by_kind() -> None:
    good = chat(user("a"), assistant("b"))
    lines = [
        json.dumps(good),  # 1
        "{not json",  # 2
        json.dumps([1, 2]),  # 3: not an object
        json.dumps({"prompt": "a"}),  # 4: no messages
        json.dumps(chat(user("x"))),  # 5: no answer
        json.dumps(chat(user("a"), user("b"), assistant("c"))),  # 6
        json.dumps(chat(user("a"), assistant("b"), user("c"))),  # 7
        '{"messages": [{"role": "user", "content": "\\ud800"}]}',  # 8: half a character
    ]
    f = read_chat_jsonl("\n".join(lines).encode())
    assert [c.line for c in f.chats] == [1]
    assert only(f.errors, "bad_json").lines == [2]
    assert only(f.errors, "missing_messages").lines == [3, 4]
    assert only(f.errors, "no_assistant").lines == [5]
    order = only(f.errors, "wrong_order")
    assert order.lines == [6, 7]
    assert order.message.startswith("line 6: messages 1 and 2 are both user turns")
    assert "1 more like this: lines 6, 7" in order.message
    assert only(f.errors, "bad_encoding").lines == [8]
    assert '"messages"' in only(f.errors, "missing_messages").message  # says how to write one


def test_lines_are_capped_at_20_per_problem() -> None:
    f = read_chat_jsonl(jsonl(*[chat(user("a")) for _ in range(30)]))
    problem = only(f.errors, "no_assistant")
    assert problem.lines == list(range(1, 21))
    assert "29 more like this" in problem.message and "and 10 more" in problem.message


@pytest.mark.parametrize("data", [b"", b"\n \n"])
def test_an_empty_file_is_an_error(data: bytes) -> None:
    assert [p.code for p in read_chat_jsonl(data).errors] == ["no_conversations"]


def test_an_encoding_problem_names_its_line() -> None:
    f = read_chat_jsonl(jsonl(chat(user("a"), assistant("b"))) + b'{"messages": "\xe9"}\n')
    problem = only(f.errors, "bad_encoding")
    assert problem.lines == [2] and "UTF-8" in problem.message


def test_the_row_cap_refuses_the_first_row_past_it() -> None:
    f = read_chat_jsonl(jsonl(*[chat(user(str(i)), assistant("b")) for i in range(5)]), row_cap=3)
    assert only(f.errors, "too_many_rows").lines == [4]


def test_repeated_conversations_are_a_warning_with_lines() -> None:
    one, two = chat(user("a"), assistant("b")), chat(user("a"), assistant("c"))
    f = read_chat_jsonl(jsonl(one, two, one, two, one))
    assert f.errors == [] and len(f.chats) == 5
    duplicates = only(f.warnings, "duplicates")
    assert duplicates.lines == [3, 4, 5] and "3 rows repeat earlier" in duplicates.message
    single = read_chat_jsonl(jsonl(one, one)).warnings[0].message
    assert single.startswith("1 row repeats earlier conversations exactly (line 2)")


def test_prompt_and_response_cells_skip_empty_rows_by_line() -> None:
    rows = [(2, "Capital of France?", "Paris"), (3, "", "x"), (4, "Why?", None), (5, 2, 4)]
    rows += [(6, "Capital of France?", "Paris"), (7, "Why?", "  ")]
    f = from_cells(rows, prompt="question", response="answer")
    assert f.errors == []
    assert [c.line for c in f.chats] == [2, 5, 6]
    assert f.conversations[1] == [user("2"), assistant("4")]  # numbers are text too
    missing = only(f.warnings, "missing_responses")
    assert missing.lines == [4, 7] and "'answer'" in missing.message
    assert only(f.warnings, "empty_prompts").lines == [3]
    assert only(f.warnings, "duplicates").lines == [6]


def test_no_usable_row_is_an_error_naming_the_columns() -> None:
    f = from_cells([(2, "a", ""), (3, "", "")], prompt="q", response="a")
    assert only(f.errors, "no_usable_rows").message.startswith("no row has both a prompt in 'q'")


def test_the_system_prompt_goes_first_unless_one_is_there() -> None:
    plain = [user("a"), assistant("b")]
    assert with_system(plain, "Be kind.") == [system("Be kind."), *plain]
    assert with_system(plain, None) == plain and with_system(plain, "  ") == plain
    own = [system("Mine."), *plain]
    assert with_system(own, "Be kind.") == own
    assert plain == [user("a"), assistant("b")]  # the conversation itself is untouched


def test_summary_counts_turns_and_lengths() -> None:
    f = read_chat_jsonl(
        jsonl(
            chat(user("abcd"), assistant("xy")),
            chat(system("s"), user("a"), assistant("b"), user("cc"), assistant("dddddd")),
        )
    )
    summary = summarise(f.chats)
    assert summary["conversations"] == 2 and summary["assistant_turns"] == 3
    assert summary["multi_turn"] == 1 and summary["with_system"] == 1
    assert summary["prompt_chars"]["max"] == 4.0 and summary["prompt_chars"]["min"] == 2.0
    assert summary["response_chars"] == {"min": 2.0, "median": 4.0, "mean": 4.0, "max": 6.0}
    assert json.loads(json.dumps(summary)) == summary


def test_token_length_report_suggests_the_95th_percentile_rounded_up() -> None:
    lengths = list(range(1, 101)) + [3000]  # 101 rows
    report = token_length_report(lengths)
    assert (report["rows"], report["p50"], report["max"]) == (101, 51, 3000)
    assert report["p95"] == 96  # nearest rank: the 96th shortest of 101
    assert report["suggested_max_length"] == 96
    assert report["suggested_truncated"] == 5  # 97, 98, 99, 100 and 3000
    assert report["truncated"] == {"128": 1, "256": 1, "512": 1, "1024": 1, "2048": 1}
    histogram = report["histogram"]
    assert histogram["edges"][0] == 1 and histogram["edges"][-1] > 3000
    assert len(histogram["counts"]) == 20 and sum(histogram["counts"]) == 101
    assert histogram["counts"][0] == 100 and histogram["counts"][-1] == 1  # 3000 on its own
    assert token_length_report([7, 7])["histogram"]["counts"][0] == 2
    assert token_length_report([]) == {}
    assert token_length_report([5])["suggested_max_length"] == 32
    assert token_length_report([9000] * 3)["suggested_max_length"] == 4096
