"""Entity-tagging uploads: every format, every scheme, and each problem with its line."""

from __future__ import annotations

import codecs
import json

import pytest

from worker.training.tasks.tagged_text import (
    TaggedFile,
    entities,
    looks_tagged,
    read_tagged,
    spans_to_text,
)


def jsonl(*records: object) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


def codes(problems: list) -> list[str]:
    return [p.code for p in problems]


def only(problems: list, code: str):
    [found] = [p for p in problems if p.code == code]
    return found


def clean(f: TaggedFile) -> None:
    assert f.errors == [] and f.warnings == [], (f.errors, f.warnings)


CONLL = b"""-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German\tJJ\tB-NP\tB-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


# ---- formats -------------------------------------------------------------------------------


def test_conll_last_column_is_the_tag_and_lines_are_kept() -> None:
    f = read_tagged(CONLL)
    clean(f)
    assert (f.format, f.scheme) == ("conll", "iob2")
    [first, second] = f.sentences
    assert first.tokens == ["EU", "rejects", "German"]
    assert first.tags == ["B-ORG", "O", "B-MISC"]
    assert (first.line, second.line) == (3, 7)
    assert second.tags == ["B-PER", "I-PER"]
    assert first.text is None and first.offsets is None
    assert f.entity_types() == ["MISC", "ORG", "PER"]


def test_conll_with_bom_crlf_and_several_blank_lines() -> None:
    data = codecs.BOM_UTF8 + b"Paris B-LOC\r\nis O\r\n\r\n\r\n\r\nRome B-LOC\r\n"
    f = read_tagged(data)
    clean(f)
    assert [s.tokens for s in f.sentences] == [["Paris", "is"], ["Rome"]]
    assert [s.line for s in f.sentences] == [1, 6]


def test_jsonl_tokens() -> None:
    f = read_tagged(
        b"\n"
        + jsonl(
            {"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"]},
            {"tokens": ["In", "London"], "tags": ["O", "B-LOC"]},
        )
    )
    clean(f)
    assert f.format == "jsonl_tokens"
    assert [s.line for s in f.sentences] == [2, 3]
    assert f.sentences[1].tags == ["O", "B-LOC"]


def test_jsonl_spans_tags_words_and_keeps_offsets() -> None:
    text = "Angela Merkel visited Paris-Nord, twice."
    f = read_tagged(
        jsonl(
            {
                "text": text,
                "spans": [
                    {"start": 0, "end": 13, "label": "PER"},
                    {"start": 22, "end": 25, "label": "LOC"},  # "Par": part of a word
                ],
            }
        )
    )
    clean(f)
    assert (f.format, f.scheme) == ("jsonl_spans", "iob2")
    [s] = f.sentences
    assert s.tokens == ["Angela", "Merkel", "visited", "Paris", "-", "Nord", ",", "twice", "."]
    assert s.tags == ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O", "O", "O"]
    assert s.text == text
    assert s.offsets is not None and s.offsets[3] == (22, 27)
    assert spans_to_text(text, s.offsets, s.tags) == [
        {"label": "PER", "start": 0, "end": 13, "text": "Angela Merkel"},
        {"label": "LOC", "start": 22, "end": 27, "text": "Paris"},
    ]


def test_adjacent_spans_of_one_label_stay_two_entities() -> None:
    record = {
        "text": "Bonn Berlin",
        "spans": [{"start": 5, "end": 11, "label": "LOC"}, {"start": 0, "end": 4, "label": "LOC"}],
    }
    [s] = read_tagged(jsonl(record)).sentences
    assert s.tags == ["B-LOC", "B-LOC"]


# ---- schemes -------------------------------------------------------------------------------


def test_iob1_converts_silently() -> None:
    # IOB1: I- begins entities; B- only splits two touching entities of one type.
    data = b"The O\nNew I-ORG\nYork I-ORG\nTimes I-ORG\nAlice I-PER\nBob B-PER\n"
    f = read_tagged(data)
    clean(f)
    assert f.scheme == "iob1"
    assert f.sentences[0].tags == ["O", "B-ORG", "I-ORG", "I-ORG", "B-PER", "B-PER"]


def test_ill_formed_iob2_is_repaired_with_a_warning() -> None:
    data = b"Visit O\nParis B-LOC\nand O\nRome I-LOC\nor O\nAlice I-PER\n"
    f = read_tagged(data)
    assert f.errors == [] and f.scheme == "iob2"
    assert f.sentences[0].tags == ["O", "B-LOC", "O", "B-LOC", "O", "B-PER"]
    warning = only(f.warnings, "ill_formed_sequence")
    assert warning.lines == [4, 6]
    assert warning.message.startswith("line 4: I-LOC follows O")


def test_plain_tags_join_consecutive_tokens() -> None:
    data = b"New LOC\nYork LOC\nis O\nbig O\n\nAda PER\nLovelace PER\nLondon LOC\n"
    f = read_tagged(data)
    clean(f)
    assert f.scheme == "plain"
    assert [s.tags for s in f.sentences] == [
        ["B-LOC", "I-LOC", "O", "O"],
        ["B-PER", "I-PER", "B-LOC"],
    ]


def test_bioes_converts_losslessly() -> None:
    data = jsonl({"tokens": list("abcde"), "tags": ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"]})
    f = read_tagged(data)
    clean(f)
    assert f.sentences[0].tags == ["B-PER", "B-LOC", "I-LOC", "I-LOC", "O"]


def test_lowercase_prefixes_are_read() -> None:
    f = read_tagged(b"Ada b-PER\nLovelace i-PER\nwrote O\n")
    clean(f)
    assert f.sentences[0].tags == ["B-PER", "I-PER", "O"]


def test_mixed_schemes_name_the_rarer_kind() -> None:
    f = read_tagged(b"Ada B-PER\nLovelace I-PER\nin o\nLondon B-LOC\n")
    problem = only(f.errors, "mixed_schemes")
    assert problem.lines == [3]
    assert "only a capital O means outside" in problem.message


# ---- errors --------------------------------------------------------------------------------


def test_bad_json_and_wrong_records_name_their_lines() -> None:
    good = json.dumps({"tokens": ["Ada"], "tags": ["B-PER"]})
    lines = [
        good,
        '{"tokens": ["a"], "tags": ',
        "[1, 2]",
        json.dumps({"tokens": "Ada", "tags": ["O"]}),
        json.dumps({"tokens": ["a"]}),
        json.dumps({"label": "x"}),
        json.dumps({"tokens": ["a", "b"], "tags": ["O"]}),
        json.dumps({"text": "Ada", "spans": []}),
    ]
    f = read_tagged("\n".join(lines).encode())
    assert only(f.errors, "bad_json").lines == [2]
    assert only(f.errors, "wrong_type").lines == [3, 4]
    assert only(f.errors, "missing_key").lines == [5, 6]
    mismatch = only(f.errors, "length_mismatch")
    assert mismatch.lines == [7]
    assert mismatch.message == (
        "line 7: tokens has 2 items but tags has 1; give every token one tag"
    )
    assert only(f.errors, "mixed_formats").lines == [8]
    assert [s.line for s in f.sentences] == [1]


def test_span_problems() -> None:
    text = "Ada met Bob"
    f = read_tagged(
        jsonl(
            {"text": text, "spans": [{"start": 0, "end": 3, "label": "PER"}]},
            {"text": text, "spans": [{"start": 8, "end": 12, "label": "PER"}]},
            {"text": text, "spans": [{"start": 4, "end": 4, "label": "PER"}]},
            {"text": text, "spans": [{"start": 0, "end": 3}]},
            {"text": text, "spans": [{"start": True, "end": 3, "label": "PER"}]},
            {
                "text": text,
                "spans": [
                    {"start": 4, "end": 11, "label": "X"},
                    {"start": 0, "end": 5, "label": "PER"},
                ],
            },
            {"text": 5, "spans": []},
            {"text": text},
        )
    )
    assert only(f.errors, "span_out_of_range").lines == [2, 3]
    assert only(f.errors, "wrong_type").lines == [4, 5, 7]
    overlap = only(f.errors, "overlapping_spans")
    assert overlap.lines == [6]
    assert "spans 2 and 1 overlap" in overlap.message
    assert only(f.errors, "missing_key").lines == [8]
    assert len(f.sentences) == 1


def test_conll_line_without_tag_and_empty_tag() -> None:
    f = read_tagged(b"Ada B-PER\nLovelace\nwrote O\n")
    assert only(f.errors, "missing_tag").lines == [2]
    f = read_tagged(jsonl({"tokens": ["a", "b"], "tags": ["B-PER", "B-"]}))
    assert only(f.errors, "bad_tag").lines == [1]


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"-DOCSTART- O\n\n"])
def test_empty_file(data: bytes) -> None:
    f = read_tagged(data)
    assert codes(f.errors) == ["no_sentences"]
    assert f.errors[0].lines == []


def test_no_entities() -> None:
    f = read_tagged(b"a O\nb O\n\nc O\n")
    assert codes(f.errors) == ["no_entities"]


def test_not_utf8() -> None:
    data = "Ada B-PER\nJosé B-PER\n".encode("latin-1")
    f = read_tagged(data)
    assert codes(f.errors) == ["bad_encoding"]
    assert f.errors[0].lines == [2] and "UTF-8" in f.errors[0].message
    assert f.sentences == []
    for utf16 in ("utf-16", "utf-16-le"):
        f = read_tagged("Ada B-PER\n".encode(utf16))
        assert codes(f.errors) == ["bad_encoding"] and "UTF-16" in f.errors[0].message


def test_a_lone_surrogate_escape_is_refused_by_its_line() -> None:
    """An escaped "\\ud800" is half a character, which no answer, page or tokenizer can carry
    (an upload holding one was answered with a 500); an escaped pair is one character."""
    half = b'{"tokens": ["\\ud800", "Ada"], "tags": ["O", "B-PER"]}\n'
    f = read_tagged(jsonl({"tokens": ["Bob"], "tags": ["B-PER"]}) + half)
    problem = only(f.errors, "bad_encoding")
    assert problem.lines == [2] and "surrogate" in problem.message
    assert [s.tokens for s in f.sentences] == [["Bob"]]
    clean(read_tagged(jsonl({"tokens": ["😀", "Ada"], "tags": ["O", "B-PER"]})))


def test_known_types_refuse_others() -> None:
    f = read_tagged(b"Ada B-PER\nin O\nParis B-LOC\n\nACME B-ORG\nBob B-PER\n", known_types={"PER"})
    problem = only(f.errors, "unknown_tag")
    assert problem.lines == [3, 5]
    assert "LOC, ORG" in problem.message and "PER" in problem.message
    assert codes(read_tagged(b"Ada B-PER\n", known_types={"PER", "LOC"}).errors) == []


# ---- warnings ------------------------------------------------------------------------------


def test_empty_long_and_duplicate_sentences() -> None:
    long = {"tokens": ["w"] * 513, "tags": ["B-X"] + ["O"] * 512}
    f = read_tagged(
        jsonl(
            {"tokens": ["Ada"], "tags": ["B-PER"]},
            {"tokens": [], "tags": []},
            {"tokens": ["Ada"], "tags": ["B-PER"]},
            long,
            {"tokens": ["Ada"], "tags": ["B-PER"]},
        )
    )
    assert f.errors == []
    assert only(f.warnings, "empty_sentence").lines == [2]
    assert only(f.warnings, "long_sentence").lines == [4]
    duplicates = only(f.warnings, "duplicates")
    assert duplicates.lines == [3, 5]
    assert duplicates.message.startswith("line 3: repeats the sentence at line 1")
    assert len(f.sentences) == 4


def test_spans_text_without_words_is_an_empty_sentence() -> None:
    f = read_tagged(jsonl({"text": "  ", "spans": []}, {"text": "Ada", "spans": []}))
    assert only(f.warnings, "empty_sentence").lines == [1]


def test_lines_are_capped_at_20_per_problem() -> None:
    data = b"".join(b"a O\nb I-PER\n\n" for _ in range(30)) + b"c B-PER\n"
    f = read_tagged(data)
    warning = only(f.warnings, "ill_formed_sequence")
    assert len(warning.lines) == 20 and warning.lines[:2] == [2, 5]
    assert "29 more like this" in warning.message and "and 10 more" in warning.message


# ---- report and helpers --------------------------------------------------------------------


def test_report_is_json_and_counts() -> None:
    sentences = [{"tokens": ["w"] * n, "tags": ["B-PER"] + ["O"] * (n - 1)} for n in range(1, 21)]
    report = read_tagged(jsonl(*sentences)).report()
    assert json.loads(json.dumps(report)) == report
    assert (report["sentences"], report["tokens"]) == (20, 210)
    assert report["entities"] == {"PER": 20}
    histogram = report["length_histogram"]
    assert len(histogram["edges"]) == 11 and histogram["edges"][0] == 1
    assert histogram["edges"][-1] == 20 and histogram["counts"] == [2] * 10
    one = read_tagged(b"a B-X\n").report()["length_histogram"]
    assert (one["edges"][0], one["edges"][-1], sum(one["counts"])) == (0.5, 1.5, 1)


def test_entities_reads_iob2_leniently() -> None:
    assert entities(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER"]) == [
        ("PER", 0, 2),
        ("LOC", 3, 5),
        ("LOC", 5, 6),
        ("PER", 6, 7),
    ]
    assert entities([]) == [] and entities(["O"]) == []


def test_spans_to_text_leaves_out_tags_past_the_offsets() -> None:
    assert spans_to_text("Ada", [(0, 3)], ["B-PER", "B-LOC"]) == [
        {"label": "PER", "start": 0, "end": 3, "text": "Ada"}
    ]


# ---- sniffing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        CONLL,
        b"Ada\tB-PER\nLovelace\tI-PER\n\nwrote\tO\n",
        CONLL[:-7],  # cut off mid-line
        jsonl({"tokens": ["a"], "tags": ["O"]}),
        jsonl({"text": "Ada", "spans": []}),
        b'{"text": "Ada", "spans": [{"start": 0, "en',  # a first record cut off
    ],
)
def test_looks_tagged(head: bytes) -> None:
    assert looks_tagged(head)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"text,label\nhello world,positive\nwhat a bad day,negative\n",
        b"text\tlabel\ngreat film\tpos\nawful\tneg\n",
        jsonl({"text": "hello", "label": "pos"}),
        b"LOC\n",
        b"New LOC\nYork LOC\n",  # plain tags: too much like a table to claim
    ],
)
def test_does_not_look_tagged(head: bytes) -> None:
    assert not looks_tagged(head)


# ---- never raises --------------------------------------------------------------------------

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # the property tests need it; the rest do not
    hypothesis = None

if hypothesis is not None:
    STRUCTURE = '{}[]":,0123456789 \n\t-OBIESPERLOCtokenstagstextspansstartendlabel\\é\u2028'
    TAG = st.sampled_from(["O", "B-PER", "I-PER", "PER", "I-LOC", "E-X", "S-X", "B-", "", "o"])

    def _check(data: bytes) -> None:
        f = read_tagged(data, known_types={"PER"})
        json.dumps(f.report())
        assert f.errors or f.sentences
        for s in f.sentences:
            assert len(s.tokens) == len(s.tags)
            assert all(t == "O" or t[:2] in ("B-", "I-") for t in s.tags)
        looks_tagged(data[:4096])

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(st.binary(max_size=300) | st.text(STRUCTURE, max_size=300).map(str.encode))
    def test_any_bytes_give_problems_not_exceptions(data: bytes) -> None:
        _check(data)

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(
        st.lists(
            st.fixed_dictionaries(
                {
                    "tokens": st.lists(st.text(max_size=3), max_size=4),
                    "tags": st.lists(TAG, max_size=4),
                }
            )
            | st.fixed_dictionaries(
                {
                    "text": st.text(max_size=12),
                    "spans": st.lists(
                        st.fixed_dictionaries(
                            {
                                "start": st.integers(-2, 14),
                                "end": st.integers(-2, 14),
                                "label": st.sampled_from(["PER", "LOC", ""]),
                            }
                        ),
                        max_size=3,
                    ),
                }
            ),
            max_size=5,
        )
    )
    def test_any_records_give_problems_not_exceptions(records: list[dict]) -> None:
        _check(jsonl(*records))
