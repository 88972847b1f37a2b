//! A business day's close and clearing run: check the day balances, close
//! it, stream its partner lines into each partner's files (one pass, one
//! partner at a time, only running totals in memory), compute fees and net
//! positions, sign, write the manifest, and register the files so that a
//! regeneration must reproduce them byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone as _, Utc};
use futures::StreamExt as _;
use posgate_hsm::{Hsm, HsmError};
use sha2::{Digest as _, Sha256};

use super::layout::{self, CSV_HEADER, CurrencyTotals, FieldError, FileMeta, Layout};
use super::sign;
use crate::clearing::model::{ClearingItem, DayRun, NetPosition, PartnerConfig, is_partner};
use crate::model::business_day::BusinessCalendar;
use crate::model::money::Currency;
use crate::ports::db::clearing::{DayLine, FileRecord, PartyTotal};
use crate::ports::db::{Database, StoreError};

/// Every day's files are sequence 01: a closed day is never re-issued with
/// other content, and late lines go into the next day's files.
const FILE_SEQUENCE: u32 = 1;
/// Output buffer of one file. Large enough that writes reach the kernel in big blocks.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// How often (in items) the run reports progress.
pub const PROGRESS_EVERY_ITEMS: u64 = 100_000;
/// How long the run waits before looking at an empty cursor again. SQLite's
/// driver hands rows over from its own thread one at a time: a reader woken
/// for each of a day's 1.7 million rows spends more on context switches
/// than on the rows. Pausing a millisecond when nothing is ready lets about
/// a thousand rows collect per wake-up (the driver buffers 4096), and costs
/// a PostgreSQL cursor nothing, its rows arriving in socket-sized batches.
const EMPTY_CURSOR_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum ClearingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("clearing files in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing with HSM key {label}: {source}")]
    Hsm { label: String, source: HsmError },
    #[error(
        "business date {date} does not balance: its lines sum to {sum_minor} {currency}, not zero; the day is not closed"
    )]
    Unbalanced {
        date: NaiveDate,
        currency: String,
        sum_minor: i64,
    },
    #[error("business date {date}: {detail}")]
    Invariant { date: NaiveDate, detail: String },
    /// A day may be closed only once every store's day has ended: sales up
    /// to the last cutoff still belong to it.
    #[error(
        "business date {date} has not ended: {}; it is now {now}, close the day after that",
        .open.iter().map(|(store_id, ends_at)| format!("store {store_id}'s day ends at {ends_at}")).collect::<Vec<_>>().join(", ")
    )]
    DayNotEnded {
        date: NaiveDate,
        /// The stores whose day is still open, with when it ends, soonest first.
        open: Vec<(String, DateTime<Utc>)>,
        now: DateTime<Utc>,
    },
    #[error(transparent)]
    Settlement(#[from] crate::clearing::settle::SettleError),
    #[error("partner {partner}, transaction {transaction_id}: {source}")]
    Field {
        partner: String,
        transaction_id: String,
        source: FieldError,
    },
    #[error(
        "business date {date} is closed and its file {name} was registered with SHA-256 {registered}, but regenerating it gives {now}; refusing to publish a changed closed day"
    )]
    ClosedDayChanged {
        date: NaiveDate,
        name: String,
        registered: String,
        now: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClearingError + '_ {
    move |source| ClearingError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Why a configuration does not give a clearing context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("clearing signs its files with the HSM: configure [hsm] with an ed25519 key")]
    NoHsm,
    #[error("opening the HSM")]
    Hsm(#[source] HsmError),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct ClearingContext {
    pub store: Arc<dyn Database>,
    pub hsm: Arc<dyn Hsm>,
    /// HSM label of the Ed25519 signing key.
    pub signing_key: String,
    pub partners: Vec<PartnerConfig>,
    /// `[settlement]`: which instruction files the day gets (none when empty).
    pub settlement: crate::clearing::settle::SettlementConfig,
    /// Every store's calendar by store id: a day is closed, and its files
    /// created, when the last store's day has ended.
    pub calendars: BTreeMap<String, BusinessCalendar>,
}

/// Progress of a run, for long runs' display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Items written so far.
    pub items: u64,
    /// Partners whose files are complete.
    pub partners_done: u64,
}

/// When business date `date` ends under a calendar (the cutoff instant
/// closing it). Evening cutoffs end the day on its own date; morning cutoffs
/// (and midnight) on the next date.
pub fn day_end(calendar: &BusinessCalendar, date: NaiveDate) -> DateTime<Utc> {
    let noon = NaiveTime::from_hms_opt(12, 0, 0).expect("noon is a valid time");
    let end_date = if calendar.cutoff >= noon {
        date
    } else {
        date.checked_add_days(Days::new(1))
            .expect("date far from the end of the calendar")
    };
    let local = end_date.and_time(calendar.cutoff);
    // In a DST gap the cutoff does not exist locally; the day ends an hour later.
    calendar
        .time_zone
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            calendar
                .time_zone
                .from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc))
}

/// The creation time printed in a day's files: when the last store's day
/// ended (UTC midnight after the date when no store is configured). It
/// depends only on the date and the calendars, so reruns match.
pub fn files_created_at<'a>(
    calendars: impl IntoIterator<Item = &'a BusinessCalendar>,
    date: NaiveDate,
) -> DateTime<Utc> {
    calendars
        .into_iter()
        .map(|calendar| day_end(calendar, date))
        .max()
        .unwrap_or_else(|| {
            date.checked_add_days(Days::new(1))
                .expect("date far from the end of the calendar")
                .and_time(NaiveTime::MIN)
                .and_utc()
        })
}

/// Refuses to close `date` at `now` while any store's day is still open,
/// naming those stores and when their days end.
pub fn check_day_ended(
    calendars: &BTreeMap<String, BusinessCalendar>,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), ClearingError> {
    let mut open: Vec<(String, DateTime<Utc>)> = calendars
        .iter()
        .map(|(store_id, calendar)| (store_id.clone(), day_end(calendar, date)))
        .filter(|(_, ends_at)| *ends_at > now)
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    open.sort_by_key(|(store_id, ends_at)| (*ends_at, store_id.clone()));
    Err(ClearingError::DayNotEnded { date, open, now })
}

/// Sums of a day's lines per currency, from per-party totals.
fn currency_sums(totals: &[PartyTotal]) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for total in totals {
        *sums.entry(total.currency.clone()).or_insert(0) += total.amount_minor;
    }
    sums
}

fn check_balanced(date: NaiveDate, totals: &[PartyTotal]) -> Result<(), ClearingError> {
    match currency_sums(totals).into_iter().find(|(_, sum)| *sum != 0) {
        Some((currency, sum_minor)) => Err(ClearingError::Unbalanced {
            date,
            currency,
            sum_minor,
        }),
        None => Ok(()),
    }
}

/// A file being written: buffered, hashed and counted as it goes.
struct HashedFile {
    path: PathBuf,
    name: String,
    writer: BufWriter<File>,
    hasher: Sha256,
    size_bytes: i64,
}

impl HashedFile {
    fn create(dir: &Path, name: String) -> Result<Self, ClearingError> {
        let path = dir.join(&name);
        let file = File::create(&path).map_err(io_error(&path))?;
        Ok(Self {
            writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            path,
            name,
            hasher: Sha256::new(),
            size_bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClearingError> {
        self.hasher.update(bytes);
        self.size_bytes += bytes.len() as i64;
        self.writer.write_all(bytes).map_err(io_error(&self.path))
    }

    fn finish(mut self) -> Result<FileRecord, ClearingError> {
        self.writer.flush().map_err(io_error(&self.path))?;
        let file = self
            .writer
            .into_inner()
            .map_err(|error| io_error(&self.path)(error.into_error()))?;
        file.sync_all().map_err(io_error(&self.path))?;
        Ok(FileRecord {
            name: self.name,
            size_bytes: self.size_bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// One partner's files while its lines stream by.
struct PartnerFiles {
    partner: PartnerConfig,
    layout: Layout,
    fixed: HashedFile,
    csv: HashedFile,
    sequence: u64,
    totals: BTreeMap<String, CurrencyTotals>,
    record: Vec<u8>,
}

impl PartnerFiles {
    fn open(
        dir: &Path,
        partner: PartnerConfig,
        date: NaiveDate,
        created_at: DateTime<Utc>,
    ) -> Result<Self, ClearingError> {
        let stem = layout::file_stem(&partner.id, date, FILE_SEQUENCE);
        let layout = Layout::of(partner.profile);
        let mut fixed = HashedFile::create(dir, format!("{stem}.dat"))?;
        let mut csv = HashedFile::create(dir, format!("{stem}.csv"))?;
        let file_id = layout::file_id(&partner.id, date, FILE_SEQUENCE);
        let mut record = Vec::with_capacity(256);
        layout
            .header(
                &mut record,
                &FileMeta {
                    file_id: &file_id,
                    partner: &partner.id,
                    business_date: date,
                    created_at,
                },
            )
            .map_err(|source| ClearingError::Field {
                partner: partner.id.clone(),
                transaction_id: String::new(),
                source,
            })?;
        fixed.write(&record)?;
        csv.write(CSV_HEADER.as_bytes())?;
        Ok(Self {
            partner,
            layout,
            fixed,
            csv,
            sequence: 0,
            totals: BTreeMap::new(),
            record,
        })
    }

    fn add(&mut self, item: &ClearingItem) -> Result<(), ClearingError> {
        self.sequence += 1;
        let field_error = |source| ClearingError::Field {
            partner: item.partner.clone(),
            transaction_id: item.transaction_id.clone(),
            source,
        };
        self.record.clear();
        self.layout
            .detail(&mut self.record, self.sequence, item)
            .map_err(field_error)?;
        self.fixed.write(&self.record)?;
        self.record.clear();
        layout::csv_row(&mut self.record, self.sequence, item).map_err(field_error)?;
        self.csv.write(&self.record)?;
        let totals = self.totals.entry(item.currency.clone()).or_default();
        totals
            .add(item.amount_minor, item.fee_minor)
            .ok_or_else(|| ClearingError::Invariant {
                date: item.business_date,
                detail: format!("totals of {} overflow", item.partner),
            })
    }

    fn finish(mut self) -> Result<(Vec<FileRecord>, Vec<NetPosition>), ClearingError> {
        self.record.clear();
        self.layout
            .close(&mut self.record, &self.totals)
            .map_err(|source| ClearingError::Field {
                partner: self.partner.id.clone(),
                transaction_id: String::new(),
                source,
            })?;
        self.fixed.write(&self.record)?;
        let files = vec![self.fixed.finish()?, self.csv.finish()?];
        let positions = self
            .totals
            .iter()
            .map(|(currency, totals)| NetPosition {
                partner: self.partner.id.clone(),
                currency: currency.clone(),
                gross_minor: totals.amount_minor,
                fees_minor: totals.fee_minor,
                net_minor: totals.net_minor(),
                items: totals.items,
            })
            .collect();
        Ok((files, positions))
    }
}

/// The item of a partner's line under its contract.
fn item_of(line: DayLine, partner: &PartnerConfig, date: NaiveDate) -> ClearingItem {
    let fee_minor = partner.item_fee_minor(&line.kind, line.amount_minor);
    ClearingItem {
        partner: line.party,
        business_date: date,
        transaction_id: line.transaction_id,
        reference: line.reference,
        kind: line.kind,
        currency: line.currency,
        amount_minor: line.amount_minor,
        fee_minor,
        store_id: line.store_id,
    }
}

/// Runs (or re-runs) the clearing of `date` into `out_dir/YYYY-MM-DD/`.
/// Closes the day first if it is open; if its lines then do not balance the
/// day is reopened, nothing is published, and the run fails.
/// `progress` is called every [`PROGRESS_EVERY_ITEMS`] items and at the end.
pub async fn run_day(
    context: &ClearingContext,
    date: NaiveDate,
    out_dir: &Path,
    now: DateTime<Utc>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<DayRun, ClearingError> {
    let store = &context.store;
    // Close first: from the commit on the day is frozen (late lines go to the
    // next open date), so one pass over it gives final totals.
    let (closed, newly_closed) = if let Some(closed) = store.closed_day(date).await? {
        (closed, false)
    } else {
        check_day_ended(&context.calendars, date, now)?;
        let created_at = files_created_at(context.calendars.values(), date);
        (store.close_day(date, created_at, now).await?, true)
    };
    let created_at = closed.files_created_at;
    let final_dir = out_dir.join(crate::model::business_day::format_date(date));
    let work_dir = out_dir.join(format!(
        ".{}.partial-{}",
        crate::model::business_day::format_date(date),
        std::process::id()
    ));
    if work_dir.exists() {
        std::fs::remove_dir_all(&work_dir).map_err(io_error(&work_dir))?;
    }
    std::fs::create_dir_all(&work_dir).map_err(io_error(&work_dir))?;

    // The day's totals (one aggregate) and the partners' files (one cursor)
    // are independent reads of a frozen day: run them side by side, on two
    // connections, and discard the files if the day does not balance.
    let (totals, streamed) = tokio::join!(
        store.day_totals(date),
        stream_partners(context, date, &work_dir, created_at, progress)
    );
    let balanced = totals
        .map_err(ClearingError::from)
        .and_then(|totals| check_balanced(date, &totals).map(|()| totals));
    let (totals, (mut files, positions)) = match (balanced, streamed) {
        (Ok(totals), Ok(streamed)) => (totals, streamed),
        (Err(error), _) | (Ok(_), Err(error)) => {
            let _ = std::fs::remove_dir_all(&work_dir);
            if newly_closed && matches!(error, ClearingError::Unbalanced { .. }) {
                // Refuse to close a day that does not balance.
                store.reopen_day(date).await?;
            }
            return Err(error);
        }
    };
    let positions = all_positions(date, positions, &totals)?;
    files.push(write_positions(&work_dir, date, &positions)?);
    // Settlement instructions sit beside the clearing files, under the same
    // signed manifest.
    files.extend(write_settlement(
        context, date, created_at, &work_dir, &positions,
    )?);
    files.sort_by(|left, right| left.name.cmp(&right.name));
    let mut written = sign_and_publish(context, date, created_at, &work_dir, files).await?;
    check_registry(store.as_ref(), date, &written).await?;

    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io_error(&final_dir))?;
    }
    std::fs::rename(&work_dir, &final_dir).map_err(io_error(&final_dir))?;
    written.sort();
    Ok(DayRun {
        business_date: date,
        files: written.iter().map(|name| final_dir.join(name)).collect(),
        positions,
    })
}

/// Streams the partners' lines of a closed day into their files, one
/// partner after another; returns the files and the partners' positions.
async fn stream_partners(
    context: &ClearingContext,
    date: NaiveDate,
    work_dir: &Path,
    created_at: DateTime<Utc>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<(Vec<FileRecord>, Vec<NetPosition>), ClearingError> {
    let partners: HashMap<&str, &PartnerConfig> = context
        .partners
        .iter()
        .map(|partner| (partner.id.as_str(), partner))
        .collect();
    let mut files = Vec::new();
    let mut positions = Vec::new();
    let mut current: Option<PartnerFiles> = None;
    let mut report = Progress {
        items: 0,
        partners_done: 0,
    };
    let mut lines = context.store.day_lines(date);
    while let Some(line) = next_ready(&mut lines).await {
        let line = line?;
        if current
            .as_ref()
            .is_none_or(|files| files.partner.id != line.party)
        {
            if let Some(done) = current.take() {
                let (done_files, done_positions) = done.finish()?;
                files.extend(done_files);
                positions.extend(done_positions);
                report.partners_done += 1;
            }
            let partner = partners.get(line.party.as_str()).map_or_else(
                || {
                    let currency = Currency::from_code(&line.currency)
                        .or_else(|| Currency::from_code("TWD"))
                        .expect("TWD is known");
                    PartnerConfig::unconfigured(&line.party, currency)
                },
                |partner| (*partner).clone(),
            );
            current = Some(PartnerFiles::open(work_dir, partner, date, created_at)?);
        }
        let partner_files = current.as_mut().expect("opened above");
        let item = item_of(line, &partner_files.partner, date);
        partner_files.add(&item)?;
        report.items += 1;
        if report.items.is_multiple_of(PROGRESS_EVERY_ITEMS) {
            progress(report);
        }
    }
    drop(lines);
    if let Some(done) = current.take() {
        let (done_files, done_positions) = done.finish()?;
        files.extend(done_files);
        positions.extend(done_positions);
        report.partners_done += 1;
    }
    progress(report);
    Ok((files, positions))
}

/// Writes the day's settlement instructions (NACHA for USD, fixed width for
/// the other currencies) when `[settlement]` is configured.
fn write_settlement(
    context: &ClearingContext,
    date: NaiveDate,
    created_at: DateTime<Utc>,
    dir: &Path,
    positions: &[NetPosition],
) -> Result<Vec<FileRecord>, ClearingError> {
    if context.settlement.ach.is_none() && context.settlement.accounts.is_empty() {
        return Ok(Vec::new());
    }
    let run = crate::clearing::settle::SettleRun {
        business_date: date,
        created_at: created_at.naive_utc(),
        run_sequence: 1,
        config: &context.settlement,
        partners: &context.partners,
    };
    let paths = crate::clearing::settle::write_day(&run, positions, dir)?;
    paths
        .iter()
        .map(|path| {
            let (sha256, size_bytes) = sign::hash_file(path).map_err(io_error(path))?;
            Ok(FileRecord {
                name: path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .expect("settlement files have ASCII names")
                    .to_owned(),
                size_bytes,
                sha256,
            })
        })
        .collect()
}

/// The cursor's next row, polled without registering for a wake-up per
/// row: when none is ready, sleep [`EMPTY_CURSOR_PAUSE`] and look again.
async fn next_ready<S: futures::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    use futures::FutureExt as _;
    loop {
        if let Some(item) = stream.next().now_or_never() {
            return item;
        }
        tokio::time::sleep(EMPTY_CURSOR_PAUSE).await;
    }
}

/// Adds the positions of posgate's own parties (stores and the chain, which
/// collects the partners' clearing fees) and checks the partners' streamed
/// totals against the day's totals and that everything nets to zero per currency.
fn all_positions(
    date: NaiveDate,
    mut positions: Vec<NetPosition>,
    totals: &[PartyTotal],
) -> Result<Vec<NetPosition>, ClearingError> {
    let invariant = |detail: String| ClearingError::Invariant { date, detail };
    let streamed: HashMap<(&str, &str), &NetPosition> = positions
        .iter()
        .map(|position| {
            (
                (position.partner.as_str(), position.currency.as_str()),
                position,
            )
        })
        .collect();
    let mut fees_by_currency: BTreeMap<String, i64> = BTreeMap::new();
    for position in &positions {
        *fees_by_currency
            .entry(position.currency.clone())
            .or_insert(0) += position.fees_minor;
    }
    let mut own = Vec::new();
    for total in totals {
        if is_partner(&total.party) {
            let Some(position) = streamed.get(&(total.party.as_str(), total.currency.as_str()))
            else {
                return Err(invariant(format!(
                    "{} has {} {} in the day's totals but no clearing items",
                    total.party, total.amount_minor, total.currency
                )));
            };
            if position.gross_minor != total.amount_minor || position.items != line_count(total) {
                return Err(invariant(format!(
                    "{} {}: files carry {} items for {}, the day's lines are {} for {}",
                    total.party,
                    total.currency,
                    position.items,
                    position.gross_minor,
                    total.lines,
                    total.amount_minor
                )));
            }
            continue;
        }
        let fees = if crate::model::Party::parse(&total.party) == Ok(crate::model::Party::Chain) {
            fees_by_currency.remove(&total.currency).unwrap_or(0)
        } else {
            0
        };
        own.push(NetPosition {
            partner: total.party.clone(),
            currency: total.currency.clone(),
            gross_minor: total.amount_minor,
            fees_minor: -fees,
            net_minor: total.amount_minor + fees,
            items: line_count(total),
        });
    }
    // Fees in a currency where the chain has no line of its own.
    for (currency, fees) in fees_by_currency {
        if fees != 0 {
            own.push(NetPosition {
                partner: crate::model::Party::Chain.to_string(),
                currency,
                gross_minor: 0,
                fees_minor: -fees,
                net_minor: fees,
                items: 0,
            });
        }
    }
    if streamed.len() != positions.len() {
        return Err(invariant(
            "a partner appears twice in the stream".to_owned(),
        ));
    }
    positions.extend(own);
    positions.sort_by(|left, right| {
        (left.partner.as_str(), left.currency.as_str())
            .cmp(&(right.partner.as_str(), right.currency.as_str()))
    });
    let mut nets: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for position in &positions {
        let sums = nets.entry(position.currency.as_str()).or_insert((0, 0));
        sums.0 += position.gross_minor;
        sums.1 += position.net_minor;
    }
    if let Some((currency, (gross, net))) = nets
        .iter()
        .find(|(_, (gross, net))| *gross != 0 || *net != 0)
    {
        return Err(invariant(format!(
            "positions in {currency} sum to gross {gross}, net {net}; both must be zero"
        )));
    }
    Ok(positions)
}

/// The net positions file `POSITIONS_YYYYMMDD.csv`.
fn write_positions(
    dir: &Path,
    date: NaiveDate,
    positions: &[NetPosition],
) -> Result<FileRecord, ClearingError> {
    let mut file =
        HashedFile::create(dir, format!("POSITIONS_{}.csv", layout::compact_date(date)))?;
    file.write(b"party,currency,items,gross_minor,fees_minor,net_minor\n")?;
    for position in positions {
        file.write(
            format!(
                "{},{},{},{},{},{}\n",
                position.partner,
                position.currency,
                position.items,
                position.gross_minor,
                position.fees_minor,
                position.net_minor
            )
            .as_bytes(),
        )?;
    }
    file.finish()
}

/// Signs every data file and the manifest; returns every file name written.
async fn sign_and_publish(
    context: &ClearingContext,
    date: NaiveDate,
    created_at: DateTime<Utc>,
    dir: &Path,
    files: Vec<FileRecord>,
) -> Result<Vec<String>, ClearingError> {
    let hsm_error = |source| ClearingError::Hsm {
        label: context.signing_key.clone(),
        source,
    };
    let mut names = Vec::with_capacity(files.len() * 2 + 2);
    for file in &files {
        let signature = sign::sign_file(context.hsm.as_ref(), &context.signing_key, file)
            .await
            .map_err(hsm_error)?;
        let name = format!("{}.sig", file.name);
        let path = dir.join(&name);
        std::fs::write(&path, signature.to_line()).map_err(io_error(&path))?;
        names.push(file.name.clone());
        names.push(name);
    }
    let manifest = sign::manifest(date, created_at, &files);
    let manifest_name = sign::manifest_name(date);
    let record = FileRecord {
        name: manifest_name.clone(),
        size_bytes: manifest.len() as i64,
        sha256: hex::encode(Sha256::digest(&manifest)),
    };
    let path = dir.join(&manifest_name);
    std::fs::write(&path, &manifest).map_err(io_error(&path))?;
    let signature = sign::sign_file(context.hsm.as_ref(), &context.signing_key, &record)
        .await
        .map_err(hsm_error)?;
    let sig_name = format!("{manifest_name}.sig");
    let path = dir.join(&sig_name);
    std::fs::write(&path, signature.to_line()).map_err(io_error(&path))?;
    names.push(manifest_name);
    names.push(sig_name);
    // The registry records the data files and the manifest (signatures follow from them).
    let mut registry = files;
    registry.push(record);
    check_or_register(context.store.as_ref(), date, &registry).await?;
    Ok(names)
}

async fn check_or_register(
    store: &dyn Database,
    date: NaiveDate,
    files: &[FileRecord],
) -> Result<(), ClearingError> {
    let registered = store.day_files(date).await?;
    for file in files {
        if let Some(old) = registered.iter().find(|old| old.name == file.name)
            && old != file
        {
            return Err(ClearingError::ClosedDayChanged {
                date,
                name: file.name.clone(),
                registered: old.sha256.clone(),
                now: file.sha256.clone(),
            });
        }
    }
    store.register_files(date, files).await?;
    Ok(())
}

/// After publishing: the registry must list exactly what was written.
async fn check_registry(
    store: &dyn Database,
    date: NaiveDate,
    written: &[String],
) -> Result<(), ClearingError> {
    let registered = store.day_files(date).await?;
    if let Some(missing) = registered.iter().find(|file| !written.contains(&file.name)) {
        return Err(ClearingError::ClosedDayChanged {
            date,
            name: missing.name.clone(),
            registered: missing.sha256.clone(),
            now: "no such file".to_owned(),
        });
    }
    Ok(())
}

/// A party total's line count (a SQL count, never negative).
fn line_count(total: &PartyTotal) -> u64 {
    u64::try_from(total.lines).expect("a count is not negative")
}
