"""Which peered replica acts: kopf's rule, as the workers apply it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentfactory.controller.leadership import leads

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def peer(priority: int, seconds_ago: float = 0, lifetime: int = 60) -> dict[str, object]:
    seen = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen}


def test_the_highest_live_priority_leads() -> None:
    peers = {"a": peer(2), "b": peer(1)}
    assert leads(peers, "a", 2, NOW)
    assert not leads(peers, "b", 1, NOW)


def test_a_peer_past_its_lifetime_no_longer_counts() -> None:
    peers = {"a": peer(2, seconds_ago=61), "b": peer(1)}
    assert leads(peers, "b", 1, NOW), "the standby takes over once the leader is silent"


def test_equal_priorities_pause_everyone_as_in_kopf() -> None:
    peers = {"a": peer(1), "b": peer(1)}
    assert not leads(peers, "a", 1, NOW) and not leads(peers, "b", 1, NOW)


def test_a_replica_kopf_has_not_announced_yet_waits() -> None:
    assert not leads({"a": peer(1)}, "b", 5, NOW)
    assert leads({"b": peer(5)}, "b", 5, NOW)


def test_unreadable_peers_are_skipped() -> None:
    peers = {"a": {"priority": "high"}, "b": peer(1), "c": "garbage"}
    assert leads(peers, "b", 1, NOW)
