"""Prometheus metrics (prometheus-client), served by ``fastdhcp serve --metrics``.

Counters and histograms are updated where things happen (see events.py). What
is a state rather than an event is read at scrape time instead, so the hot path
pays nothing for it: the leases held by pool and state come from one grouped
query on the store, and the packet counters from each engine's EngineStats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .conflict import ProberStats
from .engine_config import EngineStats

__all__ = ["CONTENT_TYPE", "LEASE_EVENTS", "METRICS", "LeaseEvent", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# No *_created series: a daemon's start time says the same, at one series, not one per metric.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Every event a lease can go through; each is one line in the log and one count.
# A Literal, so that mypy refuses a misspelt event where events.lease_event is called.
LeaseEvent = Literal[
    "acquired",  # DHCPACK for a container's first address
    "released",  # DHCPRELEASE sent (Docker's ReleaseAddress, or by hand)
    "renewed",  # RENEWING: the lease's server extended it (RFC 2131 §4.4.5)
    "rebound",  # REBINDING: some server extended it
    "reacquired",  # the same address again after a NAK or expiry
    "nak",  # a DHCPNAK
    "timeout",  # no answer within the exchange's deadline
    "declined",  # DHCPDECLINE sent: the address was in use on the segment
    "expired",  # the lease ran out before any server extended it
    "address_changed",  # the server would give only another address
    "lost",  # no server leases the address the container holds
    "settled",  # an acquisition cut short was released at start-up
]
LEASE_EVENTS: tuple[LeaseEvent, ...] = get_args(LeaseEvent)

# Exchanges take milliseconds on a LAN; RFC 2131 retransmissions add 4, 8, 16 s.
EXCHANGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)

LeaseCounts = Callable[[], Mapping[tuple[str, str], int]]
EngineStatsByInterface = Callable[[], Mapping[str, EngineStats]]
ProberStatsByInterface = Callable[[], Mapping[str, ProberStats]]

_ARP = {  # ProberStats field -> (metric name after fastdhcp_arp_, help)
    "frames_received": ("packets_received", "ARP frames the probers' filter passed"),
    "frames_sent": ("packets_sent", "ARP probes sent (RFC 5227 §2.1.1)"),
    "malformed": ("malformed", "ARP frames that were not well-formed Ethernet/IPv4 ARP"),
    "unrelated": ("unrelated", "ARP frames about no address being probed"),
    "conflicts": ("conflicts", "Addresses found in use by another host"),
    "send_errors": ("send_errors", "ARP probes the kernel refused to send"),
}

_DROPPED = {  # EngineStats field -> reason label
    "malformed": "malformed",
    "not_ours": "not_ours",
    "wrong_type": "wrong_type",
    "wrong_server": "wrong_server",
    "unusable": "unusable",
}


class Metrics:
    """One registry of fastdhcp's metrics. ``serve`` uses :data:`METRICS`; tests
    may make their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lease_events = Counter(
            "fastdhcp_lease_events",
            "Lease events, by kind: acquired, renewed, rebound, nak, timeout, declined, "
            "expired, address_changed, lost, ...",
            ["event"],
            registry=self.registry,
        )
        for event in LEASE_EVENTS:  # every series exists from the start, at 0
            self.lease_events.labels(event)
        self.acquire_seconds = Histogram(
            "fastdhcp_acquire_seconds",
            "Time from a RequestAddress's DHCPDISCOVER to its stored DHCPACK",
            buckets=EXCHANGE_BUCKETS,
            registry=self.registry,
        )
        self.renew_seconds = Histogram(
            "fastdhcp_renew_seconds",
            "Time of one renewal exchange, by phase (renewing, rebinding)",
            ["phase"],
            buckets=EXCHANGE_BUCKETS,
            registry=self.registry,
        )
        self.store_write_seconds = Histogram(
            "fastdhcp_store_write_seconds",
            "Time of one committed write to the lease store (fsync included)",
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        self._collector: _StateCollector | None = None
        self._event_children: dict[str, Any] = {}

    def count(self, event: str) -> None:
        # One labelled child per event, looked up once: labels() takes a lock
        # and builds a key on every call, and every lease counts an event.
        child = self._event_children.get(event)
        if child is None:
            child = self._event_children[event] = self.lease_events.labels(event)
        child.inc()

    def watch(
        self,
        lease_counts: LeaseCounts,
        engine_stats: EngineStatsByInterface,
        prober_stats: ProberStatsByInterface = dict,
    ) -> None:
        """Read the leases held and the packet counters at each scrape."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = _StateCollector(lease_counts, engine_stats, prober_stats)
        self.registry.register(self._collector)

    def unwatch(self) -> None:
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 if absent), for tests and the CLI."""
        return self.registry.get_sample_value(name, labels) or 0.0


class _StateCollector(Collector):
    def __init__(
        self,
        lease_counts: LeaseCounts,
        engine_stats: EngineStatsByInterface,
        prober_stats: ProberStatsByInterface,
    ) -> None:
        self._lease_counts = lease_counts
        self._engine_stats = engine_stats
        self._prober_stats = prober_stats

    def describe(self) -> list[Metric]:
        return []  # collected on demand only: never at registration

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "fastdhcp_leases", "Leases held, by pool and state", labels=["pool", "state"]
        )
        for (pool, state), count in sorted(self._lease_counts().items()):
            held.add_metric([pool, state], count)
        yield held
        families: dict[str, Any] = {
            "received": CounterMetricFamily(
                "fastdhcp_packets_received", "Frames the BPF filter passed", labels=["interface"]
            ),
            "sent": CounterMetricFamily(
                "fastdhcp_packets_sent", "Frames sent", labels=["interface"]
            ),
            "dropped": CounterMetricFamily(
                "fastdhcp_packets_dropped",
                "Frames received and dropped, by reason (not_ours: another client's;"
                " the rest were ignored replies to our exchanges)",
                labels=["interface", "reason"],
            ),
            "retransmissions": CounterMetricFamily(
                "fastdhcp_retransmissions", "RFC 2131 §4.1 retransmissions", labels=["interface"]
            ),
            "send_errors": CounterMetricFamily(
                "fastdhcp_send_errors", "Frames the kernel refused to send", labels=["interface"]
            ),
        }
        for interface, stats in sorted(self._engine_stats().items()):
            families["received"].add_metric([interface], stats.frames_received)
            families["sent"].add_metric([interface], stats.frames_sent)
            families["retransmissions"].add_metric([interface], stats.retransmissions)
            families["send_errors"].add_metric([interface], stats.send_errors)
            for field, reason in _DROPPED.items():
                families["dropped"].add_metric([interface, reason], getattr(stats, field))
        yield from families.values()
        yield from self._arp()

    def _arp(self) -> Iterator[Metric]:
        """conflict_check=arp's probers (RFC 5227), one per interface that probed."""
        families = {
            field: CounterMetricFamily(f"fastdhcp_arp_{name}", text, labels=["interface"])
            for field, (name, text) in _ARP.items()
        }
        for interface, stats in sorted(self._prober_stats().items()):
            for field, family in families.items():
                family.add_metric([interface], getattr(stats, field))
        yield from families.values()


METRICS = Metrics()
