"""Content negotiation (RFC 9110 §12): weighted lists like Accept and Accept-Encoding."""

from __future__ import annotations


def parse_weighted(header: str | None) -> dict[str, float]:
    """`"gzip;q=0.5, br"` -> {"gzip": 0.5, "br": 1.0}; names lowercased, a bad q is 0
    (RFC 9110 §12.4.2 weights), the first mention of a name wins."""
    weights: dict[str, float] = {}
    for item in (header or "").split(","):
        name, *params = (part.strip() for part in item.split(";"))
        if not name:
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = min(1.0, max(0.0, float(value)))
                except ValueError:
                    weight = 0.0
        weights.setdefault(name.lower(), weight)
    return weights


def media_type_quality(accept: str | None, media_type: str) -> float:
    """The weight Accept gives `media_type`: its own entry, else `type/*`, else `*/*`;
    -1 when none applies (RFC 9110 §12.5.1: the most specific range wins)."""
    weights = parse_weighted(accept)
    main_type = media_type.split("/")[0]
    for candidate in (media_type, f"{main_type}/*", "*/*"):
        if candidate in weights:
            return weights[candidate]
    return -1.0


def coding_accepted(accept_encoding: str | None, coding: str, *aliases: str) -> bool:
    """Whether Accept-Encoding gives `coding` (or an alias) a non-zero weight (§12.5.3)."""
    weights = parse_weighted(accept_encoding)
    for name in (coding, *aliases):
        if name in weights:
            return weights[name] > 0
    return weights.get("*", 0.0) > 0
