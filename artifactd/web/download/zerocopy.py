"""Zero-copy sending of local files: `os.sendfile` straight from the page cache to the socket.

uvloop implements no `loop.sendfile`, so this does it by hand. After aiohttp has sent the
headers and the transport's buffer is empty, the body goes out through a duplicate of the
connection's socket fd (the event loop does not know that fd, so waiting for writability
on it is allowed). Each sendfile call runs in a worker thread — a cold page cache would
otherwise block the loop on disk reads — and moves as much as the socket accepts; when the
socket is full the loop waits for it to drain, so a slow client costs no memory at all.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

# One sendfile call moves at most this much. Steps of a few MiB streamed slower and with
# more CPU per byte, likely because a long call holds the socket's lock while the peer's
# ACKs queue up behind it; much smaller steps cost more calls than they save (measured on
# one large stream over loopback: docs/performance.md, "What each optimisation bought").
SENDFILE_STEP_BYTES = 256 * 1024
# A client that keeps up never makes the socket full, so the loop would not run anything
# else until the whole body is out; let other connections in after this many bytes.
YIELD_EVERY_BYTES = 4 * 1024 * 1024


class ZeroCopyUnavailableError(Exception):
    """This connection cannot take sendfile (no plain socket); stream instead."""


def socket_fd(request: web.Request) -> int:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or transport is None or transport.get_extra_info("sslcontext"):
        raise ZeroCopyUnavailableError("no plain TCP socket")
    return int(sock.fileno())


async def send_file_range(
    request: web.Request, response: web.StreamResponse, file_fd: int, offset: int, count: int
) -> int:
    """Send `count` bytes of `file_fd` from `offset` as the body of the prepared `response`.

    Returns the bytes sent (less than `count` only if the file shrank underneath)."""
    transport = request.transport
    writer = response._payload_writer  # aiohttp's writer: headers out, byte counts right
    if transport is None or writer is None:
        raise ConnectionResetError("connection closed")
    writer.send_headers()
    await _wait_until_flushed(transport)
    loop = asyncio.get_running_loop()
    fd = os.dup(socket_fd(request))
    sent_total = 0
    next_yield = YIELD_EVERY_BYTES
    try:
        while sent_total < count:
            if transport.is_closing():
                raise ConnectionResetError("connection closed during sendfile")
            step = min(count - sent_total, SENDFILE_STEP_BYTES)
            position = offset + sent_total
            try:
                if _probably_cached(file_fd, position, step):
                    # Page-cache hit: the call copies into the socket and returns at once;
                    # a thread hop would cost more than it (and contend for the socket).
                    sent = os.sendfile(fd, file_fd, position, step)
                else:
                    sent = await loop.run_in_executor(
                        None, os.sendfile, fd, file_fd, position, step
                    )
            except BlockingIOError:
                await _wait_writable(loop, fd)
                continue
            if sent == 0:
                break  # end of file: it was truncated while being sent
            sent_total += sent
            if sent_total >= next_yield:
                next_yield = sent_total + YIELD_EVERY_BYTES
                await asyncio.sleep(0)
    finally:
        os.close(fd)
        writer.buffer_size += sent_total
        writer.output_size += sent_total
        if writer.length is not None:
            writer.length = max(0, writer.length - sent_total)
    return sent_total


def _probably_cached(fd: int, offset: int, count: int) -> bool:
    """Whether the first and last byte of the span are in the page cache (preadv2 with
    RWF_NOWAIT fails instead of reading the disk): a cheap sign that sendfile will not
    wait for the disk, so it may run on the event loop."""
    probe = bytearray(1)
    try:
        return (
            os.preadv(fd, [probe], offset, os.RWF_NOWAIT) == 1
            and os.preadv(fd, [probe], offset + count - 1, os.RWF_NOWAIT) == 1
        )
    except OSError:
        return False


async def _wait_until_flushed(transport: asyncio.Transport) -> None:
    """Wait until the transport has handed every buffered byte (the headers) to the kernel;
    sendfile must not overtake them."""
    delay = 0.0005
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("connection closed")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def _wait_writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, on_writable)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
