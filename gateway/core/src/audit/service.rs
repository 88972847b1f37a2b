//! The audit application service: what `AuditService` asks of the audit
//! domain, one function per RPC. It checks the domain rules of the caller
//! and the filter, pages over the chain, verifies, limits exports per
//! auditor, and appends the audit-read entry every call leaves in the chain
//! before it answers. The API side keeps the wire: mTLS identity, admission,
//! parsing protobuf and rendering the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use posgate_hsm::{HsmError, KeyRef, Pan};
use serde_json::{Map, Value, json};

use super::Audit;
use super::chain::canonical_time;
use super::page_token::{self, Cursor, TokenError};
use super::signing_keys::{self, SigningKeyVersion};
use super::verify::{self, Report, VerifyError};
use crate::model::FieldViolation;
use crate::model::chain::{ChainEntry, Checkpoint, EntryContent, EntryType};
use crate::model::ids::is_valid_id;
use crate::model::money::{Currency, MAX_AMOUNT_MINOR};
use crate::ports::db::StoreError;
use crate::ports::db::audit::{KindMatch, SearchFilter, TransactionRow};

/// Rows per page when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Most rows per page (audit.proto).
pub const MAX_PAGE_SIZE: i32 = 1000;
/// Most ids in one repeated filter field (audit.proto).
pub const MAX_FILTER_IDS: usize = 100;
/// Longest auditor id (audit.proto).
pub const MAX_AUDITOR_ID_LEN: usize = 64;
/// Longest purpose (audit.proto).
pub const MAX_PURPOSE_LEN: usize = 200;
/// Longest client request id (audit.proto).
pub const MAX_CLIENT_REQUEST_ID_LEN: usize = 255;
/// How far ahead of the gateway an auditor's clock may run.
pub const MAX_CLIENT_CLOCK_AHEAD: chrono::Duration = chrono::Duration::hours(24);
/// Rows an export reads per round trip: bounds its memory.
pub const EXPORT_PAGE_ROWS: i64 = 1000;
/// Amount bounds of a filter: 0 to 1e12 - 1 (audit.proto).
const MAX_AMOUNT_MINOR_EXCLUSIVE: i64 = 1_000_000_000_000;
const _: () = assert!(MAX_AMOUNT_MINOR < MAX_AMOUNT_MINOR_EXCLUSIVE as u64 + 1);

/// Why an audit call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The request breaks a rule; each violation names its field.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// The chain has no signed checkpoint to verify or export against yet.
    #[error("the audit chain has no signed checkpoint yet; try again after the next seal")]
    NoCheckpoint,
    #[error("no transaction {transaction_id}")]
    NotFound { transaction_id: String },
    /// The page token was refused (or the HSM failed checking it).
    #[error(transparent)]
    PageToken(#[from] TokenError),
    /// The auditor runs as many exports as allowed already.
    #[error("auditor {auditor_id} already runs {max} exports; wait for one to finish")]
    ExportsBusy { auditor_id: String, max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
}

impl From<VerifyError> for AuditError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Store(error) => Self::Store(error),
            VerifyError::Hsm(error) => Self::Hsm(error),
        }
    }
}

fn violation(field: &str, description: impl Into<String>) -> AuditError {
    AuditError::Invalid(vec![FieldViolation::new(field, description)])
}

fn printable_ascii(value: &str) -> bool {
    value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The client's timestamp as the request gave it.
#[derive(Debug, Clone, Copy)]
pub enum ClientTimestamp {
    Missing,
    Invalid,
    At(DateTime<Utc>),
}

/// The `AuditContext` of a request, read from the wire.
#[derive(Debug, Clone)]
pub struct CallerInput {
    pub auditor_id: String,
    pub client_request_id: String,
    pub purpose: String,
    pub client_timestamp: ClientTimestamp,
}

/// Who asked and why, checked.
#[derive(Debug, Clone)]
pub struct Caller {
    pub auditor_id: String,
    pub client_request_id: String,
    pub purpose: String,
    pub client_timestamp: DateTime<Utc>,
    /// The authenticated identity the audit-read entry names as its actor.
    pub actor: String,
}

/// Checks an `AuditContext`, adding violations on "context.*"; `actor` is
/// the identity the API authenticated for `input.auditor_id`.
pub fn check_caller(
    violations: &mut Vec<FieldViolation>,
    input: CallerInput,
    actor: impl FnOnce(&str) -> String,
    now: DateTime<Utc>,
) -> Option<Caller> {
    let mut add = |field: &str, description: String| {
        violations.push(FieldViolation::new(field, description));
    };
    let id = &input.auditor_id;
    if id.is_empty() {
        add("context.auditor_id", "is required".to_owned());
    } else if id.len() > MAX_AUDITOR_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        add(
            "context.auditor_id",
            "must be 1-64 characters of A-Z a-z 0-9 _ . -".to_owned(),
        );
    }
    let key = &input.client_request_id;
    if key.is_empty() {
        add("context.client_request_id", "is required".to_owned());
    } else if key.len() > MAX_CLIENT_REQUEST_ID_LEN || !printable_ascii(key) {
        add(
            "context.client_request_id",
            "must be 1-255 printable ASCII characters without spaces".to_owned(),
        );
    }
    let client_timestamp = match input.client_timestamp {
        ClientTimestamp::Missing => {
            add("context.client_timestamp", "is required".to_owned());
            None
        }
        ClientTimestamp::Invalid => {
            add(
                "context.client_timestamp",
                "is not a valid timestamp".to_owned(),
            );
            None
        }
        ClientTimestamp::At(at) if at > now + MAX_CLIENT_CLOCK_AHEAD => {
            add(
                "context.client_timestamp",
                "is more than 24 hours ahead of the gateway's clock".to_owned(),
            );
            None
        }
        ClientTimestamp::At(at) => Some(at),
    };
    let purpose = &input.purpose;
    let length = purpose.chars().count();
    if purpose.trim().is_empty() {
        add("context.purpose", "is required".to_owned());
    } else if length > MAX_PURPOSE_LEN {
        add(
            "context.purpose",
            format!("is {length} characters; at most {MAX_PURPOSE_LEN} are allowed"),
        );
    } else if purpose.chars().any(char::is_control) {
        add(
            "context.purpose",
            "must not contain control characters".to_owned(),
        );
    }
    Some(Caller {
        actor: actor(&input.auditor_id),
        auditor_id: input.auditor_id,
        client_request_id: input.client_request_id,
        purpose: input.purpose,
        client_timestamp: client_timestamp?,
    })
}

/// A `TransactionFilter` read from the wire: timestamps, dates, types and
/// statuses parsed (the API reports those that do not parse), the rest as
/// given.
#[derive(Debug, Clone, Default)]
pub struct FilterInput {
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub business_date_from: Option<NaiveDate>,
    pub business_date_to: Option<NaiveDate>,
    pub store_ids: Vec<String>,
    pub terminal_ids: Vec<String>,
    pub partner_ids: Vec<String>,
    pub kinds: Vec<KindMatch>,
    pub statuses: Vec<&'static str>,
    /// The filter asks only for types or statuses posgate never records.
    pub match_nothing: bool,
    /// `(amount_minor, currency)` of each bound given.
    pub amount_min: Option<(i64, String)>,
    pub amount_max: Option<(i64, String)>,
    pub client_request_id: String,
    pub pan: String,
}

/// A checked filter: store terms, and the PAN until it is fingerprinted.
#[derive(Debug, Default)]
pub struct CheckedFilter {
    pub filter: SearchFilter,
    pub pan: Option<Pan>,
}

fn check_ids(
    violations: &mut Vec<FieldViolation>,
    field: &str,
    ids: &[String],
    valid: impl Fn(&str) -> bool,
    rule: &str,
) {
    if ids.len() > MAX_FILTER_IDS {
        violations.push(FieldViolation::new(
            field,
            format!("has {} entries; at most 100", ids.len()),
        ));
        return;
    }
    for (index, id) in ids.iter().enumerate() {
        if !valid(id) {
            violations.push(FieldViolation::new(format!("{field}[{index}]"), rule));
        }
    }
}

fn check_money(
    violations: &mut Vec<FieldViolation>,
    field: &str,
    money: Option<(i64, String)>,
) -> Option<(i64, String)> {
    let (amount_minor, currency) = money?;
    let mut ok = true;
    if !(0..MAX_AMOUNT_MINOR_EXCLUSIVE).contains(&amount_minor) {
        violations.push(FieldViolation::new(
            format!("{field}.amount_minor"),
            "must be 0 to 999999999999",
        ));
        ok = false;
    }
    if Currency::from_code(&currency).is_none() {
        violations.push(FieldViolation::new(
            format!("{field}.currency"),
            "must be an ISO 4217 code posgate knows",
        ));
        ok = false;
    }
    ok.then_some((amount_minor, currency))
}

/// Reads a filter's PAN: digits, a valid length and check digit.
fn check_pan(violations: &mut Vec<FieldViolation>, pan: &str) -> Option<Pan> {
    if pan.is_empty() {
        None
    } else if !pan.bytes().all(|b| b.is_ascii_digit()) {
        violations.push(FieldViolation::new("filter.pan", "must be 12-19 digits"));
        None
    } else {
        match Pan::parse(pan) {
            Ok(pan) => Some(pan),
            Err(error) => {
                violations.push(FieldViolation::new("filter.pan", error.to_string()));
                None
            }
        }
    }
}

/// Checks a filter's domain rules, adding violations on "filter.*".
pub fn check_filter(violations: &mut Vec<FieldViolation>, input: FilterInput) -> CheckedFilter {
    let add = |violations: &mut Vec<FieldViolation>, field: &str, description: &str| {
        violations.push(FieldViolation::new(field, description));
    };
    if let (Some(from), Some(to)) = (input.created_from, input.created_to)
        && to <= from
    {
        add(
            violations,
            "filter.created_to",
            "must be after filter.created_from",
        );
    }
    if let (Some(from), Some(to)) = (input.business_date_from, input.business_date_to)
        && to < from
    {
        add(
            violations,
            "filter.business_date_to",
            "must not be before filter.business_date_from",
        );
    }
    let id_rule = "must be 1-32 characters of A-Z a-z 0-9 _ -";
    check_ids(
        violations,
        "filter.store_ids",
        &input.store_ids,
        is_valid_id,
        id_rule,
    );
    check_ids(
        violations,
        "filter.terminal_ids",
        &input.terminal_ids,
        is_valid_id,
        id_rule,
    );
    check_ids(
        violations,
        "filter.partner_ids",
        &input.partner_ids,
        |id| !id.is_empty() && id.chars().count() <= 32 && !id.chars().any(char::is_control),
        "must be 1-32 characters",
    );
    let amount_min = check_money(violations, "filter.amount_min", input.amount_min);
    let amount_max = check_money(violations, "filter.amount_max", input.amount_max);
    if let (Some((min, min_currency)), Some((max, max_currency))) = (&amount_min, &amount_max) {
        if min_currency != max_currency {
            add(
                violations,
                "filter.amount_max.currency",
                "must be the currency of filter.amount_min",
            );
        } else if max < min {
            add(
                violations,
                "filter.amount_max.amount_minor",
                "must not be less than filter.amount_min.amount_minor",
            );
        }
    }
    let mut client_request_id = None;
    if !input.client_request_id.is_empty() {
        if input.client_request_id.len() > MAX_CLIENT_REQUEST_ID_LEN
            || !printable_ascii(&input.client_request_id)
        {
            add(
                violations,
                "filter.client_request_id",
                "must be 1-255 printable ASCII characters without spaces",
            );
        }
        client_request_id = Some(input.client_request_id);
    }
    let pan = check_pan(violations, &input.pan);
    CheckedFilter {
        filter: SearchFilter {
            created_from: input.created_from,
            created_to: input.created_to,
            business_date_from: input.business_date_from,
            business_date_to: input.business_date_to,
            store_ids: input.store_ids,
            terminal_ids: input.terminal_ids,
            partner_ids: input.partner_ids,
            kinds: input.kinds,
            statuses: input.statuses,
            amount_min,
            amount_max,
            client_request_id,
            pan_fingerprints: None,
            match_nothing: input.match_nothing,
        },
        pan,
    }
}

/// Checks a requested page size: 0 (meaning [`DEFAULT_PAGE_SIZE`]) to
/// [`MAX_PAGE_SIZE`].
pub fn check_page_size(violations: &mut Vec<FieldViolation>, page_size: i32) {
    if !(0..=MAX_PAGE_SIZE).contains(&page_size) {
        violations.push(FieldViolation::new(
            "page_size",
            "must be 0 (meaning 100) to 1000",
        ));
    }
}

/// The PAN's fingerprints under every version of the fingerprint key; the
/// PAN is dropped (zeroized) when this returns.
async fn fingerprints(audit: &Audit, pan: Pan) -> Result<Vec<String>, HsmError> {
    let label = &audit.pan_fingerprint_key;
    let latest = audit.hsm.key_info(&KeyRef::latest(label)).await?;
    let mut out = Vec::new();
    for version in 1..=latest.version {
        match pan
            .fingerprint(audit.hsm.as_ref(), &KeyRef::version(label, version))
            .await
        {
            Ok(fingerprint) => out.push(fingerprint.hex),
            // A retired version that was deleted fingerprints nothing stored.
            Err(HsmError::UnknownVersion { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(out)
}

/// Fingerprints the filter's PAN into its search terms; returns the filter
/// as the audit-read entry records it: `filter_record` (the request's set
/// fields) with the PAN as its masked form and fingerprints.
async fn resolve_pan(
    audit: &Audit,
    checked: CheckedFilter,
    mut filter_record: Option<Map<String, Value>>,
) -> Result<(SearchFilter, Value), AuditError> {
    let CheckedFilter { mut filter, pan } = checked;
    let masked = pan.as_ref().map(Pan::masked);
    if let Some(pan) = pan {
        filter.pan_fingerprints = Some(fingerprints(audit, pan).await?);
    }
    if let (Some(record), Some(masked)) = (filter_record.as_mut(), masked) {
        let prints = filter.pan_fingerprints.clone().unwrap_or_default();
        record.insert(
            "pan".to_owned(),
            json!({"masked": masked, "fingerprints": prints}),
        );
    }
    let record = filter_record.map_or_else(|| json!({}), Value::Object);
    Ok((filter, record))
}

/// Appends the audit-read entry of a call.
async fn record_read(
    audit: &Audit,
    caller: &Caller,
    rpc: &str,
    request: Value,
    row_count: i64,
    now: DateTime<Utc>,
) -> Result<i64, AuditError> {
    let detail = json!({
        "client_request_id": caller.client_request_id,
        "client_timestamp": canonical_time(caller.client_timestamp),
        "purpose": caller.purpose,
        "request": request,
        "row_count": row_count,
    });
    Ok(audit
        .db
        .append_audit_read(EntryContent {
            entry_type: EntryType::AuditRead,
            transaction_id: None,
            event_type: rpc.to_owned(),
            from_status: None,
            to_status: None,
            actor: caller.actor.clone(),
            detail: detail.to_string(),
            occurred_at: canonical_time(now),
        })
        .await?)
}

/// A `SearchTransactions` request, checked.
#[derive(Debug)]
pub struct SearchQuery {
    pub filter: CheckedFilter,
    /// The request's filter (set fields only) as the audit-read entry
    /// records it; `None` when the request had no filter.
    pub filter_record: Option<Map<String, Value>>,
    /// The filter as the page token binds it (the API's encoding, no PAN).
    pub encoded_filter: Vec<u8>,
    /// As requested: 0 means [`DEFAULT_PAGE_SIZE`].
    pub page_size: i32,
    /// Empty for the first page.
    pub page_token: String,
}

/// One page of a search.
#[derive(Debug)]
pub struct SearchPage {
    pub rows: Vec<TransactionRow>,
    /// Empty on the last page.
    pub next_page_token: String,
    /// The chain position the search is pinned to.
    pub as_of_sequence: i64,
}

/// `SearchTransactions`: one page of the transactions matching the filter,
/// as of the chain position of the first page.
pub async fn search(
    audit: &Audit,
    caller: &Caller,
    query: SearchQuery,
    now: DateTime<Utc>,
) -> Result<SearchPage, AuditError> {
    let (filter, filter_record) = resolve_pan(audit, query.filter, query.filter_record).await?;
    let prints = filter.pan_fingerprints.clone().unwrap_or_default();
    let digest = page_token::filter_digest(&query.encoded_filter, &prints);
    let cursor = if query.page_token.is_empty() {
        let (head, _) = audit.db.chain_head().await?;
        Cursor {
            as_of: head,
            after: 0,
        }
    } else {
        page_token::decode(
            audit.hsm.as_ref(),
            &audit.config.page_token_key,
            &query.page_token,
            &digest,
        )
        .await?
    };
    let page_size = if query.page_size == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        i64::from(query.page_size)
    };
    let mut rows = audit
        .db
        .search_transactions(&filter, cursor.as_of, cursor.after, page_size + 1)
        .await?;
    let more = rows.len() > usize::try_from(page_size).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => {
            page_token::encode(
                audit.hsm.as_ref(),
                &audit.config.page_token_key,
                Cursor {
                    as_of: cursor.as_of,
                    after: last.first_sequence,
                },
                &digest,
            )
            .await?
        }
        _ => String::new(),
    };
    let record = json!({
        "filter": filter_record,
        "page_size": query.page_size,
        "page_token": !query.page_token.is_empty(),
        "as_of_sequence": cursor.as_of,
    });
    let row_count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    record_read(audit, caller, "SearchTransactions", record, row_count, now).await?;
    Ok(SearchPage {
        rows,
        next_page_token,
        as_of_sequence: cursor.as_of,
    })
}

/// A transaction and its chain entries, as of the chain head.
#[derive(Debug)]
pub struct History {
    pub row: TransactionRow,
    pub entries: Vec<ChainEntry>,
}

/// `GetTransactionHistory`: the transaction and its events up to the chain
/// head. The read is recorded even when there is no such transaction.
pub async fn history(
    audit: &Audit,
    caller: &Caller,
    transaction_id: &str,
    now: DateTime<Utc>,
) -> Result<History, AuditError> {
    let (head, _) = audit.db.chain_head().await?;
    let row = audit.db.transaction_row(transaction_id, head).await?;
    let entries = match &row {
        Some(_) => audit.db.transaction_entries(transaction_id).await?,
        None => Vec::new(),
    };
    let record = json!({"transaction_id": transaction_id});
    let row_count = i64::from(row.is_some());
    record_read(
        audit,
        caller,
        "GetTransactionHistory",
        record,
        row_count,
        now,
    )
    .await?;
    let row = row.ok_or_else(|| AuditError::NotFound {
        transaction_id: transaction_id.to_owned(),
    })?;
    Ok(History {
        row,
        entries: entries
            .into_iter()
            .filter(|entry| entry.sequence <= head)
            .collect(),
    })
}

/// The outcome of `VerifyChain`.
#[derive(Debug)]
pub struct ChainCheck {
    pub report: Report,
    /// The chain head when the call began.
    pub head: i64,
}

/// `VerifyChain`: verifies `from..=to` (`to` 0: up to the latest
/// checkpoint; `from` below 1 starts at 1), at most
/// `max_verify_range` entries. Sequences are not negative (checked by the API).
pub async fn verify_chain(
    audit: &Audit,
    caller: &Caller,
    from_sequence: i64,
    to_sequence: i64,
    now: DateTime<Utc>,
) -> Result<ChainCheck, AuditError> {
    let (head, _) = audit.db.chain_head().await?;
    let to = if to_sequence == 0 {
        audit
            .db
            .latest_checkpoint(head)
            .await?
            .ok_or(AuditError::NoCheckpoint)?
            .sequence
    } else {
        to_sequence
    };
    let from = from_sequence.max(1);
    if to > head {
        return Err(violation(
            "to_sequence",
            format!("is beyond the chain head ({head})"),
        ));
    } else if from > to {
        return Err(violation(
            "from_sequence",
            format!("is after to_sequence ({to})"),
        ));
    } else if to - from + 1 > audit.config.max_verify_range {
        return Err(violation(
            "to_sequence",
            format!(
                "the range is wider than {} entries, the most one call verifies",
                audit.config.max_verify_range
            ),
        ));
    }
    let report = verify::verify(audit, from, to).await?;
    let record = json!({
        "from_sequence": from_sequence,
        "to_sequence": to_sequence,
        "checked_from_sequence": report.checked_from,
        "checked_to_sequence": report.checked_to,
        "ok": report.failure.is_none(),
        "first_bad_sequence": report.failure.as_ref().map_or(0, |f| f.sequence),
    });
    record_read(
        audit,
        caller,
        "VerifyChain",
        record,
        report.checked_count,
        now,
    )
    .await?;
    Ok(ChainCheck { report, head })
}

/// Exports running per auditor, bounded by `max_concurrent_exports`.
#[derive(Debug, Clone, Default)]
pub struct ExportSlots {
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl ExportSlots {
    fn take(&self, auditor_id: &str, max: usize) -> Result<ExportSlot, AuditError> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = running.entry(auditor_id.to_owned()).or_insert(0);
        if *count >= max {
            return Err(AuditError::ExportsBusy {
                auditor_id: auditor_id.to_owned(),
                max,
            });
        }
        *count += 1;
        Ok(ExportSlot {
            running: Arc::clone(&self.running),
            auditor_id: auditor_id.to_owned(),
        })
    }
}

/// One export slot of an auditor, released on drop.
#[derive(Debug)]
struct ExportSlot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    auditor_id: String,
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = running.get_mut(&self.auditor_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.auditor_id);
            }
        }
    }
}

/// An `ExportTransactions` request, checked.
#[derive(Debug)]
pub struct ExportQuery {
    pub filter: CheckedFilter,
    /// See [`SearchQuery::filter_record`].
    pub filter_record: Option<Map<String, Value>>,
    /// The format's name as the audit-read entry records it.
    pub format: String,
    /// 0: the latest checkpoint.
    pub checkpoint_sequence: i64,
}

/// A running export: pages over the matching rows as of its checkpoint,
/// holding the auditor's export slot until it is dropped.
#[derive(Debug)]
pub struct Export {
    pub checkpoint: Checkpoint,
    filter: SearchFilter,
    record: Value,
    after: i64,
    _slot: ExportSlot,
}

/// `ExportTransactions`, first half: picks the checkpoint, fingerprints the
/// PAN and takes one of the auditor's export slots.
pub async fn start_export(
    audit: &Audit,
    slots: &ExportSlots,
    caller: &Caller,
    query: ExportQuery,
) -> Result<Export, AuditError> {
    let checkpoint = if query.checkpoint_sequence == 0 {
        let (head, _) = audit.db.chain_head().await?;
        audit
            .db
            .latest_checkpoint(head)
            .await?
            .ok_or(AuditError::NoCheckpoint)?
    } else {
        audit
            .db
            .latest_checkpoint(query.checkpoint_sequence)
            .await?
            .filter(|checkpoint| checkpoint.sequence == query.checkpoint_sequence)
            .ok_or_else(|| {
                violation("checkpoint_sequence", "is not the sequence of a checkpoint")
            })?
    };
    let (filter, filter_record) = resolve_pan(audit, query.filter, query.filter_record).await?;
    let slot = slots.take(&caller.auditor_id, audit.config.max_concurrent_exports)?;
    let record = json!({
        "filter": filter_record,
        "format": query.format,
        "checkpoint_sequence": checkpoint.sequence,
    });
    Ok(Export {
        checkpoint,
        filter,
        record,
        after: 0,
        _slot: slot,
    })
}

impl Export {
    /// The next [`EXPORT_PAGE_ROWS`] rows at most; empty when done.
    pub async fn next_page(&mut self, audit: &Audit) -> Result<Vec<TransactionRow>, StoreError> {
        let rows = audit
            .db
            .search_transactions(
                &self.filter,
                self.checkpoint.sequence,
                self.after,
                EXPORT_PAGE_ROWS,
            )
            .await?;
        if let Some(last) = rows.last() {
            self.after = last.first_sequence;
        }
        Ok(rows)
    }

    /// Records the export's audit read once every row was sent.
    pub async fn finish(
        self,
        audit: &Audit,
        caller: &Caller,
        row_count: i64,
        now: DateTime<Utc>,
    ) -> Result<Checkpoint, AuditError> {
        record_read(
            audit,
            caller,
            "ExportTransactions",
            self.record,
            row_count,
            now,
        )
        .await?;
        Ok(self.checkpoint)
    }
}

/// What a signing key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    AuditCheckpoints,
    ClearingFiles,
}

/// `GetSigningKeys`: every kept version of the checkpoint key and of the
/// clearing key (`clearing_signing_key`), public halves only.
pub async fn signing_keys(
    audit: &Audit,
    caller: &Caller,
    clearing_signing_key: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(KeyPurpose, SigningKeyVersion)>, AuditError> {
    let mut keys = Vec::new();
    for (label, purpose) in [
        (
            audit.config.signing_key.as_str(),
            KeyPurpose::AuditCheckpoints,
        ),
        (clearing_signing_key, KeyPurpose::ClearingFiles),
    ] {
        let versions = signing_keys::versions(audit.hsm.as_ref(), Some(label)).await?;
        keys.extend(versions.into_iter().map(|version| (purpose, version)));
    }
    let row_count = i64::try_from(keys.len()).unwrap_or(i64::MAX);
    record_read(audit, caller, "GetSigningKeys", json!({}), row_count, now).await?;
    Ok(keys)
}
