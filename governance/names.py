"""The name rule for teams, datasets and registered models (issue 9), a plain engine.

A name is stored NFC-normalised and compared under NFKC case folding (Unicode's compatibility
caseless match, UAX #15 and the Unicode standard's D146), so ``Churn``, its fullwidth twin and ``churn``
are one name. Nothing is silently rewritten: a name with leading or trailing whitespace, a control
character, a zero-width or a bidirectional-formatting character is refused with the reason, since
those make two names look alike on screen while comparing different.
"""

from __future__ import annotations

import unicodedata

# Zero-width and invisible joiners/spaces that NFKC keeps (category Cf is refused as a whole below;
# these are listed so the message can name them).
_INVISIBLE = {
    "\u200b": "ZERO WIDTH SPACE",
    "\u200c": "ZERO WIDTH NON-JOINER",
    "\u200d": "ZERO WIDTH JOINER",
    "\u2060": "WORD JOINER",
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE",
}
# Bidirectional formatting characters (Unicode's Bidi_Control property).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class InvalidName(ValueError):
    """A name the rule refuses; the message says which character or part and why."""


def check_name(raw: str, *, noun: str = "name", max_length: int = 200) -> str:
    """``raw`` NFC-normalised, or InvalidName naming what breaks the rule.

    Refused: empty, longer than ``max_length`` characters, leading/trailing whitespace, control
    characters (Unicode category Cc), format characters (Cf: zero-width, bidi controls, soft
    hyphen...), unassigned code points (Cn) and surrogates (Cs).
    """
    if not isinstance(raw, str) or raw == "":
        raise InvalidName(f"a {noun} cannot be empty")
    if raw != raw.strip():
        raise InvalidName(f"a {noun} may not start or end with whitespace: {raw!r}")
    name = unicodedata.normalize("NFC", raw)
    if len(name) > max_length:
        raise InvalidName(f"a {noun} has at most {max_length} characters, this one has {len(name)}")
    for position, char in enumerate(name):
        category = unicodedata.category(char)
        if char in _BIDI:
            what = f"the bidirectional control U+{ord(char):04X}"
        elif char in _INVISIBLE:
            what = f"the invisible character U+{ord(char):04X} {_INVISIBLE[char]}"
        elif category == "Cc":
            what = f"the control character U+{ord(char):04X}"
        elif category in ("Cf", "Cn", "Cs", "Co"):
            what = f"the format or unassigned character U+{ord(char):04X}"
        else:
            continue
        raise InvalidName(f"a {noun} may not contain {what} (at position {position})")
    return name


def name_key(name: str) -> str:
    """The comparison key of a checked name: NFKC of the case fold of NFKC (the Unicode standard's
    compatibility caseless match, D146), so fullwidth, ligature and case variants collide."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
