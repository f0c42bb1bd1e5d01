"""Yes/no parsing rules: the edge-case table in scr_core.yes_no's docstring, cell by cell (through scr_core.eval.parsing)."""

from __future__ import annotations

import pytest

from scr_core.eval.parsing import (
    available_rules,
    normalize_label,
    parse_many,
    parse_yes_no,
)

RULES = ("pope", "pope_casefold", "first_word", "strict", "vlmevalkit", "mme", "mme_lenient", "amber_exact")
Y, N, U = "yes", "no", "unknown"

# answer -> expected result per rule, in the order of RULES (same table as the module docstring)
TABLE = {
    'Yes': (Y, Y, Y, Y, Y, Y, Y, Y),
    'Yes.': (Y, Y, Y, U, Y, Y, Y, U),
    'yes': (Y, Y, Y, Y, Y, Y, Y, U),
    'No': (N, N, N, N, N, N, N, N),
    'No, there is not.': (N, N, N, U, N, N, N, U),
    'NO': (Y, N, N, N, N, N, N, U),
    'Not sure': (Y, N, U, U, U, N, N, U),
    'There is no dog.': (N, N, U, U, N, U, U, U),
    '': (Y, Y, U, U, U, U, U, U),
    'asdf qwerty': (Y, Y, U, U, U, U, U, U),
    'Yes and no': (N, N, Y, U, U, Y, Y, U),
    'Y': (Y, Y, U, U, U, U, Y, U),
    'n.': (Y, Y, U, U, U, U, N, U),
    '  yes': (Y, Y, Y, Y, Y, U, Y, U),
    '...yes': (Y, Y, Y, U, Y, U, Y, U),
}


def test_all_rules_are_registered():
    assert available_rules() == RULES


@pytest.mark.parametrize("answer", list(TABLE))
@pytest.mark.parametrize("rule_index", range(len(RULES)))
def test_edge_case_table(answer, rule_index):
    rule = RULES[rule_index]
    assert parse_yes_no(answer, rule) == TABLE[answer][rule_index], (answer, rule)


def test_pope_rule_is_the_official_script():
    # Only the text before the first "." counts: the second sentence's "No" is ignored.
    assert parse_yes_no("Yes, there is a dog. No cat though.", "pope") == Y
    # Commas are removed before splitting, so "no," is the word "no".
    assert parse_yes_no("There is no, dog", "pope") == N
    # It splits on single spaces only: a newline glues words together -> yes.
    assert parse_yes_no("No\nthere is none", "pope") == Y
    # "not" inside another word does not count; "isn't" is not "not".
    assert parse_yes_no("There isn't a dog", "pope") == Y
    assert parse_yes_no("I do not see one", "pope") == N


def test_none_is_treated_as_empty():
    assert parse_yes_no(None, "pope") == Y
    assert parse_yes_no(None, "first_word") == U


def test_mme_rule_is_calculation_py():
    # MME's parse_pred_ans: lower-case, exact yes/no, else yes/no within the first 4 characters.
    assert parse_yes_no("y", "mme") == U  # no single letters
    assert parse_yes_no("n.", "mme") == U
    assert parse_yes_no("  yes", "mme") == U  # nothing is stripped: "  ye" holds no "yes"
    assert parse_yes_no(" yes", "mme") == Y
    assert parse_yes_no("nope", "mme") == N  # "no" within the first 4 characters
    assert parse_yes_no("The answer is yes", "mme") == U  # only the first 4 characters are looked at


def test_mme_lenient_rule_prefix_and_single_letters():
    assert parse_yes_no("y", "mme_lenient") == Y
    assert parse_yes_no("N", "mme_lenient") == N
    assert parse_yes_no("x", "mme_lenient") == U
    assert parse_yes_no("...yes", "mme_lenient") == Y  # "." deleted
    assert parse_yes_no("nope", "mme_lenient") == N


def test_first_word_ignores_leading_space_and_punctuation():
    assert parse_yes_no("  YES!", "first_word") == Y
    assert parse_yes_no('"No," she said', "first_word") == N
    assert parse_yes_no("Nope", "first_word") == U


def test_parse_many_and_unknown_rule():
    assert parse_many(["Yes", "No", ""], "first_word") == [Y, N, U]
    with pytest.raises(ValueError, match="unknown yes/no parsing rule 'bogus'"):
        parse_yes_no("Yes", "bogus")


@pytest.mark.parametrize("raw,expected", [("yes", Y), ("No", N), (" YES ", Y), ("1", Y), ("0", N), (1, Y), (0, N)])
def test_normalize_label(raw, expected):
    assert normalize_label(raw) == expected


def test_normalize_label_rejects_other_values():
    with pytest.raises(ValueError, match="'maybe' in labels.json is not yes/no"):
        normalize_label("maybe", "labels.json")
