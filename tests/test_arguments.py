import argparse

import pytest

from rtsr.arguments import non_negative_int, positive_int


def test_whole_numbers_in_range_pass():
    assert non_negative_int("0") == 0 and non_negative_int("12") == 12
    assert positive_int("1") == 1 and positive_int(" 7 ") == 7


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (non_negative_int, "-1", "expected a number >= 0, got -1"),
        (non_negative_int, "1.5", "expected a whole number, got '1.5'"),
        (positive_int, "0", "expected a number >= 1, got 0"),
        (positive_int, "many", "expected a whole number, got 'many'"),
    ],
)
def test_bad_text_is_an_argparse_error_with_one_line(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
        parse(text)
