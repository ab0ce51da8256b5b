"""PROPFIND bodies in, Multi-Status bodies out (RFC 4918 §9.1, §14, §15): pure, no I/O.

Request bodies are parsed by defusedxml with DTDs, entities and external references
forbidden, so an entity bomb ("billion laughs") or an external entity is refused at its
first declaration, before anything expands. Bodies over MAX_BODY_BYTES are never parsed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

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
# ET.tostring writes ASCII (other characters as references): valid UTF-8 too.
XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
ET.register_namespace("D", DAV)

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
    except ET.ParseError as exc:
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
    (for a prop request) the ones it lacks under 404."""
    root = ET.Element(f"{{{DAV}}}multistatus")
    for resource in resources:
        response = ET.SubElement(root, f"{{{DAV}}}response")
        ET.SubElement(response, f"{{{DAV}}}href").text = resource.href
        values = resource.live_values()
        if request.kind == "prop":
            found = [n for n in request.names if n[0] == DAV and n[1] in values]
            missing = [n for n in request.names if n not in found]
        else:
            found = [(DAV, name) for name in values]
            missing = []
        names_only = request.kind == "propname"
        _propstat(response, found, values, resource.is_collection, "200 OK", names_only)
        if missing:
            _propstat(response, missing, {}, False, "404 Not Found", True)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        root
    )  # ASCII, non-ASCII as references


def _propstat(
    response: ET.Element,
    names: list[PropertyName],
    values: dict[str, str | None],
    is_collection: bool,
    status: str,
    names_only: bool,
) -> None:
    propstat = ET.SubElement(response, f"{{{DAV}}}propstat")
    prop = ET.SubElement(propstat, f"{{{DAV}}}prop")
    for namespace, local in names:
        element = ET.SubElement(prop, f"{{{namespace}}}{local}" if namespace else local)
        if names_only:
            continue
        if local == "resourcetype" and namespace == DAV:
            if is_collection:
                ET.SubElement(element, f"{{{DAV}}}collection")
        else:
            element.text = values.get(local)
    ET.SubElement(propstat, f"{{{DAV}}}status").text = f"HTTP/1.1 {status}"


def finite_depth_error() -> bytes:
    """The body of PROPFIND's 403 for Depth: infinity: the §16 precondition element."""
    root = ET.Element(f"{{{DAV}}}error")
    ET.SubElement(root, f"{{{DAV}}}propfind-finite-depth")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        root
    )  # ASCII, non-ASCII as references
