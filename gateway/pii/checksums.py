"""Check-digit algorithms for German identifiers (pure functions, no regexes)."""

from __future__ import annotations

from collections import Counter

# ---------------------------------------------------------------- ISO 7064 MOD 11,10


def iso7064_mod11_10_check_digit(digits: str) -> int:
    """Check digit of ISO/IEC 7064 MOD 11,10 (Steuer-ID, USt-IdNr DE)."""
    product = 10
    for ch in digits:
        total = (int(ch) + product) % 10
        if total == 0:
            total = 10
        product = (total * 2) % 11
    check = 11 - product
    return 0 if check == 10 else check


def is_valid_steuer_id(value: str) -> bool:
    """Steuerliche Identifikationsnummer (11 digits, § 139b AO).

    * first digit is not 0,
    * in the first ten digits exactly one digit occurs twice or three times,
      all others at most once (so 8 or 9 distinct digits); a digit occurring
      three times must not occur three times in a row,
    * the 11th digit is the ISO 7064 MOD 11,10 check digit.
    """
    d = "".join(ch for ch in value if ch.isdigit())
    if len(d) != 11 or not d.isascii() or d[0] == "0":
        return False
    body = d[:10]
    counts = Counter(body)
    multi = [c for c in counts.values() if c > 1]
    if len(multi) != 1 or multi[0] not in (2, 3):
        return False
    if multi[0] == 3:
        digit = next(k for k, v in counts.items() if v == 3)
        if digit * 3 in body:
            return False
    return iso7064_mod11_10_check_digit(body) == int(d[10])


def is_valid_ust_id_de(value: str) -> bool:
    """German USt-IdNr: 'DE' + 8 digits + MOD 11,10 check digit."""
    compact = value.replace(" ", "").upper()
    if not compact.startswith("DE"):
        return False
    d = compact[2:]
    if len(d) != 9 or not d.isdigit() or not d.isascii() or d[0] == "0":
        return False
    return iso7064_mod11_10_check_digit(d[:8]) == int(d[8])


# ---------------------------------------------------------------- IBAN

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_mod97(compact: str) -> int:
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97


def is_valid_iban(value: str) -> bool:
    """ISO 13616: known country length + mod-97 == 1."""
    compact = value.replace(" ", "").upper()
    if not compact.isascii() or not compact.isalnum() or len(compact) < 15:
        return False
    country = compact[:2]
    if not country.isalpha() or not compact[2:4].isdigit():
        return False
    if IBAN_LENGTHS.get(country) != len(compact):
        return False
    return iban_mod97(compact) == 1


# ---------------------------------------------------------------- Rentenversicherungsnummer

_SV_WEIGHTS = (2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1)


def _cross_sum(n: int) -> int:
    return sum(int(c) for c in str(n))


def sv_check_digit(first11: str) -> int:
    """Check digit of the Rentenversicherungsnummer (VKVV § 2).

    The letter is replaced by its two-digit alphabet position (A=01 ... Z=26);
    the 12 resulting digits are weighted 2,1,2,5,7,1,2,1,2,1,2,1, the cross
    sums of the products are added, the check digit is the sum modulo 10.
    """
    letter = first11[8].upper()
    digits = first11[:8] + f"{ord(letter) - ord('A') + 1:02d}" + first11[9:11]
    total = sum(_cross_sum(int(d) * w) for d, w in zip(digits, _SV_WEIGHTS, strict=True))
    return total % 10


def is_valid_sv_nummer(value: str) -> bool:
    compact = value.replace(" ", "")
    if len(compact) != 12 or not compact.isascii():
        return False
    if not (compact[:8].isdigit() and compact[8].isalpha() and compact[9:].isdigit()):
        return False
    day, month = int(compact[2:4]), int(compact[4:6])
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return False
    return sv_check_digit(compact[:11]) == int(compact[11])


# ---------------------------------------------------------------- Krankenversichertennummer


def kvnr_check_digit(first9: str) -> int:
    """Check digit of the 10-char Krankenversichertennummer (unveränderbarer Teil).

    Letter -> two digits (A=01 ... Z=26), followed by the 8 digits = 10 digits,
    weighted alternately 1,2,1,2,...; cross sums of the products are added;
    check digit = sum modulo 10.
    """
    letter = first9[0].upper()
    digits = f"{ord(letter) - ord('A') + 1:02d}" + first9[1:9]
    total = sum(_cross_sum(int(d) * (1 if i % 2 == 0 else 2)) for i, d in enumerate(digits))
    return total % 10


def is_valid_kvnr(value: str) -> bool:
    v = value.replace(" ", "")
    if len(v) != 10 or not v.isascii() or not v[0].isalpha() or not v[1:].isdigit():
        return False
    return kvnr_check_digit(v[:9]) == int(v[9])


# ---------------------------------------------------------------- ICAO 9303 (MRZ) 7-3-1


def mrz_char_value(ch: str) -> int:
    if ch == "<":
        return 0
    if ch.isdigit():
        return int(ch)
    return ord(ch.upper()) - ord("A") + 10


def mrz_check_digit(data: str) -> int:
    weights = (7, 3, 1)
    return sum(mrz_char_value(c) * weights[i % 3] for i, c in enumerate(data)) % 10
