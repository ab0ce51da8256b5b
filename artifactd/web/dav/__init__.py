"""WebDAV class 1 (RFC 4918) on `/files/`: OPTIONS, PROPFIND, MKCOL, COPY, MOVE and DELETE of
a collection.

`properties` parses PROPFIND bodies and writes Multi-Status (pure), `headers` reads Depth,
Overwrite and Destination, `transfer` copies and moves through the store contract, and
`handlers` answers. Authorisation is `web/security.py`'s, as for every other method.
"""
