import argparse

import pytest

from rtsr.arguments import non_negative_int, parse_size, positive_int


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


@pytest.mark.parametrize(
    ("text", "size"),
    [("8GB", 8 * 1024**3), ("512MiB", 512 * 1024**2), ("50mb", 50 * 1024**2), ("2g", 2 * 1024**3), ("1000", 1000)],
)
def test_sizes_count_in_powers_of_1024(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0gb", "lots", "-1mb", "8 GBs", ""])
def test_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="expected a size such as 512MB or 8GB"):
        parse_size(text)
