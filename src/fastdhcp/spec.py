"""Protocol constants, each with the section of the RFC that defines it.

Everything numeric that comes from a standard lives here, so that the codec, the
engine and the tests agree on one value and one citation.
"""

from __future__ import annotations

import enum

# --- UDP ports (RFC 2131 §4.1) --------------------------------------------------
SERVER_PORT = 67
CLIENT_PORT = 68

# --- BOOTP fixed header layout (RFC 2131 §2, figure 1; RFC 951) -----------------
OFF_OP = 0
OFF_HTYPE = 1
OFF_HLEN = 2
OFF_HOPS = 3
OFF_XID = 4
OFF_SECS = 8
OFF_FLAGS = 10
OFF_CIADDR = 12
OFF_YIADDR = 16
OFF_SIADDR = 20
OFF_GIADDR = 24
OFF_CHADDR = 28
CHADDR_LEN = 16
OFF_SNAME = 44
SNAME_LEN = 64
OFF_FILE = 108
FILE_LEN = 128
OFF_COOKIE = 236
OFF_OPTIONS = 240
HEADER_LEN = OFF_OPTIONS  # fixed header plus the 4-byte magic cookie

# RFC 2131 §3: the first four octets of the options field.
MAGIC_COOKIE = 0x63825363

# RFC 951 §3 / RFC 2131 §2: op codes.
BOOTREQUEST = 1
BOOTREPLY = 2

# RFC 1700 / IANA ARP hardware types: 10 Mb Ethernet.
HTYPE_ETHERNET = 1

# RFC 2131 §2, figure 2: the leftmost bit of 'flags' is BROADCAST.
FLAG_BROADCAST = 0x8000

# RFC 1542 §2.1: a BOOTP message is at least 300 octets; relays and old servers may
# drop shorter ones, so the encoder pads with zeros after the End option.
MIN_MESSAGE_LEN = 300

# RFC 2132 §9.10: the smallest legal 'maximum DHCP message size'.
MIN_MAX_MESSAGE_SIZE = 576

# RFC 3396 §5: a single option instance carries at most 255 octets of value.
MAX_OPTION_CHUNK = 255


class Option(enum.IntEnum):
    """Option codes the codec and client know by name (RFC 2132 unless noted)."""

    PAD = 0  # RFC 2132 §3.1
    SUBNET_MASK = 1  # §3.3
    ROUTER = 3  # §3.5
    DNS_SERVERS = 6  # §3.8
    HOST_NAME = 12  # §3.14
    DOMAIN_NAME = 15  # §3.17
    BROADCAST_ADDRESS = 28  # §5.3
    REQUESTED_ADDRESS = 50  # §9.1
    LEASE_TIME = 51  # §9.2
    OVERLOAD = 52  # §9.3
    MESSAGE_TYPE = 53  # §9.6
    SERVER_ID = 54  # §9.7
    PARAMETER_REQUEST_LIST = 55  # §9.8
    MESSAGE = 56  # §9.9
    MAX_MESSAGE_SIZE = 57  # §9.10
    RENEWAL_TIME = 58  # §9.11 (T1)
    REBINDING_TIME = 59  # §9.12 (T2)
    VENDOR_CLASS = 60  # §9.13
    CLIENT_ID = 61  # §9.14
    RELAY_AGENT_INFO = 82  # RFC 3046 §2.0
    CLASSLESS_STATIC_ROUTES = 121  # RFC 3442
    END = 255  # RFC 2132 §3.2


# RFC 2132 §9.3: values of the option overload option.
OVERLOAD_FILE = 1
OVERLOAD_SNAME = 2
OVERLOAD_BOTH = 3


class MessageType(enum.IntEnum):
    """DHCP message types (option 53), IANA 'BOOTP and DHCP parameters' registry."""

    DISCOVER = 1  # RFC 2132 §9.6
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8
    FORCERENEW = 9  # RFC 3203
    LEASEQUERY = 10  # RFC 4388
    LEASEUNASSIGNED = 11
    LEASEUNKNOWN = 12
    LEASEACTIVE = 13
    BULKLEASEQUERY = 14  # RFC 6926
    LEASEQUERYDONE = 15
    ACTIVELEASEQUERY = 16  # RFC 7724
    LEASEQUERYSTATUS = 17
    TLS = 18


# RFC 2132 §9.2: a lease time of all ones means "infinity".
INFINITE_LEASE = 0xFFFFFFFF

# RFC 2131 §4.4.5: default T1 and T2 as fractions of the lease time.
T1_FACTOR = 0.5
T2_FACTOR = 0.875

# --- Frames (IEEE 802.3, RFC 791, RFC 768) --------------------------------------
ETHERTYPE_IPV4 = 0x0800
ETH_HEADER_LEN = 14
IPV4_MIN_HEADER_LEN = 20
UDP_HEADER_LEN = 8
IPPROTO_UDP = 17
# RFC 791 §3.1: flags/fragment offset word; MF flag and the 13-bit offset.
IP_MF_AND_OFFSET_MASK = 0x3FFF
DEFAULT_TTL = 64
# RFC 768: the largest UDP payload an IPv4 datagram of 65,535 octets can carry.
MAX_UDP_PAYLOAD = 65535 - IPV4_MIN_HEADER_LEN - UDP_HEADER_LEN
BROADCAST_MAC = b"\xff" * 6
# IEEE 802.3: the smallest frame without its FCS; shorter frames are padded.
ETH_MIN_FRAME_LEN = 60

# --- ARP (RFC 826) and IPv4 address conflict detection (RFC 5227) ----------------
ETHERTYPE_ARP = 0x0806  # RFC 826, "ether_type$ADDRESS_RESOLUTION"
ARP_HTYPE_ETHERNET = 1  # RFC 826 ar$hrd; IANA ARP hardware types
ARP_PTYPE_IPV4 = ETHERTYPE_IPV4  # RFC 826 ar$pro: the protocol's ethertype
ARP_PACKET_LEN = 28  # RFC 826: 8 fixed octets, then 6+4+6+4 for Ethernet/IPv4
ARP_OP_REQUEST = 1  # RFC 826 ar$op
ARP_OP_REPLY = 2
# RFC 5227 §1.1: an ARP Probe has sender IP 0.0.0.0; §2.1.1 sends PROBE_NUM of them.
# fastdhcp spreads its probes over a short configurable wait instead of RFC 5227's
# PROBE_WAIT/PROBE_MIN/PROBE_MAX (1 to 2 s apart, about 5 s in all), which a
# container start cannot afford; see fastdhcp.conflict.
ARP_PROBE_NUM = 3

# --- Retransmission (RFC 2131 §4.1) ---------------------------------------------
# "...a delay of 4 seconds before the first retransmission... doubled on each
# subsequent retransmission up to a maximum of 64 seconds... randomized by the
# value of a uniform random number chosen from the range -1 to +1."
RETRANSMIT_INITIAL = 4.0
RETRANSMIT_MAX = 64.0
RETRANSMIT_JITTER = 1.0

# RFC 2132 §9.10: what we tell servers we accept (an Ethernet MTU's worth).
CLIENT_MAX_MESSAGE_SIZE = 1500

# The options a client asks for (RFC 2132 §9.8): mask, router, DNS, domain,
# broadcast address, lease time, server id, T1, T2, classless routes (RFC 3442).
DEFAULT_PARAMETER_REQUEST_LIST = bytes((1, 3, 6, 15, 28, 51, 54, 58, 59, 121))
