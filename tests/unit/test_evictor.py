"""Victim selection (`select_victims`) as a pure function: a table, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.evictor import Victim, select_victims, survivors
from artifactd.policies import SERVER_WIDE, Policy, ServerWide, policy_for
from artifactd.store.base import ArtifactInfo

NOW = 1_000_000.0


def artifact(
    path: str,
    size: int,
    *,
    created_at: float = NOW - 100,
    last_accessed: float | None = None,
    expires_at: float | None = None,
) -> ArtifactInfo:
    return ArtifactInfo(
        path=path,
        size=size,
        content_type="application/octet-stream",
        modified_at=created_at,
        created_at=created_at,
        expires_at=expires_at,
        last_accessed=last_accessed,
        version=path,
    )


def chosen(victims: list[Victim]) -> list[tuple[str, str]]:
    return [(v.artifact.path, v.reason) for v in victims]


@pytest.mark.parametrize(
    ("artifacts", "max_size_bytes", "expected"),
    [
        pytest.param([], 0, [], id="empty store"),
        pytest.param([artifact("a", 10)], None, [], id="no budget, nothing expired"),
        pytest.param([artifact("a", 10), artifact("b", 10)], 20, [], id="exactly at the budget"),
        pytest.param(
            [artifact("a", 10, expires_at=NOW)],
            None,
            [("a", "ttl")],
            id="expiring right now counts as expired",
        ),
        pytest.param(
            [artifact("a", 10, expires_at=NOW + 1)], None, [], id="expiring later is kept"
        ),
        pytest.param(
            [artifact("a", 10, last_accessed=NOW - 5), artifact("b", 10, last_accessed=NOW - 9)],
            15,
            [("b", "size")],
            id="least recently accessed goes first",
        ),
        pytest.param(
            [
                artifact("a", 10, last_accessed=NOW - 1),
                artifact("b", 10, last_accessed=NOW - 2),
                artifact("c", 10, last_accessed=NOW - 3),
            ],
            10,
            [("c", "size"), ("b", "size")],
            id="evicts until the rest fits, no further",
        ),
        pytest.param(
            [
                artifact("old", 10, created_at=NOW - 50),
                artifact("read", 10, last_accessed=NOW - 80),
            ],
            10,
            [("read", "size")],
            id="never accessed counts as accessed when created",
        ),
        pytest.param(
            [artifact("b", 10), artifact("a", 10)],
            10,
            [("a", "size")],
            id="ties go by path",
        ),
        pytest.param(
            [
                artifact("big", 100, last_accessed=NOW - 1),
                artifact("gone", 50, expires_at=NOW - 1, last_accessed=NOW - 99),
                artifact("small", 10, last_accessed=NOW - 2),
            ],
            100,
            [("gone", "ttl"), ("small", "size")],
            id="expired first, then the budget counts only the live",
        ),
        pytest.param(
            [artifact("gone", 50, expires_at=NOW - 1), artifact("a", 10)],
            10,
            [("gone", "ttl")],
            id="evicting the expired can be enough",
        ),
    ],
)
def test_select_victims(
    artifacts: list[ArtifactInfo], max_size_bytes: int | None, expected: list[tuple[str, str]]
) -> None:
    assert chosen(select_victims(artifacts, NOW, max_size_bytes)) == expected


def test_survivors_are_the_artifacts_not_chosen_in_their_order() -> None:
    artifacts = [artifact("c", 1), artifact("a", 1, expires_at=NOW), artifact("b", 1)]
    victims = select_victims(artifacts, NOW, None)
    assert [a.path for a in survivors(artifacts, victims)] == ["c", "b"]


@st.composite
def stores(draw: st.DrawFn) -> list[ArtifactInfo]:
    paths = draw(st.lists(st.text("abc/", min_size=1, max_size=4), unique=True, max_size=12))
    times = st.floats(NOW - 1000, NOW + 1000, allow_nan=False)
    return [
        artifact(
            path,
            draw(st.integers(0, 100)),
            created_at=draw(st.floats(NOW - 1000, NOW, allow_nan=False)),
            last_accessed=draw(st.none() | times),
            expires_at=draw(st.none() | times),
        )
        for path in paths
    ]


@given(stores(), st.none() | st.integers(0, 600))
def test_selection_leaves_a_store_that_fits_holds_nothing_expired_and_kept_the_recent(
    artifacts: list[ArtifactInfo], max_size_bytes: int | None
) -> None:
    victims = select_victims(artifacts, NOW, max_size_bytes)
    kept = survivors(artifacts, victims)
    assert len(kept) + len(victims) == len(artifacts)
    if max_size_bytes is not None:
        assert sum(a.size for a in kept) <= max_size_bytes
    assert not any(a.is_expired(NOW) for a in kept)
    assert all(v.artifact.is_expired(NOW) for v in victims if v.reason == "ttl")
    reasons = [v.reason for v in victims]
    assert reasons == sorted(reasons, key=lambda r: r != "ttl")  # expired ones first

    def recency(a: ArtifactInfo) -> float:
        return a.last_accessed or a.created_at

    for victim in victims:
        if victim.reason == "size":
            assert all(recency(victim.artifact) <= recency(a) for a in kept)


@given(stores(), st.integers(0, 600))
def test_selection_evicts_for_size_only_while_over_the_budget(
    artifacts: list[ArtifactInfo], max_size_bytes: int
) -> None:
    victims = select_victims(artifacts, NOW, max_size_bytes)
    by_size = [v.artifact for v in victims if v.reason == "size"]
    if by_size:
        # Without its last size victim the store would not have fit.
        kept = survivors(artifacts, victims)
        assert sum(a.size for a in kept) + by_size[-1].size > max_size_bytes


def budget(
    prefix: str, max_size: int | None, ttl: float | ServerWide | None = SERVER_WIDE
) -> Policy:
    return Policy(prefix, max_size=max_size, ttl=ttl)


@pytest.mark.parametrize(
    ("artifacts", "max_size_bytes", "policies", "expected"),
    [
        pytest.param(
            [
                artifact("cache/a", 10, last_accessed=NOW - 1),
                artifact("cache/b", 10, last_accessed=NOW - 3),
                artifact("cache/c", 10, last_accessed=NOW - 2),
                artifact("release/old", 100, last_accessed=NOW - 99),
            ],
            None,
            [budget("cache/", 15)],
            [("cache/b", "size"), ("cache/c", "size")],
            id="a prefix's budget evicts its least recent, leaving other prefixes alone",
        ),
        pytest.param(
            [artifact("cache/a", 10), artifact("cachet/b", 10), artifact("cache", 10)],
            None,
            [budget("cache/", 0)],
            [("cache/a", "size")],
            id="a prefix is a directory",
        ),
        pytest.param(
            [
                artifact("cache/keep/a", 10, last_accessed=NOW - 9),
                artifact("cache/b", 10, last_accessed=NOW - 1),
                artifact("cache/c", 10, last_accessed=NOW - 2),
            ],
            None,
            [budget("cache/", 10), budget("cache/keep/", None, ttl=None)],
            [("cache/c", "size")],
            id="the longest prefix governs: a deeper policy without budget is outside it",
        ),
        pytest.param(
            [
                artifact("cache/a", 10, last_accessed=NOW - 1),
                artifact("cache/b", 10, last_accessed=NOW - 2),
                artifact("release/x", 10, last_accessed=NOW - 3),
            ],
            15,
            [budget("cache/", 10)],
            [("cache/b", "size"), ("release/x", "size")],
            id="the global --max-size still applies to what the prefixes left",
        ),
        pytest.param(
            [
                artifact("cache/gone", 50, expires_at=NOW - 1),
                artifact("cache/a", 10, last_accessed=NOW - 1),
            ],
            None,
            [budget("cache/", 10)],
            [("cache/gone", "ttl")],
            id="the expired go first and count for no budget",
        ),
        pytest.param(
            [artifact("a/x", 10), artifact("b/x", 10, last_accessed=NOW - 200)],
            None,
            [budget("b/", 5), budget("a/", 5)],
            [("a/x", "size"), ("b/x", "size")],
            id="budgets are applied prefix by prefix, in prefix order",
        ),
    ],
)
def test_select_victims_with_prefix_budgets(
    artifacts: list[ArtifactInfo],
    max_size_bytes: int | None,
    policies: list[Policy],
    expected: list[tuple[str, str]],
) -> None:
    assert chosen(select_victims(artifacts, NOW, max_size_bytes, policies)) == expected


def test_a_victim_of_a_prefix_budget_names_the_prefix() -> None:
    artifacts = [artifact("cache/a", 10), artifact("b", 10)]
    victims = select_victims(artifacts, NOW, 0, [budget("cache/", 0)])
    assert [(v.artifact.path, v.prefix) for v in victims] == [("cache/a", "cache/"), ("b", None)]


def recency(a: ArtifactInfo) -> float:
    return a.last_accessed or a.created_at


@st.composite
def policy_sets(draw: st.DrawFn) -> list[Policy]:
    prefixes = draw(st.lists(st.sampled_from(["a/", "b/", "a/b/", "ab/", "c/a/"]), unique=True))
    return [budget(p, draw(st.none() | st.integers(0, 200))) for p in prefixes]


@given(stores(), st.none() | st.integers(0, 600), policy_sets())
def test_every_prefix_fits_its_budget_and_the_rest_is_judged_by_the_global_one_alone(
    artifacts: list[ArtifactInfo], max_size_bytes: int | None, policies: list[Policy]
) -> None:
    victims = select_victims(artifacts, NOW, max_size_bytes, policies)
    kept = survivors(artifacts, victims)
    assert not any(a.is_expired(NOW) for a in kept)
    if max_size_bytes is not None:
        assert sum(a.size for a in kept) <= max_size_bytes
    for policy in policies:
        if policy.max_size is not None:
            inside = [a for a in kept if policy_for(policies, a.path) is policy]
            assert sum(a.size for a in inside) <= policy.max_size
    # Without a global budget, a size victim is always governed by a budgeted prefix: the
    # artifacts outside every budgeted prefix are untouched by those budgets.
    # Within a prefix the least recently accessed go first.
    without_global = select_victims(artifacts, NOW, None, policies)
    left = survivors(artifacts, without_global)
    for victim in without_global:
        if victim.reason == "size":
            governing = policy_for(policies, victim.artifact.path)
            assert governing is not None and governing.max_size is not None
            for other in left:
                if policy_for(policies, other.path) is governing:
                    assert recency(victim.artifact) <= recency(other)
    # Without policies the selection is what it was.
    if not policies:
        assert victims == select_victims(artifacts, NOW, max_size_bytes)
