//! What a run writes: the target list as CSV and as Parquet (the same rows, streamed in
//! batches), the control group's list, and the summary (a JSON file and a printed table).
//!
//! Everything written is a function of the run's inputs, so the same inputs give the same
//! bytes: numbers are formatted shortest-round-trip (zmij), rows come in the allocation's total
//! order, and no timing or host detail enters a file. Nothing here decides or allocates.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// The list file names inside the output folder.
pub const LIST_CSV: &str = "targets.csv";
/// The Parquet form of the list.
pub const LIST_PARQUET: &str = "targets.parquet";
/// The control group: who was held out, and what they would have been sent.
pub const CONTROL_CSV: &str = "control.csv";
/// The summary.
pub const SUMMARY_JSON: &str = "summary.json";

/// A written list (targets or control) opened for reading, with the position of each named
/// column: the one reader of the lists' CSV form, for `campaign commit` and `campaign report`.
/// An error is the detail to report with the file's path.
pub fn open_list<const N: usize>(
    path: &Path,
    names: [&str; N],
) -> Result<(csv::Reader<File>, [usize; N]), String> {
    let mut r = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let header = r.headers().map_err(|e| e.to_string())?;
    let mut at = [0; N];
    for (a, name) in at.iter_mut().zip(names) {
        *a = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no `{name}` column"))?;
    }
    Ok((r, at))
}

/// Rows per Parquet row group (bounds what is buffered).
const BATCH: usize = 64 * 1024;

/// The list's columns, in file order.
pub const COLUMNS: [&str; 14] = [
    "customer_id",
    "channel",
    "offer_id",
    "rank",
    "score",
    "propensity",
    "decision_id",
    "model_name",
    "model_version",
    "variant",
    "title",
    "body",
    "image_url",
    "cta_url",
];

/// An offer's content on the campaign's channel, as the model holds it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Content {
    /// Title (an SMS's first line, an e-mail's subject).
    pub title: String,
    /// Body text.
    pub body: String,
    /// Image.
    pub image_url: String,
    /// Where the call to action leads.
    pub cta_url: String,
}

/// One row of the list.
pub struct Row<'a> {
    /// The customer.
    pub customer_id: &'a str,
    /// The campaign's channel.
    pub channel: &'a str,
    /// The offer.
    pub offer_id: &'a str,
    /// 1 for the customer's best selected offer.
    pub rank: u32,
    /// Arbitration score.
    pub score: f64,
    /// Propensity.
    pub propensity: f64,
    /// The decision id events about this contact quote.
    pub decision_id: &'a str,
    /// Deciding model's name.
    pub model_name: &'a str,
    /// Deciding model's version.
    pub model_version: &'a str,
    /// `champion` or `challenger`.
    pub variant: &'a str,
    /// The offer's content on the channel.
    pub content: &'a Content,
    /// With several channels: why each other channel was not chosen (see
    /// [`NOT_CHOSEN`]); written only then.
    pub not_chosen: &'a str,
    /// With a send window: the earliest allowed send time (UTC); written only then.
    pub send_at: &'a str,
    /// The same time in milliseconds (the Parquet column's timestamp; `None` when empty).
    pub send_at_ms: Option<i64>,
}

/// The columns a list adds to [`COLUMNS`] when the campaign asks, in this order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    /// `send_at`: the campaign has a send window.
    pub send_at: bool,
    /// [`NOT_CHOSEN`]: the campaign lists several channels.
    pub not_chosen: bool,
}

/// The column a list over several channels adds: `email:lower_score;push:unreachable`.
pub const NOT_CHOSEN: &str = "not_chosen";

/// Why the list could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CSV writer failed.
    #[error("{LIST_CSV}: {0}")]
    Csv(#[from] csv::Error),
    /// The Parquet writer failed.
    #[error("{LIST_PARQUET}: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow refused a batch.
    #[error("{LIST_PARQUET}: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes the list as CSV and Parquet at once, row by row.
pub struct ListWriter {
    csv: csv::Writer<BufWriter<File>>,
    parquet: ArrowWriter<File>,
    schema: Arc<Schema>,
    strings: Vec<StringBuilder>,
    rank: UInt32Builder,
    score: Float64Builder,
    propensity: Float64Builder,
    pending: usize,
    /// The `send_at` column, when written: a UTC timestamp in Parquet.
    send_at: Option<TimestampMillisecondBuilder>,
    /// The [`NOT_CHOSEN`] column, when written.
    not_chosen: Option<StringBuilder>,
    /// Rows written.
    pub rows: u64,
}

/// The time zone of the Parquet list's `send_at` timestamps.
const UTC: &str = "UTC";

/// The string columns, in [`COLUMNS`] order without rank, score and propensity.
const STRING_COLUMNS: usize = 11;

impl ListWriter {
    /// Creates both files in `dir`, with the [`Extra`] columns last.
    pub fn create(dir: &Path, extra: Extra) -> Result<Self, OutputError> {
        let csv_path = dir.join(LIST_CSV);
        let mut csv = csv::Writer::from_writer(BufWriter::new(
            File::create(&csv_path).map_err(io(&csv_path))?,
        ));
        let mut columns = COLUMNS.to_vec();
        if extra.send_at {
            columns.push("send_at");
        }
        if extra.not_chosen {
            columns.push(NOT_CHOSEN);
        }
        csv.write_record(&columns)?;
        let fields: Vec<Field> = columns
            .iter()
            .map(|&name| match name {
                "rank" => Field::new(name, DataType::UInt32, false),
                "score" | "propensity" => Field::new(name, DataType::Float64, false),
                "send_at" => Field::new(
                    name,
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
                _ => Field::new(name, DataType::Utf8, false),
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let pq_path = dir.join(LIST_PARQUET);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(BATCH))
            .build();
        let parquet = ArrowWriter::try_new(
            File::create(&pq_path).map_err(io(&pq_path))?,
            schema.clone(),
            Some(props),
        )?;
        Ok(ListWriter {
            csv,
            parquet,
            schema,
            strings: (0..STRING_COLUMNS).map(|_| StringBuilder::new()).collect(),
            rank: UInt32Builder::new(),
            score: Float64Builder::new(),
            propensity: Float64Builder::new(),
            pending: 0,
            send_at: extra
                .send_at
                .then(|| TimestampMillisecondBuilder::new().with_timezone(UTC)),
            not_chosen: extra.not_chosen.then(StringBuilder::new),
            rows: 0,
        })
    }

    /// Appends one row to both files.
    pub fn push(&mut self, r: &Row<'_>) -> Result<(), OutputError> {
        let mut rank = itoa::Buffer::new();
        let mut score = zmij::Buffer::new();
        let mut prop = zmij::Buffer::new();
        let strings = [
            r.customer_id,
            r.channel,
            r.offer_id,
            r.decision_id,
            r.model_name,
            r.model_version,
            r.variant,
            &r.content.title,
            &r.content.body,
            &r.content.image_url,
            &r.content.cta_url,
        ];
        // CSV columns: the first three strings, the three numbers, the other strings.
        for f in &strings[..3] {
            self.csv.write_field(f)?;
        }
        self.csv.write_field(rank.format(r.rank))?;
        self.csv.write_field(score.format(r.score))?;
        self.csv.write_field(prop.format(r.propensity))?;
        for f in &strings[3..] {
            self.csv.write_field(f)?;
        }
        if let Some(b) = &mut self.send_at {
            self.csv.write_field(r.send_at)?;
            b.append_option(r.send_at_ms);
        }
        if let Some(b) = &mut self.not_chosen {
            self.csv.write_field(r.not_chosen)?;
            b.append_value(r.not_chosen);
        }
        self.csv.write_record(None::<&[u8]>)?;
        for (b, s) in self.strings.iter_mut().zip(strings) {
            b.append_value(s);
        }
        self.rank.append_value(r.rank);
        self.score.append_value(r.score);
        self.propensity.append_value(r.propensity);
        self.pending += 1;
        self.rows += 1;
        if self.pending == BATCH {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), OutputError> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut s: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let rest = s.split_off(3);
        let mut columns = s;
        columns.push(Arc::new(self.rank.finish()));
        columns.push(Arc::new(self.score.finish()));
        columns.push(Arc::new(self.propensity.finish()));
        columns.extend(rest);
        if let Some(b) = &mut self.send_at {
            columns.push(Arc::new(b.finish()));
        }
        if let Some(b) = &mut self.not_chosen {
            columns.push(Arc::new(b.finish()));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.parquet.write(&batch)?;
        self.pending = 0;
        Ok(())
    }

    /// Flushes and closes both files.
    pub fn finish(mut self) -> Result<u64, OutputError> {
        self.flush_batch()?;
        self.parquet.close()?;
        self.csv.flush().map_err(|source| OutputError::Io {
            path: LIST_CSV.into(),
            source,
        })?;
        Ok(self.rows)
    }
}

/// Writes the control group's list: `customer_id,offer_id,score,propensity,variant,channel`
/// (the channel the list would have sent on, last so readers of the first five keep working).
pub fn write_control<'a>(
    dir: &Path,
    rows: impl Iterator<Item = (&'a str, &'a str, f64, f64, &'a str, &'a str)>,
) -> Result<(), OutputError> {
    let path = dir.join(CONTROL_CSV);
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(&path).map_err(io(&path))?));
    w.write_record([
        "customer_id",
        "offer_id",
        "score",
        "propensity",
        "variant",
        "channel",
    ])?;
    for (id, offer, score, prop, variant, channel) in rows {
        let (mut a, mut b) = (zmij::Buffer::new(), zmij::Buffer::new());
        w.write_record([id, offer, a.format(score), b.format(prop), variant, channel])?;
    }
    w.flush().map_err(io(&path))?;
    Ok(())
}

/// Capacity as the run saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CapacityUse {
    /// The channel's capacity in the period.
    pub max_contacts: u64,
    /// `day` or `week`.
    pub per: String,
    /// Contacts the log already holds on the channel in the period.
    pub used_before: u64,
    /// What this run could take.
    pub available: u64,
}

/// An offer's line in the summary.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OfferSummary {
    /// The offer's category (committed events carry it, so category caps count them).
    pub category: String,
    /// Customers selected for it.
    pub selected: u64,
    /// The file's minimum, when one was set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min: Option<u64>,
    /// How far the list (before the control group) fell short of the minimum (the run's
    /// warning says why: the capacity left, the category, or too few customers). Absent when
    /// met.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min_shortfall: Option<u64>,
    /// Expected conversions (sum of propensities).
    pub expected_conversions: f64,
    /// The offer's value in the champion (what `campaign report` counts a conversion as).
    #[serde(default)]
    pub value: f64,
}

/// Why eligible or scanned customers were not selected.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HeldOut {
    /// On a suppression list.
    pub suppression: u64,
    /// No campaign offer passed eligibility and arbitration.
    pub no_eligible_offer: u64,
    /// Every campaign offer held back by a contact policy of the model, by policy.
    pub contact_policy: BTreeMap<String, u64>,
    /// Over the campaign's frequency cap.
    pub frequency: u64,
    /// In the control group.
    pub control_group: u64,
    /// Lost to capacity, offer maximums or category limits.
    pub capacity: u64,
    /// Reachable on none of the campaign's channels.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreachable: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One channel of a campaign over several.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelSummary {
    /// The placement decided for on it.
    pub placement: String,
    /// Its capacity as the run saw it, when the file sets one.
    pub capacity: Option<CapacityUse>,
    /// Rows sent on it.
    pub selected: u64,
    /// Rows the allocation gave it that the control group holds out.
    #[serde(default)]
    pub control_group: u64,
}

/// The summary file (also what `campaign commit` reads back).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Campaign name.
    pub campaign: String,
    /// Channel.
    pub channel: String,
    /// Placement decided for.
    pub placement: String,
    /// Champion model name.
    pub model_name: String,
    /// Champion model version.
    pub model_version: String,
    /// The run's time (RFC 3339).
    pub run_at: String,
    /// The run's time (Unix ms): the committed events' ids derive from it.
    pub run_at_ms: i64,
    /// CRC-32 of the campaign's content: the committed events' ids derive from it too (lists
    /// written before it was kept have none, and their ids derive from the name alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_crc32: Option<u32>,
    /// Transactional campaign.
    pub transactional: bool,
    /// Customers in the snapshot.
    pub scanned: u64,
    /// Customers with at least one eligible campaign offer.
    pub eligible: u64,
    /// Rows in the list.
    pub selected: u64,
    /// Customers in the list.
    pub customers_selected: u64,
    /// Per offer.
    pub offers: BTreeMap<String, OfferSummary>,
    /// Held out, by reason.
    pub held_out: HeldOut,
    /// Capacity, when the file sets one.
    pub capacity: Option<CapacityUse>,
    /// Expected conversions of the list.
    pub expected_conversions: f64,
    /// Expected value of the list (propensity × offer value).
    pub expected_value: f64,
    /// Every limit the list reaches, by its path in the campaign file, with what one unit more
    /// of it (one less, for a minimum) would add to the list's total score.
    #[serde(default)]
    pub shadow_prices: BTreeMap<String, ShadowPrice>,
    /// With a challenger: each variant's share of the limits. The capacity and every offer
    /// and category limit are split in proportion to each variant's customers who reached
    /// the allocation, so each variant is measured on its share of the base whatever its
    /// scores (its shadow prices are then under `challenger.`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSummary>,
    /// With several channels: each, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, ChannelSummary>,
    /// With a send window: rows sent in the default time zone because the database does
    /// not know their customer's, by the name the snapshot gives.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_time_zones: BTreeMap<String, u64>,
    /// With a send window reading a zone feature: rows sent in the default time zone because
    /// that feature is empty for their customer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub no_time_zone: u64,
}

/// One variant's share of a champion/challenger campaign.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantSummary {
    /// `champion` or `challenger`.
    pub variant: String,
    /// Its model, `name vVERSION`.
    pub model: String,
    /// Its customers who reached the allocation.
    pub eligible: u64,
    /// Its share of the capacity.
    pub capacity: Option<u64>,
    /// Rows chosen for it.
    pub selected: u64,
}

/// What one unit of a limit the list reaches is worth.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShadowPrice {
    /// The limit in this run (for the capacity: what the run could still take).
    pub limit: u64,
    /// Total score (propensity × value × priority) one unit more would add; for a minimum,
    /// what one unit less would add.
    pub per_unit: f64,
}

/// Writes `summary.json`.
pub fn write_summary(dir: &Path, s: &Summary) -> Result<(), OutputError> {
    let path = dir.join(SUMMARY_JSON);
    let mut text = serde_json::to_string_pretty(s).unwrap_or_default();
    text.push('\n');
    let mut f = File::create(&path).map_err(io(&path))?;
    f.write_all(text.as_bytes()).map_err(io(&path))?;
    Ok(())
}

/// The summary as a table for the terminal.
pub fn table(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "campaign {} on {} ({}), model {} v{}, at {}",
        s.campaign, s.channel, s.placement, s.model_name, s.model_version, s.run_at
    );
    // Champion's prices first, then the challenger's; every label in one column, however
    // long a limit's name.
    let mut prices: Vec<(String, f64)> = s
        .shadow_prices
        .iter()
        .map(|(name, p)| (format!("  {name} ({})", p.limit), p.per_unit))
        .collect();
    prices.sort_by_key(|(label, _)| label.trim_start().starts_with("challenger."));
    let width = prices
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0)
        .max(44);
    let line = |t: &mut String, k: &str, v: String| {
        let _ = writeln!(t, "  {k:<width$} {v:>12}");
    };
    line(&mut t, "customers scanned", s.scanned.to_string());
    line(&mut t, "eligible", s.eligible.to_string());
    line(&mut t, "selected (rows)", s.selected.to_string());
    line(
        &mut t,
        "selected (customers)",
        s.customers_selected.to_string(),
    );
    for (id, o) in &s.offers {
        let min = match (o.min, o.min_shortfall) {
            (Some(m), Some(short)) => format!(" (min {m}, NOT MET: {short} short)"),
            (Some(m), None) => format!(" (min {m})"),
            _ => String::new(),
        };
        line(&mut t, &format!("  {id}{min}"), o.selected.to_string());
    }
    let _ = writeln!(t, "  held out");
    let h = &s.held_out;
    line(&mut t, "  suppression", h.suppression.to_string());
    line(
        &mut t,
        "  no eligible offer",
        h.no_eligible_offer.to_string(),
    );
    for (p, n) in &h.contact_policy {
        line(&mut t, &format!("  contact policy {p}"), n.to_string());
    }
    line(&mut t, "  frequency", h.frequency.to_string());
    line(&mut t, "  control group", h.control_group.to_string());
    line(&mut t, "  capacity and limits", h.capacity.to_string());
    if h.unreachable > 0 {
        line(
            &mut t,
            "  reachable on no channel",
            h.unreachable.to_string(),
        );
    }
    for (zone, n) in &s.unknown_time_zones {
        line(
            &mut t,
            &format!("unknown time zone {zone:?} (default used)"),
            n.to_string(),
        );
    }
    if s.no_time_zone > 0 {
        line(
            &mut t,
            "no time zone in the feature (default used)",
            s.no_time_zone.to_string(),
        );
    }
    for (name, c) in &s.channels {
        let control = match c.control_group {
            0 => String::new(),
            n => format!("{n} control"),
        };
        let cap = match (&c.capacity, control.is_empty()) {
            (Some(c), true) => format!(" of {} ({} used before)", c.max_contacts, c.used_before),
            (Some(c), false) => format!(
                " of {} ({} used before, {control})",
                c.max_contacts, c.used_before
            ),
            (None, false) => format!(" ({control})"),
            (None, true) => String::new(),
        };
        line(
            &mut t,
            &format!("channel {name} ({})", c.placement),
            format!("{}{cap}", c.selected),
        );
    }
    if let Some(c) = &s.capacity {
        line(
            &mut t,
            &format!("capacity per {} (used before / available)", c.per),
            format!("{} ({}/{})", c.max_contacts, c.used_before, c.available),
        );
    }
    line(
        &mut t,
        "expected conversions",
        format!("{:.1}", s.expected_conversions),
    );
    line(&mut t, "expected value", format!("{:.2}", s.expected_value));
    if !s.variants.is_empty() {
        let _ = writeln!(
            t,
            "  variants (limits split by their share of the customers allocated over)"
        );
        for v in &s.variants {
            let cap = v.capacity.map(|c| format!(" of {c}")).unwrap_or_default();
            line(
                &mut t,
                &format!("  {} ({}), {} customers", v.variant, v.model, v.eligible),
                format!("{}{cap}", v.selected),
            );
        }
    }
    if !s.shadow_prices.is_empty() {
        let _ = writeln!(
            t,
            "  shadow prices (score one unit more adds; a minimum: one less)"
        );
        for (label, per_unit) in &prices {
            line(&mut t, label, format!("{per_unit:.2}"));
        }
    }
    t
}
