"""The integration lab, one import for tests and scripts: DHCP segments of
network namespaces and veth pairs, real DHCP servers (dnsmasq, Kea) on them, and
the reference peers (busybox ``udhcpc``, Kea's ``perfdhcp``, a raw DISCOVER
probe) to check them with.

A façade only: each concern has its module, and the labs built on this one
(docker_lab, hostile_lab, serve_process, the systemd machine) import those.

* labprocess.py: commands (:func:`run`, :func:`wait_for`), :class:`LabError`,
  :class:`LabProcess` (every lab process) and the atexit safety net;
* labnet.py: :class:`Segment` and its namespaces, :func:`cleanup_stale`, and
  the rules the lab keeps on a shared machine;
* dhcp_servers.py: :class:`Dnsmasq`, :class:`Kea`, lease files as :class:`Lease`;
* dhcp_clients.py: :class:`Udhcpc`, :class:`Perfdhcp`;
* dhcp_probe.py: :func:`probe_offers`.

Plain modules on purpose (no pytest import): a lab can be driven from a REPL or
a script when a test has to be debugged by hand, e.g.::

    import lab
    with lab.Segment() as seg, lab.Dnsmasq(seg) as srv, lab.Udhcpc(seg) as cl:
        print(cl.wait_bound(), srv.leases())
"""

from __future__ import annotations

from dhcp_clients import Perfdhcp, Udhcpc, parse_perfdhcp
from dhcp_probe import Offer, build_discover, probe_offers
from dhcp_servers import (
    KEA_HOOKS_DIR,
    Dnsmasq,
    Kea,
    Lease,
    kea_active_leases,
    kea_ha_hot_standby,
    kea_version,
    parse_dnsmasq_leases,
    parse_kea_csv,
)
from labnet import (
    PREFIX,
    STATE_DIR,
    ClientNs,
    Segment,
    ServerNs,
    cleanup_stale,
    lab_leftovers,
    netns_list,
)
from labprocess import DEFAULT_TIMEOUT, LOG, LabError, LabProcess, have_binary, run, wait_for

__all__ = [
    "DEFAULT_TIMEOUT",
    "KEA_HOOKS_DIR",
    "LOG",
    "PREFIX",
    "STATE_DIR",
    "ClientNs",
    "Dnsmasq",
    "Kea",
    "LabError",
    "LabProcess",
    "Lease",
    "Offer",
    "Perfdhcp",
    "Segment",
    "ServerNs",
    "Udhcpc",
    "build_discover",
    "cleanup_stale",
    "have_binary",
    "kea_active_leases",
    "kea_ha_hot_standby",
    "kea_version",
    "lab_leftovers",
    "netns_list",
    "parse_dnsmasq_leases",
    "parse_kea_csv",
    "parse_perfdhcp",
    "probe_offers",
    "run",
    "wait_for",
]
