"""Pure HTTP functions (RFC 9110 and friends): no I/O, no aiohttp."""
