"""EngineConfig validation and retransmission schedule, lease timers and random_mac:
the engine's arithmetic, without a loop or a socket."""

from __future__ import annotations

import math
import random
import statistics
from ipaddress import IPv4Address
from typing import Any

import pytest

from fastdhcp.engine import EngineConfig, random_mac
from fastdhcp.lease import Lease, timers
from fastdhcp.spec import INFINITE_LEASE, RETRANSMIT_INITIAL, RETRANSMIT_JITTER, RETRANSMIT_MAX

# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"retransmit_initial": 0},
        {"retransmit_initial": -1.0},
        {"retransmit_initial": 10.0, "retransmit_max": 5.0},
        {"retransmit_max": 0},
        {"timeout": 0},
        {"timeout": -5.0},
        {"renew_timeout": 0},
        {"renew_timeout": -1.0},
        {"request_attempts": 0},
        {"request_attempts": -1},
        {"max_naks": -1},
        {"retransmit_max": math.nan},
    ],
    ids=repr,
)
def test_bad_config_raises(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EngineConfig(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"retransmit_initial": 0.05, "retransmit_max": 0.05},
        {"request_attempts": 1, "max_naks": 0},
        {"timeout": 0.001, "renew_timeout": 0.001},
    ],
    ids=repr,
)
def test_good_config_accepted(changes: dict[str, Any]) -> None:
    config = EngineConfig(**changes)
    for name, value in changes.items():
        assert getattr(config, name) == value


def test_defaults_are_rfc_2131() -> None:
    config = EngineConfig()
    # RFC 2131 §4.1: 4 s doubling to 64 s; §4.1 asks servers to broadcast for a
    # client that cannot receive unicast before it has an address.
    assert (config.retransmit_initial, config.retransmit_max) == (4.0, 64.0)
    assert (RETRANSMIT_INITIAL, RETRANSMIT_MAX, RETRANSMIT_JITTER) == (4.0, 64.0, 1.0)
    assert config.broadcast is True and config.server_id is None


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout": math.nan},
        {"renew_timeout": math.nan},
        {"retransmit_initial": math.inf, "retransmit_max": math.inf},
    ],
    ids=repr,
)
def test_non_finite_config_raises(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EngineConfig(**changes)


# -- retransmit_delay (RFC 2131 §4.1) -------------------------------------------------------


def test_default_retransmit_schedule_4_8_16_32_64_64() -> None:
    # "a delay of 4 seconds before the first retransmission ... doubled on each
    # subsequent retransmission up to a maximum of 64 seconds ... randomized by the
    # value of a uniform random number chosen from the range -1 to +1".
    config = EngineConfig()
    rng = random.Random(2131)
    for attempt, base in enumerate([4, 8, 16, 32, 64, 64, 64]):
        draws = [config.retransmit_delay(attempt, rng) for _ in range(2000)]
        assert base - 1 <= min(draws) < base - 0.95, (attempt, min(draws))
        assert base + 0.95 < max(draws) <= base + 1, (attempt, max(draws))
        assert statistics.fmean(draws) == pytest.approx(base, abs=0.05)


def test_retransmit_delay_is_reproducible_with_a_seed() -> None:
    config = EngineConfig()
    first = [config.retransmit_delay(i, random.Random(7)) for i in range(6)]
    second = [config.retransmit_delay(i, random.Random(7)) for i in range(6)]
    assert first == second


def test_retransmit_delay_huge_attempt_stays_capped() -> None:
    config = EngineConfig()
    rng = random.Random(1)
    for attempt in (6, 31, 100, 10**6):
        assert 63 <= config.retransmit_delay(attempt, rng) <= 65


def test_shortened_schedule_scales_the_jitter() -> None:
    # 50 ms initially: jitter ±12.5 ms (1 s of 4 s), cap at 0.4 s.
    config = EngineConfig(retransmit_initial=0.05, retransmit_max=0.4)
    rng = random.Random(68)
    for attempt, base in enumerate([0.05, 0.1, 0.2, 0.4, 0.4]):
        draws = [config.retransmit_delay(attempt, rng) for _ in range(2000)]
        assert base - 0.0125 <= min(draws) < base - 0.012
        assert base + 0.012 < max(draws) <= base + 0.0125


def test_retransmit_delay_never_below_a_quarter_of_initial() -> None:
    # retransmit_initial == retransmit_max with jitter: never negative or zero.
    config = EngineConfig(retransmit_initial=0.01, retransmit_max=0.01)
    rng = random.Random(3)
    assert min(config.retransmit_delay(0, rng) for _ in range(1000)) >= 0.0025


# -- lease timers (RFC 2131 §4.4.5) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("lease_time", "t1", "t2", "expected"),
    [
        (1000, None, None, (500.0, 875.0)),  # defaults: 0.5 and 0.875
        (1000, 300, 600, (300.0, 600.0)),  # 0 < T1 < T2 < lease: the server's
        (1000, 300, None, (300.0, 875.0)),  # T1 alone, below the default T2
        (1000, None, 600, (500.0, 600.0)),  # T2 alone, above the default T1
        (1000, 600, 300, (500.0, 875.0)),  # T1 > T2: defaults
        (1000, 500, 500, (500.0, 875.0)),  # T1 == T2: not earlier, the server's T2 dropped
        (1000, 0, 0, (500.0, 875.0)),  # zero
        (1000, 300, 1000, (300.0, 875.0)),  # T2 == lease: T2 must be earlier
        (1000, 1200, 1500, (500.0, 875.0)),  # past the lease
        (1000, 900, None, (500.0, 875.0)),  # T1 alone, beyond the default T2
        (1000, None, 400, (500.0, 875.0)),  # T2 below the default T1: defaults
    ],
)
def test_timers(
    lease_time: int, t1: int | None, t2: int | None, expected: tuple[float, float]
) -> None:
    got = timers(lease_time, t1, t2)
    assert got == expected
    assert 0 < got[0] < got[1] < lease_time  # RFC 2131 §4.4.5: T1 < T2 < lease


def _lease(lease_time: int) -> Lease:
    t1, t2 = timers(lease_time, None, None)
    return Lease(
        mac=b"\x02" * 6, address=IPv4Address("10.0.0.10"), prefix_len=24, router=None,
        dns=(), domain=None, server_id=IPv4Address("10.0.0.1"), server_mac=b"\x52" * 6,
        lease_time=lease_time, t1=t1, t2=t2, bound_at=1000.0,
    )  # fmt: skip


def test_infinite_lease() -> None:
    # RFC 2132 §9.2: 0xFFFFFFFF means "infinity": no renewal, no expiry.
    lease = _lease(INFINITE_LEASE)
    assert INFINITE_LEASE == 0xFFFFFFFF
    assert lease.infinite
    assert lease.expires_at is None and lease.renew_at is None and lease.rebind_at is None


def test_finite_lease_times() -> None:
    lease = _lease(3600)
    assert not lease.infinite
    assert (lease.renew_at, lease.rebind_at, lease.expires_at) == (2800.0, 4150.0, 4600.0)


# -- random_mac -----------------------------------------------------------------------


def test_random_mac_is_locally_administered_unicast() -> None:
    rng = random.Random(802)
    macs = {random_mac(rng) for _ in range(2000)} | {random_mac() for _ in range(200)}
    assert len(macs) == 2200
    for mac in macs:
        assert len(mac) == 6
        assert mac[0] & 0x02  # IEEE 802: locally administered
        assert not mac[0] & 0x01  # unicast, not group


def test_random_mac_seeded_is_deterministic() -> None:
    assert random_mac(random.Random(5)) == random_mac(random.Random(5))
