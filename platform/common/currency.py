"""Currencies the platform settles in, with their number of minor-unit digits (ISO 4217)."""

MINOR_DIGITS = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "JPY": 0,
}
SUPPORTED = tuple(sorted(MINOR_DIGITS))


def is_supported(code: str) -> bool:
    return code in MINOR_DIGITS


def format_minor(amount_minor: int, currency: str) -> str:
    """A human string such as '12.34 USD', exact (integer arithmetic, no float)."""
    digits = MINOR_DIGITS.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d} {currency}" if digits else f"{sign}{whole} {currency}"
