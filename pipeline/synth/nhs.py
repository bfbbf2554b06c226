"""NHS numbers (Modulus 11) for the synthetic study's ``nhs_numbers`` option.

An NHS number has 10 digits; the last is a check digit: multiply the first nine digits by
10, 9, ..., 2, sum, take the remainder modulo 11; the check digit is 11 minus that
remainder (11 becomes 0; 10 means the nine digits have no valid number). The generator
only makes numbers in the 999 000 0000 - 999 999 9999 range, which NHS England reserves
for testing, so they are never a real person's number.
"""

from __future__ import annotations

import numpy as np

WEIGHTS = np.arange(10, 1, -1)  # 10, 9, ..., 2


def check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit of nine digits, or None if they have no valid number."""
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise ValueError(f"need nine digits, got {first_nine!r}")
    total = int(np.dot(WEIGHTS, [int(c) for c in first_nine]))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid(value: str) -> bool:
    """True if ``value`` is 10 digits passing the Modulus 11 check."""
    value = str(value)
    if len(value) != 10 or not value.isdigit():
        return False
    return check_digit(value[:9]) == int(value[9])


def generate(rng: np.random.Generator, n: int, prefix: str = "999") -> list[str]:
    """``n`` distinct valid NHS numbers (test range ``999...`` by default)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        body = prefix + "".join(str(d) for d in rng.integers(0, 10, 9 - len(prefix)))
        c = check_digit(body)
        if c is None:
            continue
        num = body + str(c)
        if num not in seen:
            seen.add(num)
            out.append(num)
    return out
