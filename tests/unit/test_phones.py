from __future__ import annotations

import pytest

from routing.customers.phones import normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("12025550143", None, "+12025550143"),  # Telegram: digits with country code, no "+"
        ("+1 (202) 555-0143", None, "+12025550143"),  # CRM: punctuation
        ("202-555-0143", "US", "+12025550143"),  # national format with a default region
        ("8 916 123-45-67", "RU", "+79161234567"),
        ("0044 20 7946 0958", None, "+442079460958"),  # international prefix 00
        ("+86 138 0013 8000", None, "+8613800138000"),
        ("202-555-0143", None, None),  # national without a region: ambiguous, refused
        ("abc", None, None),
        ("123", None, None),
        ("", None, None),
    ],
)
def test_normalize_phone(raw: str, region: str | None, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected
