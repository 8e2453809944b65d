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


# The largest amount any single money input may carry: 100 billion whole units of the currency (so
# 10^13 minor units of USD, 10^11 of JPY). A sum of 900,000 such amounts still fits the 64-bit columns
# (9.2 * 10^18), and settlement and balances check their sums against COLUMN_MAX before writing.
MAX_WHOLE_UNITS = 100_000_000_000
COLUMN_MAX = 2**63 - 1


def max_minor(currency: str) -> int:
    """The documented maximum of one amount in `currency`, in minor units."""
    return MAX_WHOLE_UNITS * 10 ** MINOR_DIGITS.get(currency, 2)


def amount_in_bounds(amount_minor: int, currency: str, *, allow_zero: bool = False) -> bool:
    """Is this an integer amount a money input may carry: positive (or zero when allowed) and at most
    `max_minor(currency)`?"""
    if type(amount_minor) is not int:
        return False
    low = 0 if allow_zero else 1
    return low <= amount_minor <= max_minor(currency)


def bound_text(currency: str) -> str:
    return f"at most {format_minor(max_minor(currency), currency)}"
