"""Safety checks on generated copy, run before a variant is stored.

Every problem becomes a flag with a code, the field and a message an editor can read. Flagged
variants are stored with their flags (status pending, shown first in the review queue), never
dropped silently and never published unreviewed.

Checks:

- ``length``: a field longer than the slot allows, or empty;
- ``banned_word`` / ``banned_pattern``: the brand's ``AIGC["BRAND"]["BANNED_WORDS"]`` (whole
  words, any case) and ``BANNED_PATTERNS`` (regular expressions);
- ``url``: links or bare domains (copy never carries links; the slot does);
- ``personal_data``: e-mail addresses, phone numbers, card-like digit runs;
- ``price``: an amount of money that is not the price of a product in the brief;
- ``discount``: a discount or sale claim (the catalog carries no discounts, so none is
  supported).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from aigc_django.conf import aigc_settings
from aigc_django.generation.briefs import Brief

URL = re.compile(
    r"(?i)\b(?:https?://|www\.)\S+|\b[a-z0-9-]+\.(?:com|net|org|io|co|shop|store|info|biz|de|uk|fr)\b"
)
EMAIL = re.compile(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b")
PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{7,}\d(?![\w.])")
CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
# An amount with a currency sign or code on either side, or a bare decimal like 49.90.
MONEY = re.compile(
    r"(?i)(?:[$€£¥]\s?|\b(?:usd|eur|gbp|chf)\s?)(\d+(?:[.,]\d{1,2})?)"
    r"|(\d+(?:[.,]\d{1,2})?)\s?(?:[$€£¥]|\b(?:usd|eur|gbp|chf|euros?|dollars?|pounds?)\b)"
    r"|\b(\d+[.,]\d{2})\b"
)
DISCOUNT = re.compile(
    r"(?i)\b\d+\s?%|\bper\s?cent\b|\b(?:discount|sale|clearance|half[- ]price|bogo|"
    r"save\s+(?:up\s+to\s+)?\d|\d+\s+off\b|markdown|reduced)\w*"
)


@dataclass
class Flag:
    code: str
    field: str
    message: str


@dataclass
class SafetyReport:
    flags: list[Flag] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.flags

    def add(self, code: str, field_name: str, message: str) -> None:
        self.flags.append(Flag(code, field_name, message))

    def as_dict(self) -> dict:
        return {"ok": self.ok, "flags": [asdict(flag) for flag in self.flags]}


def _amount(text: str) -> float:
    return float(text.replace(",", "."))


def check_copy(fields: dict[str, str], brief: Brief) -> SafetyReport:
    """Flags for one piece of copy written for ``brief``."""
    brand = aigc_settings.BRAND
    report = SafetyReport()
    prices = {round(p.price, 2) for p in brief.products if p.price is not None}
    banned_words = [w for w in brand.get("BANNED_WORDS") or [] if w]
    banned_patterns = [re.compile(p, re.IGNORECASE) for p in brand.get("BANNED_PATTERNS") or []]
    for name, limit in brief.fields.items():
        text = fields.get(name, "")
        if not text.strip():
            report.add("length", name, "is empty")
        elif len(text) > limit:
            report.add("length", name, f"is {len(text)} characters; the slot allows {limit}")
        for word in banned_words:
            if re.search(rf"(?i)(?<!\w){re.escape(word)}(?!\w)", text):
                report.add("banned_word", name, f"contains the banned word {word!r}")
        for pattern in banned_patterns:
            if pattern.search(text):
                report.add(
                    "banned_pattern", name, f"matches the banned pattern {pattern.pattern!r}"
                )
        if URL.search(text):
            report.add("url", name, f"contains a link: {URL.search(text).group(0)!r}")
        if EMAIL.search(text):
            report.add("personal_data", name, "contains an e-mail address")
        elif CARD.search(text):
            report.add("personal_data", name, "contains a card-like number")
        elif PHONE.search(text):
            report.add("personal_data", name, "contains a phone number")
        for match in MONEY.finditer(text):
            amount = _amount(next(group for group in match.groups() if group))
            if round(amount, 2) not in prices:
                report.add(
                    "price",
                    name,
                    f"names the amount {match.group(0).strip()!r}, which is not the catalog "
                    "price of a product in the brief",
                )
        discount = DISCOUNT.search(text)
        if discount:
            report.add(
                "discount",
                name,
                f"makes a discount claim ({discount.group(0)!r}) the catalog does not support",
            )
    return report
