"""Token buckets with time passed in, and the client address behind trusted proxies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifactd.errors import InvalidValueError
from artifactd.ratelimit import (
    RateLimiter,
    client_address,
    forwarded_chain,
    is_loopback,
    parse_networks,
)

# -- RateLimiter -----------------------------------------------------------------------------


def test_a_full_bucket_allows_a_burst_of_rate_then_refuses() -> None:
    limiter = RateLimiter(3, 60.0)
    assert [limiter.check("a", 100.0) for _ in range(3)] == [None, None, None]
    assert limiter.check("a", 100.0) == 20.0  # one token every 20 s


def test_retry_after_is_a_whole_number_of_seconds_at_least_one() -> None:
    limiter = RateLimiter(10, 1.0)  # a token every 0.1 s
    for _ in range(10):
        limiter.check("a", 0.0)
    assert limiter.check("a", 0.0) == 1.0
    slow = RateLimiter(1, 3600.0)
    slow.check("a", 0.0)
    assert slow.check("a", 0.5) == 3600.0  # 3599.5 rounded up


def test_waiting_the_retry_after_is_enough() -> None:
    limiter = RateLimiter(2, 60.0)
    limiter.check("a", 0.0)
    limiter.check("a", 0.0)
    wait = limiter.check("a", 0.0)
    assert wait == 30.0
    assert limiter.check("a", 29.9) is not None
    assert limiter.check("a", 30.0) is None


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    limiter = RateLimiter(60, 60.0)  # one per second
    for _ in range(60):
        assert limiter.check("a", 0.0) is None
    assert limiter.check("a", 0.0) is not None
    assert limiter.check("a", 5.0) is None  # five tokens back
    assert all(limiter.check("a", 5.0) is None for _ in range(4))
    assert limiter.check("a", 5.0) is not None


def test_burst_can_differ_from_rate() -> None:
    limiter = RateLimiter(60, 60.0, burst=2)
    assert [limiter.check("a", 0.0) for _ in range(3)] == [None, None, 1.0]


def test_clients_have_separate_buckets() -> None:
    limiter = RateLimiter(1, 60.0)
    assert limiter.check("a", 0.0) is None
    assert limiter.check("a", 0.0) is not None
    assert limiter.check("b", 0.0) is None


def test_a_clock_going_back_grants_nothing() -> None:
    limiter = RateLimiter(1, 60.0)
    limiter.check("a", 1000.0)
    assert limiter.check("a", 0.0) is not None
    assert limiter.check("a", 1059.0) is not None
    assert limiter.check("a", 1060.0) is None


def test_buckets_that_refilled_are_dropped() -> None:
    limiter = RateLimiter(10, 10.0)
    for client in ("a", "b", "c"):
        limiter.check(client, 0.0)
    limiter.check("d", 5.0)
    assert len(limiter) == 4
    limiter.check("e", 10.0)  # a, b and c are full again: forgotten
    assert len(limiter) == 2
    limiter.check("e", 100.0)
    assert len(limiter) == 1


def test_at_most_max_clients_are_tracked_least_recently_seen_forgotten() -> None:
    limiter = RateLimiter(1, 3600.0, max_clients=3)
    for client in ("a", "b", "c"):
        limiter.check(client, 0.0)
    limiter.check("a", 1.0)  # a is now the most recently seen
    limiter.check("d", 2.0)  # b is forgotten
    assert len(limiter) == 3
    assert limiter.check("b", 3.0) is None  # a fresh bucket
    assert limiter.check("a", 3.0) is not None  # a's bucket was kept (empty)


@pytest.mark.parametrize(
    ("rate", "period", "max_clients", "burst"),
    [(0, 1.0, 1, None), (1, 0.0, 1, None), (1, -1.0, 1, None), (1, 1.0, 0, None), (1, 1.0, 1, 0)],
)
def test_nonsense_limits_are_refused(
    rate: int, period: float, max_clients: int, burst: int | None
) -> None:
    with pytest.raises(InvalidValueError):
        RateLimiter(rate, period, max_clients, burst=burst)


# Requests as (client, seconds since the previous request).
requests_strategy = st.lists(
    st.tuples(st.sampled_from("abc"), st.floats(0.0, 5.0, allow_nan=False)),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 10),
    period=st.sampled_from([1.0, 2.5, 10.0]),
    requests=requests_strategy,
    window=st.floats(0.0, 30.0),
)
def test_no_window_lets_more_than_burst_plus_refill_through(
    rate: int, period: float, requests: list[tuple[str, float]], window: float
) -> None:
    limiter = RateLimiter(rate, period)
    now = 0.0
    allowed: dict[str, list[float]] = {}
    for client, step in requests:
        now += step
        if limiter.check(client, now) is None:
            allowed.setdefault(client, []).append(now)
    bound = rate + rate * window / period + 1e-6
    for times in allowed.values():
        for i, start in enumerate(times):
            in_window = [t for t in times[i:] if t - start <= window]
            assert len(in_window) <= bound


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(1, 10), period=st.sampled_from([1.0, 10.0, 60.0]), n=st.integers(1, 50))
def test_clients_within_the_rate_are_never_refused(rate: int, period: float, n: int) -> None:
    limiter = RateLimiter(rate, period)
    spacing = period / rate
    assert all(limiter.check("a", i * spacing) is None for i in range(n))


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 10), period=st.sampled_from([1.0, 7.0, 60.0]), requests=requests_strategy
)
def test_a_refused_client_is_allowed_after_retry_after(
    rate: int, period: float, requests: list[tuple[str, float]]
) -> None:
    limiter = RateLimiter(rate, period)
    now = 0.0
    for client, step in requests:
        now += step
        wait = limiter.check(client, now)
        if wait is not None:
            assert wait >= 1.0 and wait == int(wait)
            now += wait
            assert limiter.check(client, now) is None


@settings(max_examples=100, deadline=None)
@given(
    max_clients=st.integers(1, 5),
    requests=st.lists(
        st.tuples(st.integers(0, 20).map(str), st.floats(0.0, 3.0, allow_nan=False)),
        max_size=200,
    ),
)
def test_memory_stays_bounded(max_clients: int, requests: list[tuple[str, float]]) -> None:
    limiter = RateLimiter(2, 4.0, max_clients=max_clients)
    now = 0.0
    for client, step in requests:
        now += step
        limiter.check(client, now)
        assert len(limiter) <= max_clients
    limiter.check("last", now + 4.5)  # everyone else has refilled by then
    assert len(limiter) == 1


# -- client_address ------------------------------------------------------------------------

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        # No trusted proxies: the header is the client's own words.
        ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),
        # An untrusted peer cannot speak for anyone else.
        ("203.0.113.9", "198.51.100.1", PROXIES, "203.0.113.9"),
        # A trusted proxy: the address it saw.
        ("10.0.0.2", "198.51.100.1", PROXIES, "198.51.100.1"),
        # A chain: the right-most address that is not a trusted proxy; the client
        # wrote the left part and may have forged it.
        ("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.0.0.7", PROXIES, "198.51.100.1"),
        ("10.0.0.2", "127.0.0.1,198.51.100.1", PROXIES, "198.51.100.1"),
        # Every hop a trusted proxy: the first one.
        ("10.0.0.2", "10.0.0.9, 10.0.0.7", PROXIES, "10.0.0.9"),
        # Malformed or absent headers are ignored.
        ("10.0.0.2", None, PROXIES, "10.0.0.2"),
        ("10.0.0.2", "", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "unknown", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "198.51.100.1:443", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "198.51.100.1,,10.0.0.7", PROXIES, "10.0.0.2"),
        ("10.0.0.2", "198.51.100.1, <script>", PROXIES, "10.0.0.2"),
        # IPv6, and IPv4-mapped IPv6 peers from dual-stack sockets.
        ("fd00::1", "2001:db8::5", PROXIES, "2001:db8::5"),
        ("::ffff:10.0.0.2", "198.51.100.1", PROXIES, "198.51.100.1"),
        ("::ffff:203.0.113.9", None, [], "203.0.113.9"),
        ("2001:DB8::0:1", None, [], "2001:db8::1"),
        # No IP peer (e.g. a Unix socket).
        (None, "198.51.100.1", PROXIES, "unknown"),
    ],
)
def test_client_address(
    peer: str | None, xff: str | None, trusted: list[object], expected: str
) -> None:
    assert client_address(peer, xff, trusted) == expected  # type: ignore[arg-type]


def test_forwarded_chain_parses_or_rejects_whole() -> None:
    assert [str(a) for a in forwarded_chain(" 1.2.3.4 ,::1")] == ["1.2.3.4", "::1"]  # type: ignore[union-attr]
    assert forwarded_chain("1.2.3.4, nope") is None


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("localhost", False),
        (None, False),
        ("", False),
    ],
)
def test_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_parse_networks_accepts_cidrs_and_bare_addresses() -> None:
    nets = parse_networks(["10.0.0.0/8", "192.168.1.7", "::1", "172.16.0.1/12"])
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128", "172.16.0.0/12"]


@pytest.mark.parametrize("bad", ["", "10.0.0.0/33", "example.com", "10.0.0.0/8/8"])
def test_parse_networks_refuses_garbage(bad: str) -> None:
    with pytest.raises(InvalidValueError, match="proxy"):
        parse_networks([bad])
