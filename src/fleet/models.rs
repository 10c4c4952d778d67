//! One model and one snapshot across the fleet.
//!
//! **Changes travel through Redis.** An admin change made on any replica (`PUT /admin/models`,
//! a rollback, a feature reload) is appended, once it serves there, to the stream
//! `nextbest:models` with the document (or the snapshot's path), its checksum, who made it and
//! when. Every replica follows that stream and makes each change made elsewhere through its own
//! registry, as an admin change (written into its own models folder, so a restart keeps it),
//! recorded in its history as `fleet: admin on <replica>`. Changes a replica applies from the
//! stream are never appended again, so nothing echoes. A replica starting takes the stream's
//! latest model change when it is newer than its own folder's `model.json` (it was down when the
//! change was made). Feature reloads are followed live only: a replica starts on the snapshot
//! its `--features` names (a rollout may name a new one on purpose), and the fleet's view shows
//! it if that differs. A replica whose models folder is read-only (a ConfigMap) refuses admin
//! changes before anything is published (see `registry::RegistryError::ReadOnly`): there the
//! folder is the one source, and every replica watches it.
//!
//! What each replica serves is reported beside this, in [`super::reports`].
//!
//! This module talks to Redis and hands changes to the registry; it must not build models
//! itself or touch the contact side.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::mpsc;

use super::changes::{entries, read_reply, Entry, Seen};
use super::{backoff, now_ms, signing, Fleet};
use crate::registry::Registry;

/// The stream of admin changes.
pub const STREAM: &str = "nextbest:models";
/// Stream entries kept: each holds a whole model document, and only the latest matters to a
/// replica starting (the audit trail is each replica's own; this is only the carrier).
const STREAM_LEN: usize = 100;
/// An admin change to share with the fleet.
#[derive(Debug, Clone)]
pub enum Shared {
    /// A model now serving here, after an upload (`admin`) or a rollback (`rollback`).
    Model {
        /// `admin` or `rollback`.
        change: &'static str,
        /// The model document.
        document: Vec<u8>,
        /// Its checksum.
        checksum: String,
    },
    /// A feature snapshot now serving here, loaded from this path.
    Features {
        /// The snapshot's path (the same on every replica: a shared volume).
        path: PathBuf,
    },
}

/// The sending half handed to [`Fleet`]; the receiving half goes to [`run`].
pub fn channel() -> (
    mpsc::UnboundedSender<Shared>,
    mpsc::UnboundedReceiver<Shared>,
) {
    mpsc::unbounded_channel()
}

/// Runs the publisher, the follower and the reporter until the process ends.
pub async fn run(
    fleet: Arc<Fleet>,
    registry: Arc<Registry>,
    outgoing: mpsc::UnboundedReceiver<Shared>,
) {
    tokio::spawn(publish(fleet.clone(), registry.clone(), outgoing));
    tokio::spawn(super::reports::report(fleet.clone(), registry.clone()));
    follow(fleet, registry).await;
}

async fn connect(fleet: &Fleet) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    fleet.connect(Duration::from_secs(10)).await
}

/// Appends each change made here to the stream, retrying until Redis takes it.
async fn publish(
    fleet: Arc<Fleet>,
    registry: Arc<Registry>,
    mut outgoing: mpsc::UnboundedReceiver<Shared>,
) {
    let mut con = None;
    while let Some(change) = outgoing.recv().await {
        let mut attempt = 0u32;
        loop {
            if fleet.refused().is_some() {
                return;
            }
            let c = match &mut con {
                Some(c) => c,
                None => match connect(&fleet).await {
                    Ok(c) => con.insert(c),
                    Err(e) => {
                        fleet.failed("publish", &e);
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                },
            };
            let serving = registry.serving();
            let at = now_ms().to_string();
            let path;
            let fields: Vec<(&str, &[u8])> = match &change {
                Shared::Model {
                    change,
                    document,
                    checksum,
                } => vec![
                    ("k", change.as_bytes()),
                    ("c", checksum.as_bytes()),
                    ("v", serving.version.as_deref().unwrap_or("").as_bytes()),
                    ("d", &document[..]),
                ],
                Shared::Features { path: p } => {
                    path = p.to_string_lossy();
                    vec![("k", b"features"), ("p", path.as_bytes())]
                }
            };
            let mut cmd = redis::cmd("XADD");
            cmd.arg(STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LEN)
                .arg("*")
                .arg("o")
                .arg(&fleet.origin)
                .arg("a")
                .arg(&at)
                .arg("h")
                .arg(&fleet.host);
            for (name, value) in &fields {
                cmd.arg(*name).arg(*value);
            }
            if let Some(signer) = &fleet.signer {
                let signature = signer.sign(|name| match name {
                    "o" => Some(fleet.origin.as_bytes()),
                    "a" => Some(at.as_bytes()),
                    _ => fields.iter().find(|f| f.0 == name).map(|f| f.1),
                });
                cmd.arg(signing::FIELD).arg(signature);
            }
            match cmd.query_async::<String>(c).await {
                Ok(_) => {
                    fleet.exchanged("publish", now_ms());
                    break;
                }
                Err(e) => {
                    fleet.failed("publish", &e);
                    con = None;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Counts and logs a change refused for its signature.
fn refuse_unsigned(fleet: &Fleet, e: &Entry) {
    fleet
        .changes_unsigned
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(origin = e.text("o").unwrap_or("?"), change = e.text("k").unwrap_or(""), id = %e.id,
        "a fleet change without a valid signature, or signed long before Redis took it, was refused: it was not made by a replica with this admin token (every replica needs the same admin token, --admin-token-file or NEXTBEST_ADMIN_TOKEN: during a rolling change of the token, changes reach only the replicas with the same one), or it is a copy of an older change");
}

/// Makes one change another replica made, if a holder of the fleet's token signed it.
async fn apply(fleet: &Fleet, registry: &Arc<Registry>, e: &Entry) {
    let origin = e.text("o").unwrap_or("?").to_owned();
    let change = e.text("k").unwrap_or("").to_owned();
    if !e.signed(fleet) {
        refuse_unsigned(fleet, e);
        return;
    }
    let registry = registry.clone();
    let result = match change.as_str() {
        "features" => {
            let Some(path) = e.text("p").map(PathBuf::from) else {
                return;
            };
            tokio::task::spawn_blocking(move || registry.reload_features(Some(path)).map(drop))
                .await
        }
        "admin" | "rollback" => {
            let Some(document) = e.fields.get("d").cloned() else {
                return;
            };
            let base = registry.models_folder();
            // The replica by its host too (in Kubernetes, its pod): an id alone sends an operator
            // to the status page to find it. Not signed, and only shown: a copy of a change is
            // refused by its signature whatever it says here.
            let host = e
                .text("h")
                .filter(|h| !h.is_empty())
                .map(|h| format!(" ({})", super::reports::shown_host(h)))
                .unwrap_or_default();
            let source = format!("fleet: {change} on {origin}{host}");
            tokio::task::spawn_blocking(move || {
                registry.install_document(document, base, source).map(drop)
            })
            .await
        }
        _ => return,
    };
    // The registry logs and counts a refusal; the fleet then disagrees, and says so.
    match result {
        Ok(Ok(())) => {
            fleet
                .changes_applied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, origin, change, "a fleet change was refused here"),
        Err(e) => tracing::warn!(error = %e, "applying a fleet change failed"),
    }
}

/// The latest model change at start that a holder of the token signed, if any, and the id to
/// follow from; every signature on the stream is remembered, and an unsigned change newer than
/// the one taken is counted as refused.
async fn start_point(
    fleet: &Fleet,
    c: &mut redis::aio::MultiplexedConnection,
    seen: &mut Seen,
) -> redis::RedisResult<(String, Option<Entry>)> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(STREAM_LEN)
        .query_async(c)
        .await?;
    let mut newest_first = entries(&reply);
    let last = newest_first
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
    // Oldest first: an entry whose signature an older one carries is a copy appended again.
    let mut copy: Vec<bool> = newest_first
        .iter()
        .rev()
        .map(|e| e.signature().is_some_and(|s| !seen.first_time(s)))
        .collect();
    copy.reverse();
    let mut latest = None;
    for (i, e) in newest_first.iter().enumerate() {
        if e.text("k") == Some("features") || e.text("o") == Some(fleet.origin.as_str()) {
            continue;
        }
        if e.signed(fleet) && !(copy[i] && fleet.signer.is_some()) {
            latest = Some(i);
            break;
        }
        refuse_unsigned(fleet, e);
    }
    Ok((last, latest.map(|i| newest_first.swap_remove(i))))
}

/// Whether the latest model change found at start is one this replica missed: made
/// elsewhere, another model than the one serving, and newer than this folder's `model.json`.
fn missed(fleet: &Fleet, registry: &Registry, e: &Entry) -> bool {
    if e.text("o") == Some(fleet.origin.as_str()) {
        return false;
    }
    let at = e.text("a").and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
    let folder_ms = registry
        .model_file_modified()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let serving = registry.serving();
    let ours = serving.checksum.as_deref().unwrap_or("");
    e.text("c").is_some_and(|c| !ours.starts_with(c)) && at > folder_ms
}

/// Follows the stream and makes every change made elsewhere.
async fn follow(fleet: Arc<Fleet>, registry: Arc<Registry>) {
    let mut last: Option<String> = None;
    let mut seen = Seen::default();
    let mut con = None;
    let mut attempt = 0u32;
    loop {
        if fleet.refused().is_some() {
            return;
        }
        let c = match &mut con {
            Some(c) => c,
            None => match connect(&fleet).await {
                Ok(c) => con.insert(c),
                Err(e) => {
                    fleet.failed("connect", &e);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            },
        };
        let Some(from) = last.clone() else {
            match start_point(&fleet, c, &mut seen).await {
                Ok((id, latest)) => {
                    if let Some(e) = latest.filter(|e| missed(&fleet, &registry, e)) {
                        apply(&fleet, &registry, &e).await;
                    }
                    // Ready no sooner: a replica restarted after a change serves it first.
                    fleet
                        .changes_caught_up
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    last = Some(id);
                }
                Err(e) => {
                    fleet.failed("read", &e);
                    con = None;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
            continue;
        };
        let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(5_000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(&from)
            .query_async(c)
            .await;
        match reply {
            Ok(reply) => {
                attempt = 0;
                for e in read_reply(&reply) {
                    // A signature seen before is a copy of that change appended again.
                    let copy = e.signature().is_some_and(|s| !seen.first_time(s));
                    if copy && fleet.signer.is_some() {
                        refuse_unsigned(&fleet, &e);
                    } else if e.text("o") != Some(fleet.origin.as_str()) {
                        apply(&fleet, &registry, &e).await;
                    }
                    last = Some(e.id);
                }
            }
            Err(e) => {
                fleet.failed("read", &e);
                con = None;
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}
