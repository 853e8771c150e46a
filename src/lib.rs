//! regfs mounts package registries as a read-only FUSE filesystem. Each
//! configured mirror appears under the mount in its ecosystem's layout; the
//! tree comes from synced upstream metadata, and a file's bytes are fetched
//! the first time anything reads it, verified against the digest the
//! metadata promised, and kept in a content-addressed cache.
//!
//! # Data flow
//!
//! ```text
//! upstream ──sync──▶ layout adapter ──entries──▶ catalog::build ──▶ Generation (swap)
//!    ▲                                                                  │
//!    │ fetch on first read                                              ▼
//! fetch ──verify──▶ store (content-addressed) ◀── fs (lookup/getattr/readdir/open/read)
//!                                                                       ▲
//!                                                   fuse (thin fuser adapter)
//! ```
//!
//! # Modules
//!
//! - [`config`] reads the TOML file strictly; errors name file, table, key
//!   and expectation. [`credentials`] keeps upstream logins apart from every
//!   URL string; [`redact`] strips userinfo from any text about to be shown.
//! - [`layout`] holds the ecosystem adapters (`layout/pypi.rs`) and their
//!   embedded defaults from `layouts/*.toml`. Adapters do no I/O: they ask a
//!   [`layout::DocSource`] for upstream documents and return catalog entries.
//! - [`catalog`] is one generation's immutable tree in a single persisted
//!   buffer: breadth-first nodes, sorted children, derived inode numbers,
//!   and [`catalog::diff`] to tell the kernel what a swap changed.
//! - [`mirror`] runs one mirror: loads its last generation, syncs
//!   (`mirror/sync.rs`), materializes units on lookup, persists and swaps
//!   generations atomically, and keeps the metadata files they serve.
//! - [`fetch`] talks to upstream through the [`fetch::Transport`] trait:
//!   bounded timeouts, a rate floor and a size bound on every body,
//!   retries, fallback upstreams, per-host limits with a reserve for
//!   metadata, conditional requests, one download per digest.
//! - [`store`] is the verified, content-addressed cache with LRU eviction;
//!   it records what it removes, so holders of descriptors kept for reuse
//!   (`fs`, `fuse`) drop exactly those.
//! - [`fs`] is the filesystem logic in plain Rust types; [`fuse`] is the
//!   thin fuser adapter (passthrough, kernel cache invalidation).
//! - [`daemon`] mounts and schedules syncs ([`lock`] keeps `state_dir` and
//!   `cache_dir` to one instance); [`control`] is the socket that
//!   `regfs sync`, `status`, `verify`, `prefetch` and `gc` use to reach a
//!   running mount; [`maintenance`] implements the last three; [`status`]
//!   and [`stats`] report what happened.
//! - [`path`] and [`digest`] validate names, paths and digests at the edge.
//! - [`lograte`] limits the WARNs a client can cause.

pub mod app;
pub mod catalog;
pub mod config;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod digest;
pub mod durable;
pub mod fetch;
pub mod fs;
pub mod fuse;
pub mod keys;
pub mod layout;
pub mod layouts;
pub mod lock;
pub mod lograte;
pub mod maintenance;
pub mod metrics;
pub mod mirror;
pub mod path;
pub mod progress;
pub mod redact;
pub mod stats;
pub mod status;
pub mod store;
pub mod timestamp;
