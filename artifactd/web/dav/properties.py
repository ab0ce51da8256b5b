"""PROPFIND bodies in, Multi-Status bodies out (RFC 4918 §9.1, §14, §15): pure, no I/O.

Request bodies are parsed by defusedxml with DTDs, entities and external references
forbidden, so an entity bomb ("billion laughs") or an external entity is refused at its
first declaration, before anything expands. Bodies over MAX_BODY_BYTES are never parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException

from artifactd.errors import InvalidValueError
from artifactd.http.conditional import format_http_date
from artifactd.timestamps import isoformat_utc

DAV = "DAV:"
# A PROPFIND body names a few properties: 64 KiB is far beyond any real client's.
MAX_BODY_BYTES = 64 * 1024
# The live properties served (§15), in the order allprop lists them.
LIVE_PROPERTIES = (
    "displayname",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "creationdate",
    "resourcetype",
)
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

PropertyName = tuple[str, str]  # (namespace, local name)


@dataclass(frozen=True, slots=True)
class Propfind:
    """What a PROPFIND asks for (§14.20): every property, their names, or the ones named."""

    kind: Literal["allprop", "propname", "prop"]
    names: tuple[PropertyName, ...] = ()


@dataclass(frozen=True, slots=True)
class Resource:
    """One response of a Multi-Status: what is known of a file or a collection."""

    href: str  # percent-encoded, a collection's with its trailing '/'
    name: str
    is_collection: bool
    size: int | None = None
    content_type: str | None = None
    etag: str | None = None
    modified_at: float | None = None
    created_at: float | None = None

    def live_values(self) -> dict[str, str | None]:
        """Local name → text of each live property this resource has (resourcetype's text
        is None: its value is an element)."""
        values: dict[str, str | None] = {"displayname": self.name}
        if not self.is_collection:
            values["getcontentlength"] = str(self.size or 0)
            if self.content_type:
                values["getcontenttype"] = self.content_type
            if self.etag:
                values["getetag"] = self.etag
        if self.modified_at:  # 0.0: unknown (S3 keeps no times for prefixes)
            values["getlastmodified"] = format_http_date(self.modified_at)
        created = self.created_at or self.modified_at
        if created:
            values["creationdate"] = isoformat_utc(created)
        values["resourcetype"] = None
        return {name: values[name] for name in LIVE_PROPERTIES if name in values}


def parse_propfind(body: bytes) -> Propfind:
    """The request of a PROPFIND body; an empty body means allprop (§9.1).
    InvalidValueError (400) for anything else than a well-formed DAV:propfind."""
    if not body.strip():
        return Propfind("allprop")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InvalidValueError(f"PROPFIND body refused: {type(exc).__name__}") from exc
    except ParseError as exc:
        raise InvalidValueError("PROPFIND body is not well-formed XML") from exc
    if root.tag != f"{{{DAV}}}propfind":
        raise InvalidValueError("PROPFIND body must be a DAV:propfind element")
    for child in root:
        if child.tag == f"{{{DAV}}}allprop":
            return Propfind("allprop")  # an <include> asks for nothing this server lacks
        if child.tag == f"{{{DAV}}}propname":
            return Propfind("propname")
        if child.tag == f"{{{DAV}}}prop":
            return Propfind("prop", tuple(_split(prop.tag) for prop in child))
    raise InvalidValueError("DAV:propfind needs allprop, propname or prop")


def _split(tag: str) -> PropertyName:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def multistatus(resources: list[Resource], request: Propfind) -> bytes:
    """The 207 body (§13): one response per resource, found properties under 200 and
    (for a prop request) the ones it lacks under 404. Written as text: ElementTree took
    100 µs per resource, on the event loop."""
    out = [XML_DECLARATION, '<D:multistatus xmlns:D="DAV:">']
    names_only = request.kind == "propname"
    for resource in resources:
        out.append(f"<D:response><D:href>{_text(resource.href)}</D:href>")
        values = resource.live_values()
        if request.kind == "prop":
            found = [n for n in request.names if n[0] == DAV and n[1] in values]
            missing = [n for n in request.names if n not in found]
        else:
            found = [(DAV, name) for name in values]
            missing = []
        out.append("<D:propstat><D:prop>")
        for _, local in found:
            if names_only:
                out.append(f"<D:{local}/>")
            elif local == "resourcetype":
                inner = "<D:collection/>" if resource.is_collection else ""
                out.append(f"<D:resourcetype>{inner}</D:resourcetype>")
            else:
                out.append(f"<D:{local}>{_text(values[local] or '')}</D:{local}>")
        out.append("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>")
        if missing:
            out.append("<D:propstat><D:prop>")
            out.extend(_empty_element(name) for name in missing)
            out.append("</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>")
        out.append("</D:response>")
    out.append("</D:multistatus>")
    return "".join(out).encode()


def _text(value: str) -> str:
    """Character data: escaped, and characters XML 1.0 cannot hold (control characters in
    a name placed by hand) replaced."""
    return _NOT_XML_CHAR.sub("\ufffd", escape(value))


def _empty_element(name: PropertyName) -> str:
    """`<ns:local/>` for a property asked for by a name the request's parser accepted."""
    namespace, local = name
    if namespace == DAV:
        return f"<D:{local}/>"
    if not namespace:
        return f"<{local}/>"
    return f"<x:{local} xmlns:x={quoteattr(namespace)}/>"


def finite_depth_error() -> bytes:
    """The body of PROPFIND's 403 for Depth: infinity: the §16 precondition element."""
    return (
        XML_DECLARATION + '<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>'
    ).encode()
