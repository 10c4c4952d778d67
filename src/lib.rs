//! nextbest: a real-time personalization sidecar.
//!
//! It answers "which offers should this customer see here, now?" from an in-memory feature
//! snapshot and a hot-loadable offer model, in microseconds, and steps aside with fallback
//! content whenever it cannot do better.
//!
//! # Layout
//! - [`features`]: the customer feature snapshot (CSV and the compact `.nbf` form), an id index
//!   that looks customers up without allocating.
//! - [`model`]: the offer model as the CVM team writes it: parse, validate (every fault with its
//!   path), compile into the engine form.
//! - [`engine`]: the decision itself: eligibility, scoring, arbitration, explain. Pure and
//!   synchronous: no I/O, no await, no clock reads (`now` is passed in).
//! - [`registry`]: the one immutable [`registry::Snapshot`] every request reads, swapped whole.
//! - [`server`]: the hyper listeners (public and admin), routes, request/response codecs, and
//!   the single place that maps errors to HTTP statuses.
//! - [`watch`]: the models-folder watcher that hot-reloads on change.
//! - [`metrics`]: counters and histograms rendered in the Prometheus text format.
//! - [`contact`]: feedback events, their durable log, the contact state policies read, the
//!   funnel.
//! - [`campaign`]: outbound campaigns: the same decision over the whole base, allocated under
//!   capacity, written as a target list, committed back as contacts.
//!
//! The request path reads top to bottom: `server::public::handle` → `codec::decode_*` →
//! `registry.load()` → `engine::decide` → `codec::encode_decision`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod campaign;
pub mod contact;
pub mod engine;
pub mod features;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod server;
pub mod watch;
