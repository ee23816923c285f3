"""Phone number normalisation for matching Telegram contacts to CRM records."""

from __future__ import annotations

import phonenumbers


def normalize_phone(raw: str, default_region: str | None = None) -> str | None:
    """Return the number in E.164 (``+15551234567``), or None if it is not a valid number.

    Telegram sends contact numbers as bare digits with the country code ("15551234567");
    CRM exports mix ``+``, spaces, dashes and brackets, and sometimes national formats, which
    only parse with the business's ``default_region``.
    """
    text = raw.strip()
    if not text:
        return None
    candidates = [text]
    if not text.startswith("+"):
        digits = "".join(ch for ch in text if ch.isdigit())
        if text.startswith("00") and len(digits) > 2:
            candidates = ["+" + digits[2:]]
        elif default_region is None:
            candidates = ["+" + digits]
        else:
            # National format first (the region's own convention), then international digits.
            candidates = [text, "+" + digits]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(
                candidate, None if candidate.startswith("+") else default_region
            )
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None
