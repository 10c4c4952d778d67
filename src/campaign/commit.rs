//! `nextbest campaign commit DIR`: records a sent list's contacts as impression events on the
//! campaign's channel, so inbound caps, cool-downs and the next campaign see them.
//!
//! Each event's id derives from the campaign (its name and content), the run's time, the
//! channel, the customer and the offer, so committing the same folder twice records each
//! contact once (the event log remembers ids for
//! at least 7 days); a later run of the same campaign has another time and counts anew. Each
//! event carries the offer's category, so category caps (the sales cap) count it.
//!
//! Two ways to the log:
//! - **HTTP (the default)**: the events are posted to a running sidecar's `/v1/events` in
//!   batches of at most 1,000 events and `batch_bytes` bytes. A 202 means the batch is durable
//!   there (under its fsync policy) and applied to its contact state at once; with a fleet on
//!   Redis it travels on to every replica as any event does. A failed batch can be retried: the
//!   ids make a repeat harmless.
//! - **Direct** (`--direct`): the data folder's log is opened and written as the server writes
//!   it (replay, then append with fsync). Only when no server uses that folder: a log has one
//!   writer.
//!
//! After each batch recorded, the list's folder says how far the commit got ([`JOURNAL`],
//! written durably, keyed by the list's checksum). Ids cannot tell a list older than they are
//! remembered from an earlier commit of it, so a `--late` commit reads that record instead: it
//! resumes a failed commit after its last recorded batch, and refuses a list committed in full.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::contact::{Clock, ContactConfig, ContactError, Contacts, Event, EventKind};
use crate::engine::policy::stable_hash;
use crate::folder_lock::{Folder, FolderLock, LockError};

use super::output::{open_list, Summary, LIST_CSV, SUMMARY_JSON};

/// Most events one `/v1/events` request carries (the server's limit).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// The file in a list's folder that says how much of the list a commit recorded.
pub const JOURNAL: &str = "commit.json";

/// How far the commits of one list got, per place its contacts went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Journal {
    /// CRC-32 of the list file: a record of another list in the same folder is not this one's.
    list_crc32: u32,
    /// Contacts in the list.
    events: u64,
    /// Most contacts recorded into any one place (a record without `targets`, written before
    /// they were told apart, is this for every place).
    recorded: u64,
    /// Contacts recorded so far into each place (a server's URL, a data folder), in the
    /// list's order: a list committed into a test folder is not committed into production's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    targets: BTreeMap<String, u64>,
}

impl Journal {
    /// The folder's record, if it is this list's; an error when a record is there but cannot
    /// be read (a damaged file: how far an earlier commit got is then unknown).
    fn read(path: &Path, list_crc32: u32, events: u64) -> Result<Option<Journal>, String> {
        let j = Journal::load(path)?;
        Ok(j.filter(|j| j.list_crc32 == list_crc32 && j.events == events))
    }

    /// The folder's record of whichever list; `None` when there is none.
    fn load(path: &Path) -> Result<Option<Journal>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    /// Contacts recorded into `target` so far.
    fn recorded_into(&self, target: &str) -> u64 {
        if self.targets.is_empty() {
            self.recorded
        } else {
            self.targets.get(target).copied().unwrap_or(0)
        }
    }

    /// Records that `n` contacts went into `target`.
    fn set(&mut self, target: &str, n: u64) {
        if self.targets.is_empty() && self.recorded > 0 {
            // A record from before places were told apart: its progress was this place's.
            self.targets.insert(target.to_owned(), self.recorded);
        }
        let at = self.targets.entry(target.to_owned()).or_default();
        *at = (*at).max(n);
        self.recorded = self.recorded.max(n);
    }

    /// The record a commit of this list into `target` starts from, and how many contacts it
    /// skips: for a `--late` commit, those an earlier one recorded there (a list recorded in
    /// full there, or a record that cannot be read, is refused). Written before anything is
    /// sent: a late commit that could not record its progress could not be resumed, so it
    /// does not start.
    fn start(
        path: &Path,
        dir: &Path,
        (list_crc32, total): (u32, u64),
        target: &str,
        late: bool,
    ) -> Result<(Journal, u64), CommitError> {
        let before = match Journal::read(path, list_crc32, total) {
            Ok(j) => j,
            Err(e) if late => {
                return Err(CommitError::Input {
                    path: path.to_owned(),
                    detail: format!(
                        "cannot be read ({e}): how far an earlier commit of this list got is \
                         unknown, and a --late commit would record that part twice; check the \
                         log, then remove the file only if no commit of this list ran"
                    ),
                })
            }
            // A recent list's ids tell its repeats: the record is written again.
            Err(_) => None,
        };
        let done = before.as_ref().map_or(0, |j| j.recorded_into(target));
        let skip = match done {
            n if late && n >= total => {
                return Err(CommitError::AlreadyCommitted {
                    dir: dir.to_owned(),
                    target: target.to_owned(),
                    events: total,
                })
            }
            n if late => n,
            _ => 0,
        };
        let mut journal = before.unwrap_or(Journal {
            list_crc32,
            events: total,
            recorded: 0,
            targets: BTreeMap::new(),
        });
        journal.set(target, done);
        if let Err(e) = journal.write(path) {
            if late {
                return Err(late_needs_its_record(e));
            }
            tracing::warn!(error = %e, "the list's folder cannot record the commit's progress");
        }
        Ok((journal, skip))
    }

    /// Writes the record where it is kept.
    fn write(&self, path: &Path) -> Result<(), CommitError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        crate::durable::write_atomic(path, &bytes, true).map_err(|e| CommitError::Input {
            path: path.to_owned(),
            detail: format!("recording the commit's progress: {e}"),
        })
    }
}

/// A `--late` commit whose record cannot be written: said with why it needs one and what to do
/// (a list on a read-only share commits from a copy).
fn late_needs_its_record(e: CommitError) -> CommitError {
    match e {
        CommitError::Input { path, detail } => CommitError::Input {
            path,
            detail: format!(
                "{detail}: a --late commit keeps its progress beside the list (the event ids \
                 that would catch a repeat are forgotten), so it cannot go on without it; copy \
                 the list folder to one that can be written and commit from there"
            ),
        },
        other => other,
    }
}

/// How much of the list now in `dir` a commit recorded (into the place that got most), and
/// its contacts; `None` when no commit of this list is on record.
pub fn recorded(dir: &Path) -> Option<(u64, u64)> {
    let j = Journal::load(&dir.join(JOURNAL)).ok()??;
    let crc = crc32fast::hash(&std::fs::read(dir.join(LIST_CSV)).ok()?);
    (j.list_crc32 == crc && j.recorded > 0).then_some((j.recorded, j.events))
}

/// Where the events go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A running sidecar's public listener, e.g. `http://127.0.0.1:8080`.
    Server {
        /// Base URL.
        url: String,
        /// Largest request body to send (keep under the server's `--max-body-bytes`).
        batch_bytes: usize,
    },
    /// The data folder's log, written directly.
    Direct {
        /// The data folder.
        data_dir: PathBuf,
    },
}

impl Target {
    /// The place as a commit's record names it: the server's URL (without credentials), or
    /// the data folder's full path.
    fn name(&self) -> String {
        match self {
            Target::Server { url, .. } => format!(
                "the server {}",
                crate::logging::redact_url(url.trim_end_matches('/'))
            ),
            Target::Direct { data_dir } => {
                let full = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.clone());
                format!("the data folder {}", full.display())
            }
        }
    }
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The list committed: its campaign and when it was run (`run_at`), as its summary says,
    /// so a commit names which list it recorded.
    pub list: String,
    /// Contacts in the list.
    pub events: u64,
    /// Recorded now.
    pub accepted: u64,
    /// Recorded before (a repeated commit).
    pub duplicates: u64,
    /// Contacts planned after the commit (a list for a later `--now` or send time), recorded
    /// as of the commit: an event cannot be in the future.
    pub ahead: u64,
    /// The latest of those planned times.
    pub planned_until_ms: Option<i64>,
}

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The output folder is incomplete.
    #[error("{path}: {detail}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The server refused or could not be reached.
    #[error("{0}")]
    Server(String),
    /// Writing the log directly failed.
    #[error("{0}")]
    Log(#[from] ContactError),
    /// Writing the log directly failed part of the way.
    #[error(
        "{source}; {recorded} contacts were recorded before this batch: commit again to finish"
    )]
    Stopped {
        /// Why.
        source: ContactError,
        /// Contacts recorded before it.
        recorded: u64,
    },
    /// `--direct` into a folder that does not exist: the contacts would go into a new, empty
    /// history no server or later run reads, and the customers be contacted again.
    #[error(
        "--data-dir {}: no such folder: give the data folder whose event log holds the contact \
         history (the server's `--data-dir`, while no server uses it); a commit into a new \
         folder would record the contacts where no server or run reads them", .0.display()
    )]
    NoDataDir(PathBuf),
    /// The list is older than event ids are remembered: a second commit would not be told
    /// from the first.
    #[error(
        "{}: its first contacts were sent {days} days ago, and event ids are remembered for 7 \
         days by the time they carry: a commit now could not tell this list from an earlier \
         commit of it, and would record its contacts twice. If it was never committed, commit \
         it once with --late", .dir.display()
    )]
    TooLate {
        /// The list's folder.
        dir: PathBuf,
        /// Whole days since its first contact.
        days: i64,
    },
    /// Another campaign command holds the list folder.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `--direct` into a data folder another process holds (a server, most likely, which
    /// records the contacts itself).
    #[error(
        "{0}; where a server holds it, commit through that server instead (`--server URL`, its \
         public listener), which records the contacts as it records events"
    )]
    ServerHolds(LockError),
    /// A `--late` commit of a list its folder says was committed in full.
    #[error(
        "{}: this list was committed in full into {target} ({JOURNAL}: {events} of {events} \
         contacts recorded); committing it again there with --late would record its contacts \
         twice",
        .dir.display()
    )]
    AlreadyCommitted {
        /// The list's folder.
        dir: PathBuf,
        /// Where it was committed.
        target: String,
        /// Contacts in the list.
        events: u64,
    },
}

/// How old a list's first contact may be for its commit to be told from an earlier one: event
/// ids are remembered for 7 days by the time they carry, less a day of margin.
pub const LATE_AFTER_MS: i64 = 6 * crate::engine::policy::DAY_MS;

/// One contact of the list, owned.
struct Contact {
    customer_id: String,
    /// The row's channel and placement (a list over several channels names each row's).
    channel: String,
    placement: String,
    offer_id: String,
    decision_id: Option<u128>,
    event_id: String,
    category: Option<String>,
    /// When the row is sent: its `send_at` (a send window), else the run's time.
    planned_ms: i64,
}

/// The event id of one contact of one run. The campaign's content and the channel are part of
/// it: two lists run with one campaign name at one time (a file copied with other limits, or
/// for e-mail) are two sets of contacts. A list's summary without the content's CRC (written
/// before it was kept) gives the ids it always gave.
pub fn event_id(
    (campaign, content): (&str, Option<u32>),
    run_at_ms: i64,
    channel: &str,
    customer: &str,
    offer: &str,
) -> String {
    let mut key = format!("{campaign}\u{0}{run_at_ms}\u{0}{channel}\u{0}{customer}\u{0}{offer}");
    if let Some(crc) = content {
        key.push_str(&format!("\u{0}{crc:08x}"));
    }
    format!(
        "cmp-{:016x}{:08x}",
        stable_hash(&key),
        crc32fast::hash(key.as_bytes())
    )
}

/// Reads `DIR`'s summary and list and records every contact, each at the time it is sent:
/// its row's `send_at`, else the run's time, never later than `now_ms` (an event cannot be in
/// the future), so frequency caps and calendar capacities count it where it belongs.
pub fn commit(dir: &Path, target: &Target, now_ms: i64) -> Result<Committed, CommitError> {
    commit_with(dir, target, now_ms, false)
}

/// [`commit`]; with `late`, also a list older than [`LATE_AFTER_MS`], which cannot be told from
/// an earlier commit of it (the operator says it was never committed).
pub fn commit_with(
    dir: &Path,
    target: &Target,
    now_ms: i64,
    late: bool,
) -> Result<Committed, CommitError> {
    if let Target::Direct { data_dir } = target {
        if !data_dir.is_dir() {
            return Err(CommitError::NoDataDir(data_dir.clone()));
        }
        // A folder a server holds is said before the list's record names it as a target; the
        // lock is let go at once, and the log's own open takes it for the commit.
        if let Err(held @ LockError::Held { .. }) =
            FolderLock::acquire(data_dir, Folder::Data, None)
        {
            return Err(CommitError::ServerHolds(held));
        }
    }
    let _held = hold(dir)?;
    let summary_path = dir.join(SUMMARY_JSON);
    let input = |path: &Path, detail: String| CommitError::Input {
        path: path.to_owned(),
        detail,
    };
    if !summary_path.exists() && dir.join(super::shard::SHARD_JSON).exists() {
        return Err(input(
            dir,
            "a shard's folder, not a list: merge the shards first (`nextbest campaign merge`), \
             then commit the merged list"
                .into(),
        ));
    }
    let text =
        std::fs::read_to_string(&summary_path).map_err(|e| input(&summary_path, e.to_string()))?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|e| input(&summary_path, e.to_string()))?;
    let list_path = dir.join(LIST_CSV);
    let contacts = read_list(&list_path, &summary)?;
    let list_crc32 =
        crc32fast::hash(&std::fs::read(&list_path).map_err(|e| input(&list_path, e.to_string()))?);
    let first = contacts.iter().map(|c| c.planned_ms.min(now_ms)).min();
    if let Some(first) = first.filter(|&t| !late && now_ms - t > LATE_AFTER_MS) {
        return Err(CommitError::TooLate {
            dir: dir.to_owned(),
            days: (now_ms - first) / crate::engine::policy::DAY_MS,
        });
    }
    let total = contacts.len() as u64;
    let journal_path = dir.join(JOURNAL);
    let place = target.name();
    let (mut journal, skip) =
        Journal::start(&journal_path, dir, (list_crc32, total), &place, late)?;
    let ahead: Vec<i64> = contacts
        .iter()
        .map(|c| c.planned_ms)
        .filter(|&t| t > now_ms)
        .collect();
    let mut done = Committed {
        list: format!("{} run at {}", summary.campaign, summary.run_at),
        events: total,
        duplicates: skip,
        ahead: ahead.len() as u64,
        planned_until_ms: ahead.iter().copied().max(),
        ..Committed::default()
    };
    let mut sent = skip;
    let mut progress = |n: usize| -> Result<(), CommitError> {
        sent += n as u64;
        if sent > journal.recorded_into(&place) {
            journal.set(&place, sent);
            if let (Err(e), true) = (journal.write(&journal_path), late) {
                return Err(e);
            }
        }
        Ok(())
    };
    let events: Vec<Event<'_>> = contacts[skip as usize..]
        .iter()
        .map(|c| Event {
            kind: EventKind::Impression,
            ts_ms: c.planned_ms.min(now_ms),
            customer_id: &c.customer_id,
            visitor_id: None,
            offer_id: Some(&c.offer_id),
            channel: Some(&c.channel),
            placement: Some(&c.placement),
            decision_id: c.decision_id,
            event_id: Some(&c.event_id),
            category: c.category.as_deref(),
            request: None,
            attributed: None,
        })
        .collect();
    match target {
        Target::Server { url, batch_bytes } => {
            post_all(url, *batch_bytes, &events, &mut done, &mut progress)?
        }
        Target::Direct { data_dir } => write_direct(data_dir, &events, &mut done, &mut progress)?,
    }
    Ok(done)
}

/// Takes the list folder while its list is committed: a run replacing the list meanwhile, or
/// a second commit of it, is refused (or refuses this one). A folder where the lock cannot be
/// had (read-only, written before lists had one) is committed without it, as without its
/// journal (which `--late` needs, and says so).
fn hold(dir: &Path) -> Result<Option<FolderLock>, CommitError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    match FolderLock::acquire(dir, Folder::List, Some("campaign commit")) {
        Ok(lock) => Ok(Some(lock)),
        Err(e @ LockError::Held { .. }) => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "committing without the list folder's lock");
            Ok(None)
        }
    }
}

fn read_list(path: &Path, summary: &Summary) -> Result<Vec<Contact>, CommitError> {
    let input = |detail: String| CommitError::Input {
        path: path.to_owned(),
        detail,
    };
    let (mut r, [ci, oi, di, chi]) =
        open_list(path, ["customer_id", "offer_id", "decision_id", "channel"]).map_err(input)?;
    let send_at = r
        .headers()
        .map_err(|e| input(e.to_string()))?
        .iter()
        .position(|h| h == "send_at");
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| input(e.to_string()))?;
        let planned_ms = match send_at.map(|i| &rec[i]).filter(|t| !t.is_empty()) {
            Some(t) => crate::rfc3339::parse_ms(t)
                .map_err(|e| input(format!("send_at `{t}` of {}: {e}", &rec[ci])))?,
            None => summary.run_at_ms,
        };
        let (customer, offer) = (&rec[ci], &rec[oi]);
        let channel = &rec[chi];
        let placement = match summary.channels.get(channel) {
            Some(c) => c.placement.clone(),
            None if channel == summary.channel => summary.placement.clone(),
            None => {
                return Err(input(format!(
                    "channel `{channel}` is not one of the campaign's ({})",
                    summary.channel
                )))
            }
        };
        out.push(Contact {
            customer_id: customer.to_owned(),
            channel: channel.to_owned(),
            placement,
            offer_id: offer.to_owned(),
            decision_id: ulid::Ulid::from_string(&rec[di]).ok().map(|u| u.0),
            event_id: event_id(
                (&summary.campaign, summary.campaign_crc32),
                summary.run_at_ms,
                channel,
                customer,
                offer,
            ),
            category: summary
                .offers
                .get(offer)
                .map(|o| o.category.clone())
                .filter(|c| !c.is_empty()),
            planned_ms,
        });
    }
    Ok(out)
}

fn event_json(e: &Event<'_>) -> serde_json::Value {
    let ts = crate::rfc3339::format_ms(e.ts_ms);
    serde_json::json!({
        "type": "impression",
        "customer_id": e.customer_id,
        "offer_id": e.offer_id,
        "channel": e.channel,
        "placement": e.placement,
        "decision_id": e.decision_id.map(|d| ulid::Ulid(d).to_string()),
        "event_id": e.event_id,
        "category": e.category,
        "ts": ts,
    })
}

/// Called with each batch's size once the batch is recorded.
type Progress<'p> = dyn FnMut(usize) -> Result<(), CommitError> + 'p;

fn post_all(
    url: &str,
    batch_bytes: usize,
    events: &[Event<'_>],
    done: &mut Committed,
    progress: &mut Progress<'_>,
) -> Result<(), CommitError> {
    let endpoint = format!("{}/v1/events", url.trim_end_matches('/'));
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0;
    let wrap = 16;
    for e in events {
        let one = event_json(e).to_string();
        if !batch.is_empty()
            && (batch.len() == MAX_BATCH_EVENTS || bytes + one.len() + 1 + wrap > batch_bytes)
        {
            post(&endpoint, &batch, done)?;
            progress(batch.len())?;
            batch.clear();
            bytes = 0;
        }
        bytes += one.len() + 1;
        batch.push(one);
    }
    if !batch.is_empty() {
        post(&endpoint, &batch, done)?;
        progress(batch.len())?;
    }
    Ok(())
}

fn post(endpoint: &str, batch: &[String], done: &mut Committed) -> Result<(), CommitError> {
    let body = format!("{{\"events\":[{}]}}", batch.join(","));
    let mut resp = ureq::post(endpoint)
        .header("content-type", "application/json")
        .config()
        .http_status_as_error(false)
        .build()
        .send(body.as_bytes())
        .map_err(|e| {
            CommitError::Server(format!(
                "{endpoint}: {e}; {} of the list's contacts were recorded before: commit again \
                 once the server answers (the rest follow; `--direct` writes the data folder \
                 itself, only when no server uses it)",
                done.accepted + done.duplicates
            ))
        })?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| CommitError::Server(format!("{endpoint}: {e}")))?;
    if status == 413 {
        return Err(CommitError::Server(format!(
            "{endpoint}: {status} {text}; lower --batch-bytes under the server's \
             --max-body-bytes, and commit again ({} contacts were recorded before)",
            done.accepted + done.duplicates
        )));
    }
    if status != 202 {
        return Err(CommitError::Server(format!(
            "{endpoint}: {status} {text}; {} contacts were recorded before this batch: commit \
             again to finish",
            done.accepted + done.duplicates
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CommitError::Server(format!("{endpoint}: answer not JSON: {e}")))?;
    if let Some(r) = v["rejected"].as_array().filter(|r| !r.is_empty()) {
        return Err(CommitError::Server(format!(
            "{endpoint}: {} event(s) refused, first: {}",
            r.len(),
            r[0]
        )));
    }
    // `accepted` leaves the batch's repeats out; they are `duplicates`.
    done.accepted += v["accepted"].as_u64().unwrap_or(0);
    done.duplicates += v["duplicates"].as_u64().unwrap_or(0);
    Ok(())
}

fn write_direct(
    data_dir: &Path,
    events: &[Event<'_>],
    done: &mut Committed,
    progress: &mut Progress<'_>,
) -> Result<(), CommitError> {
    let contacts = Contacts::open(
        &ContactConfig {
            data_dir: Some(data_dir.to_owned()),
            holder: Some("campaign commit --direct".into()),
            ..ContactConfig::default()
        },
        Clock::system(),
    )
    .map_err(|e| match e {
        ContactError::Lock(held @ LockError::Held { .. }) => CommitError::ServerHolds(held),
        other => other.into(),
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommitError::Server(format!("starting a runtime: {e}")))?;
    let result = rt.block_on(async {
        for chunk in events.chunks(MAX_BATCH_EVENTS) {
            // As the HTTP path says it: how far the commit got, and that a rerun finishes it.
            let got = contacts
                .ingest(chunk)
                .await
                .map_err(|source| CommitError::Stopped {
                    source,
                    recorded: done.accepted + done.duplicates,
                })?;
            done.accepted += got.accepted as u64;
            done.duplicates += got.duplicates as u64;
            progress(chunk.len())?;
        }
        Ok::<_, CommitError>(())
    });
    contacts.close();
    result
}
