"""Which column holds the text and which the label.

Most uploads name them plainly ("text", "label"), so names decide first; the statistics of the
values decide only when names do not. A person can always name the columns themselves, and
every error here says how (``text_column`` / ``label_column``).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.datasets.parsing import ParseError, Table

LABEL_NAMES = (
    "label", "labels", "class", "category", "target", "y", "sentiment", "topic", "intent", "tag",
    "tags", "score", "rating", "emotion", "emotions",
)  # fmt: skip
TEXT_NAMES = (
    "text", "sentence", "content", "review", "body", "document", "message", "tweet", "comment",
    "question", "title",
)  # fmt: skip
PAIR_NAMES = (
    ("sentence1", "sentence2"), ("premise", "hypothesis"), ("text_a", "text_b"),
    ("text", "text_pair"), ("question1", "question2"), ("question", "passage"),
)  # fmt: skip
MAX_LABEL_CHARS = 64  # a label value longer than this is a sentence, not a class name


@dataclass(frozen=True)
class ColumnChoice:
    """Which columns hold what, and how the label cells are read."""

    text: str
    label: str
    text_pair: str | None = None
    task: str = "classification"  # worker/training/tasks/: what a label cell holds
    separator: str | None = None  # multi_label: between labels in a cell (None: JSON lists)
    # multi_label: one 0/1 column per label, instead of one cell of labels
    indicators: tuple[str, ...] | None = None

    @property
    def label_cells(self) -> tuple[str, ...]:
        """The columns a row's labels are read from."""
        return self.indicators or (self.label,)


def detect_columns(table: Table) -> ColumnChoice:
    return resolve_columns(table, text=None, label=None)


def resolve_columns(
    table: Table,
    *,
    text: str | None,
    label: str | None,
    text_pair: str | None = None,
    indicators: list[str] | None = None,
) -> ColumnChoice:
    """Columns the user named win; the rest are detected among the columns left over.
    `indicators`: one 0/1 column per label (multi-label), named or detected when no label
    column is named."""
    if indicators:
        chosen = [c for c in (find_column(table, n) for n in indicators) if c]
        return _with_indicators(table, chosen, text=text, text_pair=text_pair)
    text = find_column(table, text)
    label = find_column(table, label)
    text_pair = find_column(table, text_pair)
    given = [name for name in (text, label, text_pair) if name]
    if len(set(given)) != len(given):
        twice = next(name for name in given if given.count(name) > 1)
        raise ParseError(
            f"column '{twice}' was chosen for two roles; the text, text pair and label must "
            "be different columns",
            column=twice,
        )
    # No label column named or called by a label's name, but several 0/1 columns: one per
    # label (multi-label), not one binary class each.
    named = label is not None or _by_name(table, LABEL_NAMES, taken={text, text_pair})
    if not named and (found := _indicator_columns(table, taken={text, text_pair})):
        return _with_indicators(table, found, text=text, text_pair=text_pair)
    if text is None and text_pair is None:
        text, text_pair = _pair_by_name(table, taken={label})
    if text is None:
        text = _by_name(table, TEXT_NAMES, taken={label, text_pair})
    if label is None:
        taken = {text, text_pair}
        label = (
            _by_name(table, LABEL_NAMES, taken=taken)
            or _label_by_values(table, taken=taken)
            or _target_by_values(table, taken=taken)
        )
    if text is None:
        text = _text_by_values(table, taken={label, text_pair})
    if label is None:
        raise ParseError(
            f"could not tell which column holds the labels ({_listing(table)}); choose it "
            "yourself with label_column",
            column="label_column",
        )
    if text is None:
        raise ParseError(
            f"could not tell which column holds the text ({_listing(table)}); choose it "
            "yourself with text_column",
            column="text_column",
        )
    return ColumnChoice(text=text, label=label, text_pair=text_pair)


INDICATOR_VALUES = {"0", "1", "true", "false", "0.0", "1.0"}


def _indicator_columns(table: Table, *, taken: set[str | None]) -> list[str]:
    """Two or more columns holding only 0/1 (or true/false): one column per label."""
    found = []
    for column in table.columns:
        if column in taken:
            continue
        values = {
            str(v).strip().lower() for row in table.rows if (v := row.get(column)) is not None
        }
        values.discard("")
        if values and values <= INDICATOR_VALUES:
            found.append(column)
    return found if len(found) >= 2 else []


def _with_indicators(
    table: Table, indicators: list[str], *, text: str | None, text_pair: str | None
) -> ColumnChoice:
    """A multi-label choice read from 0/1 columns; the text is named or detected."""
    if len(indicators) < 2:
        raise ParseError(
            "one 0/1 column per label needs at least two label columns", column="label_columns"
        )
    taken: set[str | None] = set(indicators)
    text = find_column(table, text) or _by_name(table, TEXT_NAMES, taken=taken)
    text = text or _text_by_values(table, taken=taken | {text_pair})
    if text is None or text in taken:
        raise ParseError(
            f"could not tell which column holds the text ({_listing(table)}); choose it "
            "yourself with text_column",
            column="text_column",
        )
    pair = find_column(table, text_pair)
    return ColumnChoice(
        text=text,
        label=", ".join(indicators),
        text_pair=pair,
        task="multi_label",
        indicators=tuple(indicators),
    )


def _listing(table: Table) -> str:
    if len(table.columns) == 1:
        return f"the file has only one column, '{table.columns[0]}'; it needs a text and a label"
    return "the file has: " + ", ".join(table.columns)


def norm_name(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def find_column(table: Table, name: str | None, role: str | None = None) -> str | None:
    """The column the user meant: exact name first, then ignoring case and spaces.
    `role`: the field that named it, said in the error (prompt_column…)."""
    if name is None or name == "":
        return None
    if name in table.columns:
        return name
    close = [c for c in table.columns if norm_name(c) == norm_name(name)]
    if len(close) == 1:
        return close[0]
    if role is not None:
        listing = "the file has: " + ", ".join(table.columns)
        raise ParseError(f"no column named '{name}' for the {role}; {listing}", column=name)
    raise ParseError(f"no column named '{name}'; {_listing(table)}", column=name)


def _by_name(table: Table, names: tuple[str, ...], *, taken: set[str | None]) -> str | None:
    by_norm = {norm_name(c): c for c in reversed(table.columns) if c not in taken}
    return next((by_norm[n] for n in names if n in by_norm), None)


def _pair_by_name(table: Table, *, taken: set[str | None]) -> tuple[str | None, str | None]:
    by_norm = {norm_name(c): c for c in reversed(table.columns) if c not in taken}
    for first, second in PAIR_NAMES:
        if first in by_norm and second in by_norm:
            return by_norm[first], by_norm[second]
    return None, None


def _label_key(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    key = str(value).strip()
    return key or None


def _label_by_values(table: Table, *, taken: set[str | None]) -> str | None:
    """The column with the fewest distinct short values, as long as values repeat.

    Between 2 and max(50, rows/2) classes: fewer is not a classification task, more is
    probably an id or free text. A column whose values never repeat is an id.
    """
    limit = max(50, len(table.rows) // 2)
    best: tuple[int, int, str] | None = None
    for position, column in enumerate(table.columns):
        if column in taken:
            continue
        seen: set[str] = set()
        filled = 0
        for row in table.rows:
            key = _label_key(row.get(column))
            if key is None:
                continue
            if len(key) > MAX_LABEL_CHARS or len(seen) > limit:
                break
            seen.add(key)
            filled += 1
        else:
            if 2 <= len(seen) <= limit and len(seen) < filled:
                # Fewest classes wins; on a tie the rightmost column, where labels usually sit.
                candidate = (len(seen), -position, column)
                best = candidate if best is None or candidate < best else best
    return best[2] if best else None


def _target_by_values(table: Table, *, taken: set[str | None]) -> str | None:
    """The one column of varied numbers, when no column of repeating classes was found: a
    number to predict (the regression task). Integers that never repeat are ids, not targets;
    with two candidates the person chooses."""
    found = []
    for column in table.columns:
        if column in taken:
            continue
        keys = [k for row in table.rows if (k := _label_key(row.get(column))) is not None]
        distinct = len(set(keys))
        if distinct < 2 or not all(_is_number(k) for k in keys):
            continue
        if distinct == len(keys) and all(float(k).is_integer() for k in keys):
            continue
        found.append(column)
    return found[0] if len(found) == 1 else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_by_values(table: Table, *, taken: set[str | None]) -> str | None:
    """The column of words (not numbers) with the longest values on average."""
    best: tuple[float, str] | None = None
    for column in table.columns:
        if column in taken:
            continue
        values = [v for row in table.rows if isinstance(v := row.get(column), str) and v.strip()]
        words = [v for v in values if not _is_number(v)]
        if not words or len(words) * 2 < len(values):
            continue
        mean = sum(len(v) for v in values) / len(values)
        if best is None or mean > best[0]:
            best = (mean, column)
    return best[1] if best else None
