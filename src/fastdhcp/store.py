"""The durable pool and lease store: one SQLite file in the state dir.

Docker tells the plugin too little to rebuild its state: ReleaseAddress and the
start-up replay of RequestAddress carry only the address, never the MAC, and only
RequestPool carries the user's options (docs/docker-ipam.md). So every pool and
every lease the plugin holds is written here before Docker hears about it, and a
restarted plugin finds each lease by its address.

The store is synchronous; how it uses SQLite (a writer and a reader connection,
transactions, ``batch()`` for group commits) is ``database.Database``'s. Here:
the schema, its migrations, and one method per question or change.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Self

from .database import BUSY_TIMEOUT_MS, Database
from .errors import StoreError
from .lease import EXPIRED, LEASE_PHASES, Lease
from .spec import INFINITE_LEASE

__all__ = ["DB_NAME", "SCHEMA_VERSION", "PendingRequest", "PoolRecord", "Store"]

DB_NAME = "leases.sqlite3"
SCHEMA_VERSION = 4  # PRAGMA user_version of the schema below

# MIGRATIONS[n] takes a store from user_version n - 1 to n, in one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE pools (
            pool_id    TEXT PRIMARY KEY,
            interface  TEXT NOT NULL,
            subnet     TEXT NOT NULL,      -- CIDR
            gateway    TEXT,
            options    TEXT NOT NULL,      -- JSON object: the user's --ipam-opt map
            created_at REAL NOT NULL
        )""",
        # One row per address: an address is leased at most once. No ON DELETE
        # CASCADE: remove_pool() refuses while a pool holds leases.
        """CREATE TABLE leases (
            address      TEXT PRIMARY KEY,
            pool_id      TEXT NOT NULL REFERENCES pools (pool_id),
            mac          BLOB NOT NULL,
            client_id    BLOB,
            hostname     TEXT,
            vendor_class BLOB,
            server_id    TEXT NOT NULL,
            server_mac   BLOB NOT NULL,
            prefix_len   INTEGER,
            router       TEXT,
            dns          TEXT NOT NULL,    -- JSON list of addresses
            domain       TEXT,
            routes       TEXT NOT NULL,    -- JSON list of [network, gateway]
            lease_time   INTEGER NOT NULL,
            t1           REAL NOT NULL,
            t2           REAL NOT NULL,
            bound_at     REAL NOT NULL,
            state        TEXT NOT NULL DEFAULT 'bound',
            UNIQUE (pool_id, mac)
        )""",
    ),
    2: (
        # An acquisition whose REQUEST is on the wire: from then on the server may
        # commit a lease that the plugin, if it dies before the ACK, never stores.
        # put_lease() deletes the row in the transaction that stores the lease; a
        # row still here at start-up is an acquisition cut short, released then.
        """CREATE TABLE pending_requests (
            pool_id      TEXT NOT NULL REFERENCES pools (pool_id),
            mac          BLOB NOT NULL,
            address      TEXT NOT NULL,    -- the address REQUESTed
            server_id    TEXT NOT NULL,
            server_mac   BLOB NOT NULL,
            client_id    BLOB,
            requested_at REAL NOT NULL,
            PRIMARY KEY (pool_id, mac)
        )""",
    ),
    3: (
        # Docker 29+ names each endpoint in RequestAddress (the container's name):
        # the last address each name was leased in each pool, so that a container
        # re-created under the same name asks for it again (option 50, a hint).
        # Kept while the pool exists; remove_pool() deletes its rows.
        """CREATE TABLE endpoint_addresses (
            pool_id  TEXT NOT NULL REFERENCES pools (pool_id),
            endpoint TEXT NOT NULL,
            address  TEXT NOT NULL,
            seen_at  REAL NOT NULL,
            PRIMARY KEY (pool_id, endpoint)
        )""",
    ),
    4: (
        # A lease's phase follows from its times and the clock (Lease.phase); the
        # column written 'bound' on every row was never read.
        "ALTER TABLE leases DROP COLUMN state",
    ),
}

LEASE_COLUMNS = (
    "address",
    "pool_id",
    "mac",
    "client_id",
    "hostname",
    "vendor_class",
    "server_id",
    "server_mac",
    "prefix_len",
    "router",
    "dns",
    "domain",
    "routes",
    "lease_time",
    "t1",
    "t2",
    "bound_at",
)
SQL_SELECT_LEASES = f"SELECT {', '.join(LEASE_COLUMNS)} FROM leases"
# A renewal rewrites the row of its address in place, all but address, pool_id and
# mac (put_lease has checked that those match). Any other conflict, such as
# UNIQUE (pool_id, mac), raises.
SQL_UPSERT_LEASE = (
    f"INSERT INTO leases ({', '.join(LEASE_COLUMNS)})"
    f" VALUES ({', '.join(':' + column for column in LEASE_COLUMNS)})"
    " ON CONFLICT (address) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in LEASE_COLUMNS[3:])
)
_FIRST_PHASE = LEASE_PHASES[0][0]
SQL_COUNT_PHASES = (
    f"SELECT pool_id, CASE WHEN lease_time = :infinite THEN '{_FIRST_PHASE}'"
    + "".join(f" WHEN :now < bound_at + {field} THEN '{name}'" for name, field in LEASE_PHASES)
    + f" ELSE '{EXPIRED}' END AS phase, count(*) FROM leases GROUP BY pool_id, phase"
)
SQL_SELECT_POOLS = "SELECT pool_id, interface, subnet, gateway, options, created_at FROM pools"
SQL_INSERT_POOL = (
    "INSERT INTO pools (pool_id, interface, subnet, gateway, options, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

RECOVERY_HINT = (
    "fastdhcp will not start on it. Restore it from a backup, or move it aside (with its"
    " -wal and -shm files) to start with an empty store; fastdhcp never empties a store"
    " by itself"
)


@dataclass(frozen=True)
class PoolRecord:
    """A pool as Docker's RequestPool created it. ``options`` are the user's
    ``--ipam-opt`` strings: a replayed RequestPool may carry them again, but
    nothing else (ReleasePool, RequestAddress) does."""

    pool_id: str
    interface: str
    subnet: str  # CIDR, e.g. "192.168.1.0/24"
    gateway: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    def differences(self, other: PoolRecord) -> list[str]:
        """What differs, but for created_at, which a replayed RequestPool cannot know."""
        return [
            f"{name} {getattr(self, name)!r}, not {getattr(other, name)!r}"
            for name in ("interface", "subnet", "gateway", "options")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True)
class PendingRequest:
    """An acquisition between its REQUEST and its ACK (see MIGRATIONS[2])."""

    pool_id: str
    mac: bytes
    address: IPv4Address
    server_id: IPv4Address
    server_mac: bytes
    client_id: bytes | None = None
    requested_at: float = field(default_factory=time.time)


class Store(Database):
    """Pools and leases in ``<state_dir>/leases.sqlite3``. Create it with
    :meth:`open`; every mutating call has committed when it returns."""

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str], *, readonly: bool = False) -> Self:
        """Open (or, unless ``readonly``, create) the store in ``state_dir``.

        A store that is corrupt, not fastdhcp's, or from a newer fastdhcp raises
        StoreError and is left exactly as it was found."""
        path = Path(state_dir) / DB_NAME
        if readonly and not path.is_file():
            raise StoreError(f"{path}: no lease store here (`fastdhcp serve` creates it)")
        if not readonly:
            _prepare_files(Path(state_dir), path)
        return cls.open_file(path, readonly=readonly, check=_check_and_migrate)

    # -- pools ---------------------------------------------------------------------

    def add_pool(self, pool: PoolRecord) -> None:
        """Record a pool. The same pool_id again with the same content is a no-op
        (Docker replays RequestPool at start-up); with other content, StoreError."""
        with self._write("add pool") as conn:
            row = conn.execute(f"{SQL_SELECT_POOLS} WHERE pool_id = ?", (pool.pool_id,))
            existing = row.fetchone()
            if existing is not None:
                differences = _row_pool(existing).differences(pool)
                if differences:
                    raise StoreError(
                        f"{self.path}: pool {pool.pool_id!r} exists with {'; '.join(differences)}"
                    )
                return
            conn.execute(
                SQL_INSERT_POOL,
                (
                    pool.pool_id,
                    pool.interface,
                    pool.subnet,
                    pool.gateway,
                    json.dumps(pool.options, sort_keys=True),
                    pool.created_at,
                ),
            )

    def get_pool(self, pool_id: str) -> PoolRecord | None:
        rows = self._read(f"{SQL_SELECT_POOLS} WHERE pool_id = ?", (pool_id,))
        return _row_pool(rows[0]) if rows else None

    def pools(self) -> list[PoolRecord]:
        return [_row_pool(row) for row in self._read(f"{SQL_SELECT_POOLS} ORDER BY pool_id")]

    def remove_pool(self, pool_id: str) -> bool:
        """Forget a pool; False if there was none. Refuses while the pool holds
        leases: they would lose the pool that says which interface renews them."""
        with self._write("remove pool") as conn:
            held = [
                row[0]
                for row in conn.execute("SELECT address FROM leases WHERE pool_id = ?", (pool_id,))
            ]
            if held:
                shown = ", ".join(sorted(held, key=IPv4Address)[:5])
                more = f" and {len(held) - 5} more" if len(held) > 5 else ""
                raise StoreError(
                    f"{self.path}: pool {pool_id!r} still holds {len(held)}"
                    f" lease(s): {shown}{more}; release them first"
                )
            pending = conn.execute(
                "SELECT count(*) FROM pending_requests WHERE pool_id = ?", (pool_id,)
            ).fetchone()[0]
            if pending:
                raise StoreError(
                    f"{self.path}: pool {pool_id!r} has {pending} acquisition(s) in progress;"
                    " try again when they finish"
                )
            conn.execute("DELETE FROM endpoint_addresses WHERE pool_id = ?", (pool_id,))
            return conn.execute("DELETE FROM pools WHERE pool_id = ?", (pool_id,)).rowcount > 0

    # -- leases --------------------------------------------------------------------

    def put_lease(self, pool_id: str, lease: Lease, endpoint: str | None = None) -> None:
        """Insert the lease of its address, or update it in place (a renewal).
        With ``endpoint`` (Docker's name for the container), remember that the
        name was leased this address in this pool, in the same transaction.

        Raises StoreError, changing nothing, if the pool does not exist, if the
        address is held by another MAC or in another pool, or if this MAC already
        holds another address in this pool: Docker gives a container a new MAC on
        each start and the plugin releases the old lease first, so a second address
        for one MAC is a bug to report, not a lease to replace silently."""
        address = str(lease.address)
        with self._write("put lease") as conn:
            if conn.execute("SELECT 1 FROM pools WHERE pool_id = ?", (pool_id,)).fetchone() is None:
                raise StoreError(f"{self.path}: no pool {pool_id!r} for lease {address}")
            held = conn.execute(
                "SELECT pool_id, mac FROM leases WHERE address = ?", (address,)
            ).fetchone()
            if held is not None and (held[0], held[1]) != (pool_id, lease.mac):
                raise StoreError(
                    f"{self.path}: {address} is held by {bytes(held[1]).hex(':')}"
                    f" in pool {held[0]!r}"
                )
            other = conn.execute(
                "SELECT address FROM leases WHERE pool_id = ? AND mac = ? AND address != ?",
                (pool_id, lease.mac, address),
            ).fetchone()
            if other is not None:
                raise StoreError(
                    f"{self.path}: {lease.mac.hex(':')} already holds {other[0]}"
                    f" in pool {pool_id!r}; remove that lease first"
                )
            conn.execute(SQL_UPSERT_LEASE, _lease_params(pool_id, lease))
            conn.execute(
                "DELETE FROM pending_requests WHERE pool_id = ? AND mac = ?", (pool_id, lease.mac)
            )
            if endpoint is not None:
                conn.execute(
                    "INSERT INTO endpoint_addresses (pool_id, endpoint, address, seen_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (pool_id, endpoint) DO UPDATE"
                    " SET address = excluded.address, seen_at = excluded.seen_at",
                    (pool_id, endpoint, address, lease.bound_at),
                )

    def move_lease(self, address: IPv4Address | str, pool_id: str) -> bool:
        """Re-home a held lease to another pool, in one transaction.

        dockerd replays RequestPool after a crash and gets a new PoolID for the
        same network, then replays the endpoints against it; the old PoolID is
        never released. Returns False if no lease holds ``address``."""
        address = str(address)
        with self._write("move lease") as conn:
            if conn.execute("SELECT 1 FROM pools WHERE pool_id = ?", (pool_id,)).fetchone() is None:
                raise StoreError(f"{self.path}: no pool {pool_id!r} for lease {address}")
            moved = conn.execute(
                "UPDATE leases SET pool_id = ? WHERE address = ?", (pool_id, address)
            ).rowcount
        return moved > 0

    def lease_by_address(self, address: IPv4Address | str) -> tuple[str, Lease] | None:
        rows = self._read(f"{SQL_SELECT_LEASES} WHERE address = ?", (str(IPv4Address(address)),))
        return _row_lease(rows[0]) if rows else None

    def lease_by_mac(self, pool_id: str, mac: bytes) -> Lease | None:
        rows = self._read(f"{SQL_SELECT_LEASES} WHERE pool_id = ? AND mac = ?", (pool_id, mac))
        return _row_lease(rows[0])[1] if rows else None

    def leases(self, pool_id: str | None = None) -> list[tuple[str, Lease]]:
        """Every lease (of one pool), ordered by pool then address."""
        if pool_id is None:
            rows = self._read(SQL_SELECT_LEASES)
        else:
            rows = self._read(f"{SQL_SELECT_LEASES} WHERE pool_id = ?", (pool_id,))
        return sorted((_row_lease(row) for row in rows), key=lambda pl: (pl[0], pl[1].address))

    def endpoint_addresses(self) -> dict[tuple[str, str], IPv4Address]:
        """(pool id, endpoint name) -> the last address leased to that name."""
        rows = self._read("SELECT pool_id, endpoint, address FROM endpoint_addresses")
        return {(pool_id, endpoint): IPv4Address(address) for pool_id, endpoint, address in rows}

    def lease_counts(self, now: float) -> dict[tuple[str, str], int]:
        """(pool, state) -> leases, in one grouped query, for metrics scrapes. The
        states are Lease.phase's, from the same table (lease.LEASE_PHASES), in SQL
        so that a scrape of 100k leases builds no Lease; and "requesting" for the
        pending requests."""
        rows = self._read(SQL_COUNT_PHASES, {"infinite": INFINITE_LEASE, "now": now})
        counts = {(pool_id, state): count for pool_id, state, count in rows}
        for pool_id, count in self._read(
            "SELECT pool_id, count(*) FROM pending_requests GROUP BY pool_id"
        ):
            counts[(pool_id, "requesting")] = count
        return counts

    def remove_lease(self, address: IPv4Address | str) -> bool:
        """Forget the lease of an address; False if there was none (Docker retries)."""
        with self._write("remove lease") as conn:
            cur = conn.execute("DELETE FROM leases WHERE address = ?", (str(IPv4Address(address)),))
            return cur.rowcount > 0

    # -- acquisitions in progress --------------------------------------------------

    def put_pending(self, request: PendingRequest) -> None:
        """Record (or, after a NAK and a new offer, replace) the REQUEST that
        ``request.mac`` is about to send. Committed when it returns."""
        with self._write("record a pending request") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO pending_requests (pool_id, mac, address, server_id,"
                " server_mac, client_id, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    request.pool_id,
                    request.mac,
                    str(request.address),
                    str(request.server_id),
                    request.server_mac,
                    request.client_id,
                    request.requested_at,
                ),
            )

    def begin_release(self, address: IPv4Address | str) -> PendingRequest | None:
        """Turn the lease on ``address`` into a pending request, in one
        transaction: the lease is no longer held, and until remove_pending()
        the row says a RELEASE is due. A start-up finds it and sends the RELEASE,
        so a release cut short by a crash is finished. None if no lease holds
        ``address``."""
        address = str(IPv4Address(address))
        with self._write("record a release") as conn:
            row = conn.execute(
                "SELECT pool_id, mac, server_id, server_mac, client_id FROM leases"
                " WHERE address = ?",
                (address,),
            ).fetchone()
            if row is None:
                return None
            pool_id, mac, server_id, server_mac, client_id = row
            request = PendingRequest(
                pool_id, bytes(mac), IPv4Address(address), IPv4Address(server_id),
                bytes(server_mac), None if client_id is None else bytes(client_id),
            )  # fmt: skip
            conn.execute("DELETE FROM leases WHERE address = ?", (address,))
            conn.execute(
                "INSERT OR REPLACE INTO pending_requests (pool_id, mac, address, server_id,"
                " server_mac, client_id, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pool_id, request.mac, address, server_id, request.server_mac,
                 request.client_id, request.requested_at),
            )  # fmt: skip
        return request

    def remove_pending(self, pool_id: str, mac: bytes) -> bool:
        with self._write("remove a pending request") as conn:
            cur = conn.execute(
                "DELETE FROM pending_requests WHERE pool_id = ? AND mac = ?", (pool_id, mac)
            )
            return cur.rowcount > 0

    def pending(self) -> list[PendingRequest]:
        """Every acquisition recorded as in progress, oldest first."""
        rows = self._read(
            "SELECT pool_id, mac, address, server_id, server_mac, client_id, requested_at"
            " FROM pending_requests ORDER BY requested_at"
        )
        return [
            PendingRequest(
                pool_id, mac, IPv4Address(address), IPv4Address(server), server_mac, cid, at
            )
            for pool_id, mac, address, server, server_mac, cid, at in rows
        ]

    # -- plumbing ------------------------------------------------------------------


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state dir (0700) if missing; StoreError if it is not usable."""
    try:
        state_dir.mkdir(mode=0o700, parents=True)
        state_dir.chmod(0o700)  # mkdir's mode is masked by the umask
    except FileExistsError:
        if not state_dir.is_dir():
            raise StoreError(f"state dir {state_dir} exists and is not a directory") from None
    except OSError as exc:
        raise StoreError(f"cannot create state dir {state_dir}: {exc.strerror}") from exc
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise StoreError(
            f"state dir {state_dir} is not writable; fastdhcp keeps its leases"
            " there (run as its owner, or choose another --state-dir)"
        )


def _prepare_files(state_dir: Path, path: Path) -> None:
    """Create the state dir (0700) and an empty store file (0600) if missing.
    SQLite gives its -wal and -shm files the mode of the database file."""
    prepare_state_dir(state_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        if not os.access(path, os.R_OK | os.W_OK):
            # SQLite would quietly open it read-only, and fail at the first write.
            raise StoreError(f"{path}: the lease store is not writable") from None
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the lease store: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _check_and_migrate(conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
    """Refuse a store that is not sound, then bring its schema up to date.

    Nothing here writes before the checks pass: a damaged file stays as it was,
    for the operator (or a backup tool) to deal with."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError as exc:  # locked, no permission, I/O: not the file's fault
        raise StoreError(
            f"{path}: cannot read the lease store ({exc}); check that no other"
            " program holds it locked and that fastdhcp may read it"
        ) from exc
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        raise StoreError(f"{path}: the lease store is unreadable ({exc}); {RECOVERY_HINT}") from exc
    if problems != ["ok"]:
        detail = "; ".join(problems[:3])
        raise StoreError(f"{path}: the lease store is corrupt ({detail}); {RECOVERY_HINT}")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer fastdhcp (schema {version}; this one"
            f" knows {SCHEMA_VERSION}); upgrade fastdhcp"
        )
    try:
        if readonly:
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: not a fastdhcp lease store, or not yet one (schema {version});"
                    " `fastdhcp serve` creates or upgrades it"
                )
            return
        conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            _migrate(conn, path)
        # WAL lets `fastdhcp leases` read while `serve` writes. In WAL mode,
        # synchronous=NORMAL syncs only at checkpoints, so a power cut can undo
        # commits the plugin already reported to Docker; FULL syncs the WAL at every
        # commit, so a lease Docker was told about survives a power cut. Commits are
        # rare (one per lease or renewal), so the cost of an fsync each is small.
        mode = _enable_wal(conn)
        if mode != "wal":
            raise StoreError(
                f"{path}: SQLite cannot use WAL here (journal mode {mode});"
                " put the state dir on a local filesystem"
            )
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot prepare the lease store: {exc}") from exc


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL and return the journal mode now in force.

    The switch needs a moment when no other connection holds a lock, and SQLite
    answers "database is locked" at once rather than through the busy handler,
    so several processes opening a new store together retry here, for as long as
    the busy timeout allows (seen in CI: four openers at once)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION in one transaction. Everything is
    decided under the write lock, since another opener may be creating the store
    at the same moment (its half-written file is not a foreign one)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]  # a write txn would make page 1
    conn.execute("BEGIN IMMEDIATE")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    # Pages without a schema version are another program's database. And SQLite
    # takes a file shorter than one page for an empty one: never write over either.
    if version == 0 and (pages > 0 or path.stat().st_size > 0):
        conn.execute("ROLLBACK")
        raise StoreError(f"{path}: not a fastdhcp lease store; {RECOVERY_HINT}")
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def _lease_params(pool_id: str, lease: Lease) -> dict[str, Any]:
    return {
        "address": str(lease.address),
        "pool_id": pool_id,
        "mac": lease.mac,
        "client_id": lease.client_id,
        "hostname": lease.hostname,
        "vendor_class": lease.vendor_class,
        "server_id": str(lease.server_id),
        "server_mac": lease.server_mac,
        "prefix_len": lease.prefix_len,
        "router": None if lease.router is None else str(lease.router),
        "dns": json.dumps([str(server) for server in lease.dns]),
        "domain": lease.domain,
        "routes": json.dumps([[str(net), str(gw)] for net, gw in lease.routes]),
        "lease_time": lease.lease_time,
        "t1": lease.t1,
        "t2": lease.t2,
        "bound_at": lease.bound_at,
    }


def _row_lease(row: tuple[Any, ...]) -> tuple[str, Lease]:
    col = dict(zip(LEASE_COLUMNS, row, strict=True))
    return col["pool_id"], Lease(
        mac=col["mac"],
        address=IPv4Address(col["address"]),
        prefix_len=col["prefix_len"],
        router=None if col["router"] is None else IPv4Address(col["router"]),
        dns=tuple(IPv4Address(server) for server in json.loads(col["dns"])),
        domain=col["domain"],
        server_id=IPv4Address(col["server_id"]),
        server_mac=col["server_mac"],
        lease_time=col["lease_time"],
        t1=float(col["t1"]),
        t2=float(col["t2"]),
        bound_at=float(col["bound_at"]),
        client_id=col["client_id"],
        hostname=col["hostname"],
        vendor_class=col["vendor_class"],
        routes=tuple((IPv4Network(net), IPv4Address(gw)) for net, gw in json.loads(col["routes"])),
    )


def _row_pool(row: tuple[Any, ...]) -> PoolRecord:
    pool_id, interface, subnet, gateway, options, created_at = row
    return PoolRecord(pool_id, interface, subnet, gateway, json.loads(options), created_at)
