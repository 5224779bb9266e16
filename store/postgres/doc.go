// Package postgres is mailhook's store on PostgreSQL (driver jackc/pgx/v5), for several replicas
// sharing one database without duplicate work. It imports none of mailhook's packages.
//
// # Mailbox leases
//
// Each (account, mailbox) has a lease row: holder (a replica id), epoch and expiry, all by the
// database's clock (clock_timestamp()). [Leases] acquires free or expired leases (bumping the
// epoch), renews the ones it holds every TTL/3 (never bumping it), and runs a function per held
// lease — the mailbox's watcher — with a context cancelled when the lease is lost, handed over or
// given up. A replica gives a lease up by its own monotonic clock once TTL − margin has passed since
// its last successful renewal was sent, before any other replica can take it; a replica frozen past
// that point (a suspended VM, whose monotonic clock stops too) is stopped by fencing alone.
//
// Live replicas keep heartbeat rows; a replica holding more than ⌈mailboxes / live replicas⌉ leases
// hands its surplus over one at a time, and acquires only up to that share. A clean stop releases
// every lease and NOTIFYs the other replicas, which pick the mailboxes up at once; a killed
// replica's leases are taken over when they expire.
//
// # Fencing
//
// Every transaction that writes for a mailbox starts by selecting the mailbox's lease row with
// holder and epoch FOR SHARE. No row (or a serialization failure) means the lease was lost: the
// transaction is rolled back and the write fails with [ErrLeaseLost]. The share lock makes a
// takeover wait for the transaction to end, so a stale holder's write never lands after the new
// holder has started. Fenced transactions are kept short: renewals wait behind them.
//
// # Schema
//
// One numbered sequence of additive migrations, recorded in schema_version, applied in one
// transaction under an advisory lock (replicas starting together migrate once). A replica re-reads
// the version at every renewal and stops with [ErrSchemaTooNew] once a newer binary has migrated
// past it.
package postgres
