//! Sharded runs: `campaign run --shard I/N` scans only the customers whose stable hash falls in
//! shard `I` of `N` and writes their candidate pairs into a shard folder; `campaign merge`
//! checks that the shards belong to one run, joins them and finishes the run as one machine
//! would, byte for byte.
//!
//! Why the candidates suffice: a shard keeps, per offer, its best pairs up to the bound of
//! [`super::allocate::Limits::keep_per_offer`]; the best pairs of the whole base are among the
//! best of the shards, so reducing the joined shards again gives exactly the candidates a
//! one-machine run allocates over. Everything else a shard counts is per customer and adds up.
//!
//! The control group is drawn from the merged list (see [`finish`]), so a shard's candidates
//! include the customers it may hold out.
//!
//! A shard folder: `shard-candidates.csv` (row, customer id, offer, variant, score,
//! propensity, value, the customer's time-zone name when the campaign has a send window, the
//! campaign channel, the channels the customer cannot be reached on, as indices joined by
//! `;`, so a merged list says `unreachable` where one machine does, and the offers the
//! frequency or sales cap leaves the customer room for, when fewer than the list may give)
//! and,
//! written last, `shard.json` (the shard, the run's [`RunInfo`], the counts, the file's row
//! count, sealed with the CRC-32 of its own text), so a folder without `shard.json` is not a
//! finished shard. A merge checks every shard before
//! it writes anything, and writes the list under temporary names renamed into place at the
//! end: it never leaves a partial list. Nothing here decides or allocates.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::allocate;
use super::finish::{self, Customers, RunInfo};
use super::output::Summary;
use super::select::{Pair, Rooms, Shard, Tally};
use super::CampaignError;

/// The shard's header file, written last.
pub const SHARD_JSON: &str = "shard.json";
/// The shard's candidate pairs.
pub const CANDIDATES_CSV: &str = "shard-candidates.csv";
/// The shard file format's version.
const FORMAT: u32 = 5;
/// Why shards could not be written or merged.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A shard file is not what a shard run writes.
    #[error("{path}: {detail}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Two shards come from different runs.
    #[error(
        "shards from different runs: {other} differs from {first} in {what} ({b} against {a})"
    )]
    Mismatch {
        /// What differs.
        what: &'static str,
        /// The first shard folder.
        first: PathBuf,
        /// The folder that differs.
        other: PathBuf,
        /// The first shard's value.
        a: String,
        /// The other's.
        b: String,
    },
    /// The shards given are not every shard of the run exactly once.
    #[error("{0}")]
    Incomplete(String),
}

/// The header a shard writes last.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Header {
    format: u32,
    shard: Shard,
    info: RunInfo,
    tally: Tally,
    candidates: u64,
    /// CRC-32 of the candidates file as written, so a file changed since is refused.
    candidates_crc: u32,
}

/// What a shard wrote.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Customers of the shard.
    pub scanned: u64,
    /// Candidate pairs written.
    pub candidates: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.to_owned(),
        source,
    }
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> ShardError + '_ {
    move |e| ShardError::Bad {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Writes a shard's candidates into `dir`, `shard.json` last.
pub fn write(
    dir: &Path,
    shard: Shard,
    info: &RunInfo,
    tally: &Tally,
    candidates: &[Pair],
    customers: &Customers<'_>,
) -> Result<Written, CampaignError> {
    std::fs::create_dir_all(dir).map_err(|source| CampaignError::OutDir {
        path: dir.to_owned(),
        source,
    })?;
    let header_path = dir.join(SHARD_JSON);
    match std::fs::remove_file(&header_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&header_path)(e))?,
        _ => {}
    }
    let pairs_path = dir.join(CANDIDATES_CSV);
    write_pairs(&pairs_path, info, candidates, customers)?;
    let header = Header {
        format: FORMAT,
        shard,
        info: info.clone(),
        tally: tally.clone(),
        candidates: candidates.len() as u64,
        candidates_crc: file_crc(&pairs_path)?,
    };
    let text = sealed(&serde_json::to_string_pretty(&header).unwrap_or_default());
    let tmp = dir.join(format!("{SHARD_JSON}.tmp"));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &header_path).map_err(io(&header_path))?;
    Ok(Written {
        scanned: tally.scanned,
        candidates: header.candidates,
    })
}

fn write_pairs(
    path: &Path,
    info: &RunInfo,
    pairs: &[Pair],
    customers: &Customers<'_>,
) -> Result<(), ShardError> {
    let file = File::create(path).map_err(io(path))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(file));
    let e = csv_err(path);
    w.write_record([
        "row",
        "customer_id",
        "offer",
        "variant",
        "score",
        "propensity",
        "value",
        "time_zone",
        "channel",
        "unreachable",
        "room",
    ])
    .map_err(&e)?;
    let channels = info.spec.channel_list().len();
    let mut unreachable = String::new();
    let rooms = customers.rooms();
    for p in pairs {
        let id = customers.id(p.row).unwrap_or_default();
        let (mut a, mut b, mut c) = (
            zmij::Buffer::new(),
            zmij::Buffer::new(),
            zmij::Buffer::new(),
        );
        let (mut row, mut offer, mut variant, mut channel, mut room) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        unreachable.clear();
        for ci in (0..channels).filter(|&ci| !customers.reachable(p.row, ci)) {
            if !unreachable.is_empty() {
                unreachable.push(';');
            }
            unreachable.push_str(itoa::Buffer::new().format(ci));
        }
        w.write_record([
            row.format(p.row),
            id,
            offer.format(p.offer),
            variant.format(p.variant),
            a.format(p.score),
            b.format(p.propensity),
            c.format(customers.value(info, p)),
            customers.zone_name(info, p.row).unwrap_or_default(),
            channel.format(p.channel),
            &unreachable,
            rooms.get(&p.row).map_or("", |&r| room.format(r)),
        ])
        .map_err(&e)?;
    }
    let mut inner = w.into_inner().map_err(|e| ShardError::Io {
        path: path.to_owned(),
        source: e.into_error(),
    })?;
    inner.flush().map_err(io(path))
}

/// CRC-32 of a file's bytes.
fn file_crc(path: &Path) -> Result<u32, ShardError> {
    let mut h = crc32fast::Hasher::new();
    let file = File::open(path).map_err(io(path))?;
    crate::files::crc_feed(&mut h, file).map_err(io(path))?;
    Ok(h.finalize())
}

/// `shard.json` as written: the header's text and its CRC-32, so a changed count or a damaged
/// byte is refused (the header carries the counts the merge adds up).
#[derive(serde::Deserialize)]
struct Sealed<'a> {
    checksum: Option<u32>,
    #[serde(borrow)]
    shard: Option<&'a serde_json::value::RawValue>,
    /// Files of formats before the seal have their format at the top.
    format: Option<u32>,
}

/// The text of `shard.json` for a header's JSON text.
fn sealed(header: &str) -> String {
    format!(
        "{{\n\"checksum\": {},\n\"shard\": {header}\n}}\n",
        crc32fast::hash(header.as_bytes())
    )
}

/// One shard read back.
struct Read {
    dir: PathBuf,
    header: Header,
}

fn read_header(dir: &Path) -> Result<Read, ShardError> {
    let path = dir.join(SHARD_JSON);
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ShardError::Bad {
            path: path.clone(),
            detail: "missing: not the folder of a finished `campaign run --shard`".into(),
        },
        _ => io(&path)(source),
    })?;
    let bad = |detail: String| ShardError::Bad {
        path: path.clone(),
        detail,
    };
    let sealed: Sealed<'_> =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a shard header: {e}")))?;
    // Headers before the seal have their format at the top and no checksum.
    let (Some(raw), Some(checksum), None) = (sealed.shard, sealed.checksum, sealed.format) else {
        return Err(bad(match sealed.format.unwrap_or(0) {
            FORMAT => "written by an earlier build, without its checksum: run the shard again \
                       with this build"
                .into(),
            format => format!("shard format {format} (this build reads {FORMAT})"),
        }));
    };
    if checksum != crc32fast::hash(raw.get().as_bytes()) {
        return Err(bad(
            "its content differs from what the shard wrote (its checksum): the file was \
             changed or damaged since; run the shard again"
                .into(),
        ));
    }
    let header: Header =
        serde_json::from_str(raw.get()).map_err(|e| bad(format!("not a shard header: {e}")))?;
    if header.format != FORMAT {
        return Err(ShardError::Bad {
            path,
            detail: format!("shard format {} (this build reads {FORMAT})", header.format),
        });
    }
    let channels = header.info.spec.channel_list().len();
    if channels > super::spec::MAX_CHANNELS {
        return Err(ShardError::Bad {
            path,
            detail: format!(
                "{channels} channels (a campaign has at most {})",
                super::spec::MAX_CHANNELS
            ),
        });
    }
    Ok(Read {
        dir: dir.to_owned(),
        header,
    })
}

/// The first field in which two shards' runs differ, with both values.
fn differs(a: &Header, b: &Header) -> Option<(&'static str, String, String)> {
    let (x, y) = (&a.info, &b.info);
    if a.shard.count != b.shard.count {
        return Some((
            "the number of shards",
            a.shard.count.to_string(),
            b.shard.count.to_string(),
        ));
    }
    // The suppression lists' paths aside (shards run from other folders find them by other
    // paths): their content is compared below.
    let (sx, sy) = (x.spec_as_run(), y.spec_as_run());
    if sx != sy {
        let (a, b) = (json_value(&sx), json_value(&sy));
        let (path, a, b) = first_difference(&a, &b, String::new());
        return Some((
            "the campaign",
            format!("{path}: {a}"),
            format!("{path}: {b}"),
        ));
    }
    if x.now_ms != y.now_ms {
        let t = |ms: i64| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
            humantime::format_rfc3339_millis(at).to_string()
        };
        return Some(("--now", t(x.now_ms), t(y.now_ms)));
    }
    if x.snapshot != y.snapshot {
        return Some(("the snapshot", json(&x.snapshot), json(&y.snapshot)));
    }
    if x.suppression != y.suppression {
        let crc = |c: u32| format!("content crc32:{c:08x}");
        return Some((
            "the suppression lists",
            crc(x.suppression),
            crc(y.suppression),
        ));
    }
    if x.variants != y.variants
        || x.placement != y.placement
        || x.offer_ids != y.offer_ids
        || x.categories != y.categories
    {
        let m = |i: &RunInfo| {
            i.variants
                .iter()
                .map(|v| {
                    format!(
                        "{} v{} ({}, key {:08x})",
                        v.name, v.version, v.variant, v.key
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Some(("the model", m(x), m(y)));
    }
    if x.channel_used != y.channel_used || x.channels_used != y.channels_used {
        let used = |i: &RunInfo| match i.channels_used.as_slice() {
            [] => format!("{} on the campaign's channel", i.channel_used),
            each => format!(
                "{} on the campaign's channel, {} on each",
                i.channel_used,
                json(&each)
            ),
        };
        return Some((
            "the contact history (contacts already on each channel)",
            used(x),
            used(y),
        ));
    }
    if x.limits != y.limits {
        let (a, b) = (json_value(&x.limits), json_value(&y.limits));
        let (path, a, b) = first_difference(&a, &b, String::new());
        return Some((
            "the contact history (the room it leaves under the limits)",
            format!("{path}: {a}"),
            format!("{path}: {b}"),
        ));
    }
    if x.history != y.history {
        let h = |h: &super::history::HistoryId| format!("{} events, key {:016x}", h.events, h.key);
        return Some((
            "the contact history up to --now (an event of that time reached one shard's log and \
             not the other's)",
            h(&x.history),
            h(&y.history),
        ));
    }
    None
}

/// A header part as JSON, for a message.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn json_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// The first place two JSON documents differ, as a path (`channels.email.max_contacts`) and
/// the two values there (`null` where one lacks it).
fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: String,
) -> (String, String, String) {
    use serde_json::Value;
    let at = |key: &str| match path.as_str() {
        "" => key.to_owned(),
        p => format!("{p}.{key}"),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if u != v {
                    return first_difference(u, v, at(k));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                if u != v {
                    return first_difference(u, v, format!("{path}[{i}]"));
                }
            }
        }
        _ => {}
    }
    let path = if path.is_empty() {
        "the file".into()
    } else {
        path
    };
    (path, a.to_string(), b.to_string())
}

/// Checks that `dirs` are every shard of one run, once each, and joins them into a list in
/// `out`, exactly as a one-machine run of the same inputs writes it.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Summary, CampaignError> {
    let shards = dirs
        .iter()
        .map(|d| read_header(d))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = shards.first() else {
        return Err(ShardError::Incomplete("no shard folder given".into()).into());
    };
    let count = first.header.shard.count;
    let mut seen: Vec<Option<&Path>> = vec![None; count as usize];
    for s in &shards {
        if let Some((what, a, b)) = differs(&first.header, &s.header) {
            return Err(ShardError::Mismatch {
                what,
                first: first.dir.clone(),
                other: s.dir.clone(),
                a,
                b,
            }
            .into());
        }
        let i = s.header.shard.index as usize;
        if let Some(before) = seen[i] {
            return Err(ShardError::Incomplete(format!(
                "shard {i}/{count} given twice: {} and {}",
                before.display(),
                s.dir.display()
            ))
            .into());
        }
        seen[i] = Some(&s.dir);
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| seen[*i as usize].is_none())
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Incomplete(format!(
            "{} of {count} shards missing: {}",
            missing.len(),
            missing.join(", ")
        ))
        .into());
    }

    // Once the shards' headers agree (it makes the folder the lock lies in); held to the end.
    let _out = super::placing::lock(out, "campaign merge")?;
    let mut tally = Tally::default();
    let mut pairs = Vec::new();
    let mut ids = HashMap::new();
    let mut values = HashMap::new();
    let mut zones = HashMap::new();
    let mut unreachable = HashMap::new();
    let mut rooms = Rooms::default();
    let channels = first.header.info.spec.channel_list().len();
    for s in &shards {
        let path = s.dir.join(CANDIDATES_CSV);
        if file_crc(&path)? != s.header.candidates_crc {
            return Err(ShardError::Bad {
                path,
                detail: format!(
                    "its content differs from what the shard wrote (checksum in {SHARD_JSON}): \
                     the file was changed or damaged since; run the shard again"
                ),
            }
            .into());
        }
        tally.merge(s.header.tally.clone());
        let n = read_pairs(
            &s.dir.join(CANDIDATES_CSV),
            channels,
            &mut pairs,
            &mut Listed {
                ids: &mut ids,
                values: &mut values,
                zones: &mut zones,
                unreachable: &mut unreachable,
                rooms: &mut rooms,
            },
        )?;
        check_rows(&s.dir.join(CANDIDATES_CSV), n, s.header.candidates)?;
    }
    let info = &first.header.info;
    let candidates = allocate::candidates(pairs, &info.limits);
    let customers = Customers::Listed {
        ids,
        values,
        zones,
        unreachable,
        rooms,
    };

    finish::finish_in_place(info, tally, candidates, &customers, out)
}

fn check_rows(path: &Path, got: u64, expected: u64) -> Result<(), ShardError> {
    if got == expected {
        return Ok(());
    }
    Err(ShardError::Bad {
        path: path.to_owned(),
        detail: format!("{got} rows, but {SHARD_JSON} says {expected}: the shard is incomplete"),
    })
}

/// What the shards say of each customer, gathered as they are read.
struct Listed<'a> {
    ids: &'a mut HashMap<u32, Box<str>>,
    values: &'a mut HashMap<(u32, u16), f64>,
    zones: &'a mut HashMap<u32, Box<str>>,
    unreachable: &'a mut HashMap<u32, u8>,
    rooms: &'a mut Rooms,
}

// A customer's unreachable channels are one bit each.
const _: () = assert!(super::spec::MAX_CHANNELS <= u8::BITS as usize);

/// Reads one shard's candidates into `into` and what they say of their customers into
/// `listed`; `channels` is the campaign's channel count. Returns the rows read.
fn read_pairs(
    path: &Path,
    channels: usize,
    into: &mut Vec<Pair>,
    listed: &mut Listed<'_>,
) -> Result<u64, ShardError> {
    let file = File::open(path).map_err(io(path))?;
    let mut r = csv::Reader::from_reader(BufReader::new(file));
    let mut rec = csv::StringRecord::new();
    let mut n = 0u64;
    let e = csv_err(path);
    while r.read_record(&mut rec).map_err(&e)? {
        n += 1;
        let bad = |col: &str| ShardError::Bad {
            path: path.to_owned(),
            detail: format!("line {}: column `{col}` is not valid", n + 1),
        };
        let field = |i: usize| rec.get(i).unwrap_or("");
        let p = Pair {
            row: field(0).parse().map_err(|_| bad("row"))?,
            offer: field(2).parse().map_err(|_| bad("offer"))?,
            variant: field(3).parse().map_err(|_| bad("variant"))?,
            score: field(4)
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite())
                .ok_or_else(|| bad("score"))?,
            propensity: field(5)
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=1.0).contains(p))
                .ok_or_else(|| bad("propensity"))?,
            channel: field(8)
                .parse()
                .ok()
                .filter(|&c: &u8| usize::from(c) < channels)
                .ok_or_else(|| bad("channel"))?,
        };
        let value: f64 = field(6)
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad("value"))?;
        let mut off = 0u8;
        for ci in field(9).split(';').filter(|c| !c.is_empty()) {
            match ci.parse::<usize>() {
                Ok(ci) if ci < channels => off |= 1 << ci,
                _ => return Err(bad("unreachable")),
            }
        }
        listed.ids.entry(p.row).or_insert_with(|| field(1).into());
        listed.values.insert((p.row, p.offer), value);
        if !field(7).is_empty() {
            listed.zones.entry(p.row).or_insert_with(|| field(7).into());
        }
        if off != 0 {
            listed.unreachable.insert(p.row, off);
        }
        if !field(10).is_empty() {
            let room = field(10)
                .parse()
                .ok()
                .filter(|&r: &u8| r >= 1)
                .ok_or_else(|| bad("room"))?;
            listed.rooms.insert(p.row, room);
        }
        into.push(p);
    }
    Ok(n)
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
