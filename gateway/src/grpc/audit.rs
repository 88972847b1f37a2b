//! `AuditService`: auditors' read-only access to every transaction and to
//! the audit chain (see `proto/posgate/v1/audit.proto`). Auditor role only;
//! every call appends an audit-read entry to the chain before it answers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use posgate_hsm::{KeyRef, Pan};
use posgate_proto::v1 as pb;
use posgate_proto::v1::audit_service_server::{AuditService, AuditServiceServer};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Gateway;
use super::status::{from_hsm_error, from_store_error, invalid_argument, precondition, refused};
use super::validate::Violations;
use crate::access::{Identity, identity_of, require_auditor};
use crate::audit::seal::key_id;
use crate::audit::token::{self, Cursor, TokenError};
use crate::audit::verify::{self, Problem};
use crate::audit::{Audit, export, view};
use posgate_core::audit::chain::{Checkpoint, EntryContent, EntryType, canonical_time};
use posgate_core::model::ids::is_valid_id;
use posgate_core::model::money::{Currency, MAX_AMOUNT_MINOR};
use posgate_core::ports::db::audit::SearchFilter;

/// Rows per page when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Most rows per page (audit.proto).
pub const MAX_PAGE_SIZE: i32 = 1000;
/// Longest page token accepted (audit.proto).
pub const MAX_PAGE_TOKEN_LEN: usize = 1024;
/// Most ids in one repeated filter field (audit.proto).
pub const MAX_FILTER_IDS: usize = 100;
/// Longest auditor id (audit.proto).
pub const MAX_AUDITOR_ID_LEN: usize = 64;
/// Longest purpose (audit.proto).
pub const MAX_PURPOSE_LEN: usize = 200;
/// Export chunk size: the proto's maximum, so a file needs few messages.
pub const EXPORT_CHUNK_BYTES: usize = 65_536;
/// Rows an export reads per round trip: bounds its memory.
pub const EXPORT_PAGE_ROWS: i64 = 1000;
/// The rate-limit "store" of all auditors: not a valid store id, so it
/// never shares a bucket with a real store.
const AUDITORS_RATE_KEY: &str = "~auditors";
/// Export messages buffered ahead of a slow client.
const EXPORT_QUEUE: usize = 4;

/// The `AuditService` implementation.
#[derive(Debug, Clone)]
pub struct AuditApi {
    gateway: Arc<Gateway>,
    /// Exports running per auditor.
    exports: Arc<Mutex<HashMap<String, usize>>>,
}

impl AuditApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            exports: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn into_server(self) -> AuditServiceServer<Self> {
        AuditServiceServer::new(self)
    }

    fn audit(&self) -> Result<&Audit, Status> {
        self.gateway.audit.as_ref().ok_or_else(|| {
            precondition(
                "AUDIT_NOT_CONFIGURED",
                "audit",
                "AuditService needs an HSM ([hsm] in the configuration) to sign and verify the chain"
                    .to_owned(),
            )
        })
    }
}

/// Who asked and why, checked.
struct Caller {
    /// The in-flight slot of the call, held until it ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
    auditor_id: String,
    client_request_id: String,
    purpose: String,
    client_timestamp: DateTime<Utc>,
}

/// Refuses callers whose certificate is not an auditor's before anything else.
fn auditors_only<T>(request: &Request<T>) -> Result<(), Status> {
    match identity_of(request)? {
        Identity::Auditor { .. } => Ok(()),
        other => Err(Status::permission_denied(format!(
            "AuditService is for auditors only; the client certificate is {}",
            other.spiffe_id()
        ))),
    }
}

fn timestamp_of(at: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
}

fn printable_ascii(value: &str) -> bool {
    value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Checks the `AuditContext`, adding violations on "context.*".
fn check_context(
    violations: &mut Violations,
    context: Option<&pb::AuditContext>,
    now: DateTime<Utc>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Option<Caller> {
    let Some(context) = context else {
        violations.add("context", "is required");
        return None;
    };
    let id = &context.auditor_id;
    if id.is_empty() {
        violations.add("context.auditor_id", "is required");
    } else if id.len() > MAX_AUDITOR_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        violations.add(
            "context.auditor_id",
            "must be 1-64 characters of A-Z a-z 0-9 _ . -",
        );
    }
    let key = &context.client_request_id;
    if key.is_empty() {
        violations.add("context.client_request_id", "is required");
    } else if key.len() > 255 || !printable_ascii(key) {
        violations.add(
            "context.client_request_id",
            "must be 1-255 printable ASCII characters without spaces",
        );
    }
    let client_timestamp = match context.client_timestamp.as_ref().map(timestamp_of) {
        None => {
            violations.add("context.client_timestamp", "is required");
            None
        }
        Some(None) => {
            violations.add("context.client_timestamp", "is not a valid timestamp");
            None
        }
        Some(Some(at)) if at > now + chrono::Duration::hours(24) => {
            violations.add(
                "context.client_timestamp",
                "is more than 24 hours ahead of the gateway's clock",
            );
            None
        }
        Some(Some(at)) => Some(at),
    };
    violations.text("context.purpose", &context.purpose, MAX_PURPOSE_LEN);
    Some(Caller {
        _permit: permit,
        auditor_id: context.auditor_id.clone(),
        client_request_id: context.client_request_id.clone(),
        purpose: context.purpose.clone(),
        client_timestamp: client_timestamp?,
    })
}

/// A validated filter: store terms, the PAN (until fingerprinted) and the
/// audit-log form.
struct CheckedFilter {
    filter: SearchFilter,
    pan: Option<Pan>,
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    (text.len() == 10)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

fn check_ids(
    violations: &mut Violations,
    field: &str,
    ids: &[String],
    valid: impl Fn(&str) -> bool,
    rule: &str,
) {
    if ids.len() > MAX_FILTER_IDS {
        violations.add(field, format!("has {} entries; at most 100", ids.len()));
        return;
    }
    for (index, id) in ids.iter().enumerate() {
        if !valid(id) {
            violations.add(format!("{field}[{index}]"), rule);
        }
    }
}

fn check_money(
    violations: &mut Violations,
    field: &str,
    money: Option<&pb::Money>,
) -> Option<(i64, String)> {
    let money = money?;
    let mut ok = true;
    if !(0..MAX_AMOUNT_MINOR_EXCLUSIVE).contains(&money.amount_minor) {
        violations.add(format!("{field}.amount_minor"), "must be 0 to 999999999999");
        ok = false;
    }
    if Currency::from_code(&money.currency).is_none() {
        violations.add(
            format!("{field}.currency"),
            "must be an ISO 4217 code posgate knows",
        );
        ok = false;
    }
    ok.then(|| (money.amount_minor, money.currency.clone()))
}

/// Amount bounds of a filter: 0 to 1e12 - 1 (audit.proto).
const MAX_AMOUNT_MINOR_EXCLUSIVE: i64 = 1_000_000_000_000;
const _: () = assert!(MAX_AMOUNT_MINOR < MAX_AMOUNT_MINOR_EXCLUSIVE as u64 + 1);

/// Checks a `TransactionFilter`, adding violations on "filter.*".
#[allow(clippy::too_many_lines)]
fn check_filter(
    violations: &mut Violations,
    filter: Option<&pb::TransactionFilter>,
) -> CheckedFilter {
    let mut out = SearchFilter::default();
    let Some(filter) = filter else {
        return CheckedFilter {
            filter: out,
            pan: None,
        };
    };
    let mut time = |field: &str, at: Option<&prost_types::Timestamp>| {
        at.and_then(|at| {
            let parsed = timestamp_of(at);
            if parsed.is_none() {
                violations.add(field, "is not a valid timestamp");
            }
            parsed
        })
    };
    out.created_from = time("filter.created_from", filter.created_from.as_ref());
    out.created_to = time("filter.created_to", filter.created_to.as_ref());
    if let (Some(from), Some(to)) = (out.created_from, out.created_to)
        && to <= from
    {
        violations.add("filter.created_to", "must be after filter.created_from");
    }
    for (field, text, slot) in [
        (
            "filter.business_date_from",
            &filter.business_date_from,
            &mut out.business_date_from,
        ),
        (
            "filter.business_date_to",
            &filter.business_date_to,
            &mut out.business_date_to,
        ),
    ] {
        if !text.is_empty() {
            *slot = parse_date(text);
            if slot.is_none() {
                violations.add(field, "must be a date YYYY-MM-DD");
            }
        }
    }
    if let (Some(from), Some(to)) = (out.business_date_from, out.business_date_to)
        && to < from
    {
        violations.add(
            "filter.business_date_to",
            "must not be before filter.business_date_from",
        );
    }
    let id_rule = "must be 1-32 characters of A-Z a-z 0-9 _ -";
    check_ids(
        violations,
        "filter.store_ids",
        &filter.store_ids,
        is_valid_id,
        id_rule,
    );
    check_ids(
        violations,
        "filter.terminal_ids",
        &filter.terminal_ids,
        is_valid_id,
        id_rule,
    );
    check_ids(
        violations,
        "filter.partner_ids",
        &filter.partner_ids,
        |id| !id.is_empty() && id.chars().count() <= 32 && !id.chars().any(char::is_control),
        "must be 1-32 characters",
    );
    out.store_ids.clone_from(&filter.store_ids);
    out.terminal_ids.clone_from(&filter.terminal_ids);
    out.partner_ids.clone_from(&filter.partner_ids);
    check_types(violations, filter, &mut out);
    check_statuses(violations, filter, &mut out);
    out.amount_min = check_money(violations, "filter.amount_min", filter.amount_min.as_ref());
    out.amount_max = check_money(violations, "filter.amount_max", filter.amount_max.as_ref());
    if let (Some((min, min_currency)), Some((max, max_currency))) =
        (&out.amount_min, &out.amount_max)
    {
        if min_currency != max_currency {
            violations.add(
                "filter.amount_max.currency",
                "must be the currency of filter.amount_min",
            );
        } else if max < min {
            violations.add(
                "filter.amount_max.amount_minor",
                "must not be less than filter.amount_min.amount_minor",
            );
        }
    }
    if !filter.client_request_id.is_empty() {
        if filter.client_request_id.len() > 255 || !printable_ascii(&filter.client_request_id) {
            violations.add(
                "filter.client_request_id",
                "must be 1-255 printable ASCII characters without spaces",
            );
        }
        out.client_request_id = Some(filter.client_request_id.clone());
    }
    let pan = if filter.pan.is_empty() {
        None
    } else if !filter.pan.bytes().all(|b| b.is_ascii_digit()) {
        violations.add("filter.pan", "must be 12-19 digits");
        None
    } else {
        match Pan::parse(&filter.pan) {
            Ok(pan) => Some(pan),
            Err(error) => {
                violations.add("filter.pan", error.to_string());
                None
            }
        }
    };
    CheckedFilter { filter: out, pan }
}

fn check_types(
    violations: &mut Violations,
    filter: &pb::TransactionFilter,
    out: &mut SearchFilter,
) {
    if filter.types.len() > 8 {
        violations.add("filter.types", "has more than 8 entries");
        return;
    }
    let mut any_unknown_to_store = false;
    for (index, value) in filter.types.iter().enumerate() {
        let field = format!("filter.types[{index}]");
        match pb::TransactionType::try_from(*value) {
            Ok(pb::TransactionType::Unspecified) | Err(_) => {
                violations.add(field, "must be a transaction type, not UNSPECIFIED");
            }
            Ok(_) if filter.types[..index].contains(value) => {
                violations.add(field, "is listed twice");
            }
            Ok(kind) => match view::kind_match(kind) {
                Some(matching) => out.kinds.push(matching),
                None => any_unknown_to_store = true,
            },
        }
    }
    if any_unknown_to_store && out.kinds.is_empty() {
        out.match_nothing = true;
    }
}

fn check_statuses(
    violations: &mut Violations,
    filter: &pb::TransactionFilter,
    out: &mut SearchFilter,
) {
    if filter.statuses.len() > 12 {
        violations.add("filter.statuses", "has more than 12 entries");
        return;
    }
    let mut any_unknown_to_store = false;
    for (index, value) in filter.statuses.iter().enumerate() {
        let field = format!("filter.statuses[{index}]");
        match pb::TransactionStatus::try_from(*value) {
            Ok(pb::TransactionStatus::Unspecified) | Err(_) => {
                violations.add(field, "must be a transaction status, not UNSPECIFIED");
            }
            Ok(_) if filter.statuses[..index].contains(value) => {
                violations.add(field, "is listed twice");
            }
            Ok(status) => match view::store_status(status) {
                Some(name) => out.statuses.push(name),
                None => any_unknown_to_store = true,
            },
        }
    }
    if any_unknown_to_store && out.statuses.is_empty() {
        out.match_nothing = true;
    }
}

/// The PAN's fingerprints under every version of the fingerprint key; the
/// PAN is dropped (zeroized) when this returns.
async fn fingerprints(audit: &Audit, pan: Pan) -> Result<Vec<String>, Status> {
    let label = &audit.pan_fingerprint_key;
    let latest = audit
        .hsm
        .key_info(&KeyRef::latest(label))
        .await
        .map_err(|error| from_hsm_error(&error))?;
    let mut out = Vec::new();
    for version in 1..=latest.version {
        match pan
            .fingerprint(audit.hsm.as_ref(), &KeyRef::version(label, version))
            .await
        {
            Ok(fingerprint) => out.push(fingerprint.hex),
            // A retired version that was deleted fingerprints nothing stored.
            Err(posgate_hsm::HsmError::UnknownVersion { .. }) => {}
            Err(error) => return Err(from_hsm_error(&error)),
        }
    }
    Ok(out)
}

/// The filter as the audit-read entry records it: set fields only, the PAN
/// as its masked form and fingerprints.
fn filter_record(filter: Option<&pb::TransactionFilter>, pan: Option<(&str, &[String])>) -> Value {
    let Some(filter) = filter else {
        return json!({});
    };
    let mut record = serde_json::Map::new();
    let time = |at: &Option<prost_types::Timestamp>| export::time(at.as_ref());
    let mut put = |key: &str, value: Value| {
        record.insert(key.to_owned(), value);
    };
    if filter.created_from.is_some() {
        put("created_from", json!(time(&filter.created_from)));
    }
    if filter.created_to.is_some() {
        put("created_to", json!(time(&filter.created_to)));
    }
    for (key, value) in [
        ("business_date_from", &filter.business_date_from),
        ("business_date_to", &filter.business_date_to),
        ("client_request_id", &filter.client_request_id),
    ] {
        if !value.is_empty() {
            put(key, json!(value));
        }
    }
    for (key, values) in [
        ("store_ids", &filter.store_ids),
        ("terminal_ids", &filter.terminal_ids),
        ("partner_ids", &filter.partner_ids),
    ] {
        if !values.is_empty() {
            put(key, json!(values));
        }
    }
    if !filter.types.is_empty() {
        let names: Vec<&str> = filter
            .types
            .iter()
            .map(|value| {
                pb::TransactionType::try_from(*value)
                    .unwrap_or_default()
                    .as_str_name()
            })
            .collect();
        put("types", json!(names));
    }
    if !filter.statuses.is_empty() {
        let names: Vec<&str> = filter
            .statuses
            .iter()
            .map(|value| {
                pb::TransactionStatus::try_from(*value)
                    .unwrap_or_default()
                    .as_str_name()
            })
            .collect();
        put("statuses", json!(names));
    }
    for (key, money) in [
        ("amount_min", &filter.amount_min),
        ("amount_max", &filter.amount_max),
    ] {
        if let Some(money) = money {
            put(
                key,
                json!({"amount_minor": money.amount_minor.to_string(), "currency": money.currency}),
            );
        }
    }
    if let Some((masked, fingerprints)) = pan {
        put(
            "pan",
            json!({"masked": masked, "fingerprints": fingerprints}),
        );
    }
    Value::Object(record)
}

impl AuditApi {
    /// Appends the audit-read entry of a call.
    async fn record_read(
        &self,
        caller: &Caller,
        rpc: &str,
        request: Value,
        row_count: i64,
    ) -> Result<i64, Status> {
        let audit = self.audit()?;
        let detail = json!({
            "client_request_id": caller.client_request_id,
            "client_timestamp": canonical_time(caller.client_timestamp),
            "purpose": caller.purpose,
            "request": request,
            "row_count": row_count,
        });
        audit
            .store
            .append_audit_read(EntryContent {
                entry_type: EntryType::AuditRead,
                transaction_id: None,
                event_type: rpc.to_owned(),
                from_status: None,
                to_status: None,
                actor: Identity::Auditor {
                    auditor_id: caller.auditor_id.clone(),
                }
                .spiffe_id(),
                detail: detail.to_string(),
                occurred_at: canonical_time(self.gateway.clock.now()),
            })
            .await
            .map_err(|error| from_store_error(&error))
    }

    /// Auditor check, context and field validation, the auditor's identity.
    fn admit<T>(
        &self,
        request: &Request<T>,
        context: Option<&pb::AuditContext>,
        check_rest: impl FnOnce(&mut Violations),
    ) -> Result<Caller, Status> {
        auditors_only(request)?;
        let permit = self.gateway.admission.enter().map_err(refused)?;
        let mut violations = Violations::default();
        let caller = check_context(&mut violations, context, self.gateway.clock.now(), permit);
        check_rest(&mut violations);
        violations
            .finish()
            .map_err(|violations| invalid_argument(&violations))?;
        let caller = caller.ok_or_else(|| Status::internal("validated context is missing"))?;
        require_auditor(request, &caller.auditor_id)?;
        // Auditors share the POS rate limits: each auditor has a terminal's
        // budget, all auditors together a store's ("~" keeps the key apart
        // from every real store id).
        self.gateway
            .admission
            .charge(AUDITORS_RATE_KEY, &caller.auditor_id)
            .map_err(refused)?;
        Ok(caller)
    }
}

fn signed_checkpoint(checkpoint: &Checkpoint) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        sequence: checkpoint.sequence,
        head_hash_hex: hex::encode(&checkpoint.head_hash),
        signature_hex: hex::encode(&checkpoint.signature),
        key_id: key_id(checkpoint),
        signed_at: Some(crate::payments::view::timestamp(checkpoint.signed_at)),
    }
}

fn no_checkpoint() -> Status {
    precondition(
        "NO_CHECKPOINT",
        "audit_chain",
        "the audit chain has no signed checkpoint yet; try again after the next seal".to_owned(),
    )
}

fn problem(problem: Problem) -> pb::ChainProblem {
    match problem {
        Problem::Modified => pb::ChainProblem::Modified,
        Problem::Deleted => pb::ChainProblem::Deleted,
        Problem::Inserted => pb::ChainProblem::Inserted,
        Problem::Reordered => pb::ChainProblem::Reordered,
        Problem::CheckpointMismatch => pb::ChainProblem::CheckpointMismatch,
        Problem::CheckpointSignatureInvalid => pb::ChainProblem::CheckpointSignatureInvalid,
    }
}

fn token_status(error: &TokenError) -> Status {
    match error {
        TokenError::Hsm(error) => from_hsm_error(error),
        other => invalid_argument(&[posgate_core::model::FieldViolation::new(
            "page_token",
            other.to_string(),
        )]),
    }
}

/// One export slot of an auditor, released on drop.
struct ExportSlot {
    exports: Arc<Mutex<HashMap<String, usize>>>,
    auditor_id: String,
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        let mut exports = self
            .exports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = exports.get_mut(&self.auditor_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                exports.remove(&self.auditor_id);
            }
        }
    }
}

type ExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportTransactionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn search_transactions(
        &self,
        request: Request<pb::SearchTransactionsRequest>,
    ) -> Result<Response<pb::SearchTransactionsResponse>, Status> {
        let body = request.get_ref();
        let mut checked = None;
        let caller = self.admit(&request, body.context.as_ref(), |violations| {
            checked = Some(check_filter(violations, body.filter.as_ref()));
            if body.page_size < 0 || body.page_size > MAX_PAGE_SIZE {
                violations.add("page_size", "must be 0 (meaning 100) to 1000");
            }
            if body.page_token.len() > MAX_PAGE_TOKEN_LEN {
                violations.add("page_token", "is longer than 1024 characters");
            }
        })?;
        let audit = self.audit()?;
        let CheckedFilter { mut filter, pan } = checked.expect("checked in admit");
        let masked = pan.as_ref().map(Pan::masked);
        if let Some(pan) = pan {
            filter.pan_fingerprints = Some(fingerprints(audit, pan).await?);
        }
        let prints = filter.pan_fingerprints.clone().unwrap_or_default();
        let digest = token::filter_digest(body.filter.as_ref(), &prints);
        let cursor = if body.page_token.is_empty() {
            let (head, _) = audit
                .store
                .chain_head()
                .await
                .map_err(|error| from_store_error(&error))?;
            Cursor {
                as_of: head,
                after: 0,
            }
        } else {
            token::decode(
                audit.hsm.as_ref(),
                &audit.config.page_token_key,
                &body.page_token,
                &digest,
            )
            .await
            .map_err(|error| token_status(&error))?
        };
        let page_size = if body.page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            i64::from(body.page_size)
        };
        let mut rows = audit
            .store
            .search_transactions(&filter, cursor.as_of, cursor.after, page_size + 1)
            .await
            .map_err(|error| from_store_error(&error))?;
        let more = rows.len() > usize::try_from(page_size).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => token::encode(
                audit.hsm.as_ref(),
                &audit.config.page_token_key,
                Cursor {
                    as_of: cursor.as_of,
                    after: last.first_sequence,
                },
                &digest,
            )
            .await
            .map_err(|error| from_hsm_error(&error))?,
            _ => String::new(),
        };
        let record = json!({
            "filter": filter_record(body.filter.as_ref(), masked.as_deref().map(|m| (m, prints.as_slice()))),
            "page_size": body.page_size,
            "page_token": !body.page_token.is_empty(),
            "as_of_sequence": cursor.as_of,
        });
        let row_count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        self.record_read(&caller, "SearchTransactions", record, row_count)
            .await?;
        Ok(Response::new(pb::SearchTransactionsResponse {
            transactions: rows.iter().map(view::summary).collect(),
            next_page_token,
            as_of_sequence: cursor.as_of,
        }))
    }

    async fn get_transaction_history(
        &self,
        request: Request<pb::GetTransactionHistoryRequest>,
    ) -> Result<Response<pb::GetTransactionHistoryResponse>, Status> {
        let body = request.get_ref();
        let caller = self.admit(&request, body.context.as_ref(), |violations| {
            violations.transaction_id("transaction_id", &body.transaction_id);
        })?;
        let audit = self.audit()?;
        let store_error = |error: posgate_core::ports::db::StoreError| from_store_error(&error);
        let (head, _) = audit.store.chain_head().await.map_err(store_error)?;
        let row = audit
            .store
            .transaction_row(&body.transaction_id, head)
            .await
            .map_err(store_error)?;
        let entries = match &row {
            Some(_) => audit
                .store
                .transaction_entries(&body.transaction_id)
                .await
                .map_err(store_error)?,
            None => Vec::new(),
        };
        let record = json!({"transaction_id": body.transaction_id});
        let row_count = i64::from(row.is_some());
        self.record_read(&caller, "GetTransactionHistory", record, row_count)
            .await?;
        let row = row
            .ok_or_else(|| Status::not_found(format!("no transaction {}", body.transaction_id)))?;
        Ok(Response::new(pb::GetTransactionHistoryResponse {
            transaction: Some(view::summary(&row)),
            events: entries
                .iter()
                .filter(|entry| entry.sequence <= head)
                .map(|entry| view::event(entry, &row.partner_id))
                .collect(),
        }))
    }

    async fn verify_chain(
        &self,
        request: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let body = request.get_ref();
        let caller = self.admit(&request, body.context.as_ref(), |violations| {
            if body.from_sequence < 0 {
                violations.add("from_sequence", "must not be negative");
            }
            if body.to_sequence < 0 {
                violations.add("to_sequence", "must not be negative");
            }
        })?;
        let audit = self.audit()?;
        let store_error = |error: posgate_core::ports::db::StoreError| from_store_error(&error);
        let (head, _) = audit.store.chain_head().await.map_err(store_error)?;
        let to = if body.to_sequence == 0 {
            audit
                .store
                .latest_checkpoint(head)
                .await
                .map_err(store_error)?
                .ok_or_else(no_checkpoint)?
                .sequence
        } else {
            body.to_sequence
        };
        let from = body.from_sequence.max(1);
        let mut violations = Violations::default();
        if to > head {
            violations.add("to_sequence", format!("is beyond the chain head ({head})"));
        } else if from > to {
            violations.add("from_sequence", format!("is after to_sequence ({to})"));
        } else if to - from + 1 > audit.config.max_verify_range {
            violations.add(
                "to_sequence",
                format!(
                    "the range is wider than {} entries, the most one call verifies",
                    audit.config.max_verify_range
                ),
            );
        }
        violations
            .finish()
            .map_err(|violations| invalid_argument(&violations))?;
        let report = verify::verify(audit, from, to)
            .await
            .map_err(|error| match error {
                verify::VerifyError::Store(error) => from_store_error(&error),
                verify::VerifyError::Hsm(error) => from_hsm_error(&error),
            })?;
        let record = json!({
            "from_sequence": body.from_sequence,
            "to_sequence": body.to_sequence,
            "checked_from_sequence": report.checked_from,
            "checked_to_sequence": report.checked_to,
            "ok": report.failure.is_none(),
            "first_bad_sequence": report.failure.as_ref().map_or(0, |f| f.sequence),
        });
        self.record_read(&caller, "VerifyChain", record, report.checked_count)
            .await?;
        let (first_bad, problem_kind, detail) = match &report.failure {
            Some(failure) => (
                failure.sequence,
                problem(failure.problem),
                failure.detail.clone(),
            ),
            None => (0, pb::ChainProblem::Unspecified, String::new()),
        };
        Ok(Response::new(pb::VerifyChainResponse {
            ok: report.failure.is_none(),
            first_bad_sequence: first_bad,
            problem: problem_kind.into(),
            problem_detail: detail,
            checked_from_sequence: report.checked_from,
            checked_to_sequence: report.checked_to,
            checked_count: report.checked_count,
            head_hash_hex: report
                .head_hash
                .as_deref()
                .map(hex::encode)
                .unwrap_or_default(),
            checkpoint: report.checkpoint.as_ref().map(signed_checkpoint),
            chain_head_sequence: head,
        }))
    }

    type ExportTransactionsStream = ExportStream;

    async fn export_transactions(
        &self,
        request: Request<pb::ExportTransactionsRequest>,
    ) -> Result<Response<Self::ExportTransactionsStream>, Status> {
        let body = request.get_ref();
        let mut checked = None;
        let caller = self.admit(&request, body.context.as_ref(), |violations| {
            checked = Some(check_filter(violations, body.filter.as_ref()));
            match pb::ExportFormat::try_from(body.format) {
                Ok(pb::ExportFormat::Csv | pb::ExportFormat::JsonLines) => {}
                _ => violations.add(
                    "format",
                    "must be EXPORT_FORMAT_CSV or EXPORT_FORMAT_JSON_LINES",
                ),
            }
            if body.checkpoint_sequence < 0 {
                violations.add("checkpoint_sequence", "must not be negative");
            }
        })?;
        let format = pb::ExportFormat::try_from(body.format).unwrap_or_default();
        let audit = self.audit()?.clone();
        let store_error = |error: posgate_core::ports::db::StoreError| from_store_error(&error);
        let checkpoint = if body.checkpoint_sequence == 0 {
            let (head, _) = audit.store.chain_head().await.map_err(store_error)?;
            audit
                .store
                .latest_checkpoint(head)
                .await
                .map_err(store_error)?
                .ok_or_else(no_checkpoint)?
        } else {
            audit
                .store
                .latest_checkpoint(body.checkpoint_sequence)
                .await
                .map_err(store_error)?
                .filter(|checkpoint| checkpoint.sequence == body.checkpoint_sequence)
                .ok_or_else(|| {
                    invalid_argument(&[posgate_core::model::FieldViolation::new(
                        "checkpoint_sequence",
                        "is not the sequence of a checkpoint",
                    )])
                })?
        };
        let CheckedFilter { mut filter, pan } = checked.expect("checked in admit");
        let masked = pan.as_ref().map(Pan::masked);
        if let Some(pan) = pan {
            filter.pan_fingerprints = Some(fingerprints(&audit, pan).await?);
        }
        let slot = self.export_slot(&caller.auditor_id, audit.config.max_concurrent_exports)?;
        let prints = filter.pan_fingerprints.clone().unwrap_or_default();
        let record = json!({
            "filter": filter_record(body.filter.as_ref(), masked.as_deref().map(|m| (m, prints.as_slice()))),
            "format": format.as_str_name(),
            "checkpoint_sequence": checkpoint.sequence,
        });
        let (sender, receiver) = tokio::sync::mpsc::channel(EXPORT_QUEUE);
        let api = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = api
                .run_export(&audit, &filter, format, &checkpoint, &sender)
                .await;
            let last = match outcome {
                Ok(mut trailer) => {
                    match api
                        .record_read(&caller, "ExportTransactions", record, trailer.row_count)
                        .await
                    {
                        Ok(_) => {
                            trailer.checkpoint = Some(signed_checkpoint(&checkpoint));
                            Ok(pb::ExportTransactionsResponse {
                                part: Some(pb::export_transactions_response::Part::Trailer(
                                    trailer,
                                )),
                            })
                        }
                        Err(status) => Err(status),
                    }
                }
                Err(status) => Err(status),
            };
            let _ = sender.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn get_signing_keys(
        &self,
        request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let caller = self.admit(&request, request.get_ref().context.as_ref(), |_| {})?;
        let keys = self.signing_keys().await?;
        let row_count = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        self.record_read(&caller, "GetSigningKeys", json!({}), row_count)
            .await?;
        Ok(Response::new(pb::GetSigningKeysResponse { keys }))
    }
}

impl AuditApi {
    /// Every kept version of the checkpoint key and of the clearing key,
    /// public halves only.
    async fn signing_keys(&self) -> Result<Vec<pb::SigningKey>, Status> {
        use pb::SigningKeyPurpose as Purpose;
        let audit = self.audit()?;
        let mut keys = Vec::new();
        for (label, purpose) in [
            (&audit.config.signing_key, Purpose::AuditCheckpoints),
            (&self.gateway.clearing_signing_key, Purpose::ClearingFiles),
        ] {
            let versions = crate::signing_keys::versions(audit.hsm.as_ref(), Some(label))
                .await
                .map_err(|error| from_hsm_error(&error))?;
            keys.extend(versions.iter().map(|version| pb::SigningKey {
                key_id: version.key_id(),
                label: version.info.label.clone(),
                version: version.info.version,
                purpose: purpose.into(),
                algorithm: version.public.algorithm().to_owned(),
                public_key: version.public.as_bytes().to_vec(),
                spki_der: version.public.spki_der(),
                spki_pem: version.public.spki_pem(),
                kcv: version.public.kcv().to_string(),
                created_at: Some(prost_types::Timestamp {
                    seconds: version.info.created_at_unix_s,
                    nanos: 0,
                }),
            }));
        }
        Ok(keys)
    }
}

type ExportSender = tokio::sync::mpsc::Sender<Result<pb::ExportTransactionsResponse, Status>>;

impl AuditApi {
    fn export_slot(&self, auditor_id: &str, max: usize) -> Result<ExportSlot, Status> {
        let mut exports = self
            .exports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = exports.entry(auditor_id.to_owned()).or_insert(0);
        if *running >= max {
            return Err(Status::resource_exhausted(format!(
                "auditor {auditor_id} already runs {max} exports; wait for one to finish"
            )));
        }
        *running += 1;
        Ok(ExportSlot {
            exports: Arc::clone(&self.exports),
            auditor_id: auditor_id.to_owned(),
        })
    }

    /// Streams the header and the chunks; returns the trailer (without its
    /// checkpoint). Reads the rows a page at a time.
    async fn run_export(
        &self,
        audit: &Audit,
        filter: &SearchFilter,
        format: pb::ExportFormat,
        checkpoint: &Checkpoint,
        sender: &ExportSender,
    ) -> Result<pb::ExportTrailer, Status> {
        use pb::export_transactions_response::Part;
        let send = |part: Part| async move {
            sender
                .send(Ok(pb::ExportTransactionsResponse { part: Some(part) }))
                .await
                .map_err(|_| Status::cancelled("the client went away"))
        };
        send(Part::Header(pb::ExportHeader {
            format: format.into(),
            as_of_sequence: checkpoint.sequence,
            file_name: export::file_name(checkpoint.sequence, format),
        }))
        .await?;
        let mut buffer: Vec<u8> = Vec::with_capacity(EXPORT_CHUNK_BYTES * 2);
        if format == pb::ExportFormat::Csv {
            buffer.extend_from_slice(export::CSV_HEADER.as_bytes());
        }
        let mut digest = Sha256::new();
        let (mut rows_written, mut bytes_written) = (0_i64, 0_i64);
        let mut after = 0_i64;
        loop {
            let rows = audit
                .store
                .search_transactions(filter, checkpoint.sequence, after, EXPORT_PAGE_ROWS)
                .await
                .map_err(|error| from_store_error(&error))?;
            let Some(last) = rows.last() else { break };
            after = last.first_sequence;
            for row in &rows {
                let summary = view::summary(row);
                let line = if format == pb::ExportFormat::Csv {
                    export::csv_line(&summary)
                } else {
                    export::json_line(&summary)
                };
                buffer.extend_from_slice(line.as_bytes());
                rows_written += 1;
            }
            while buffer.len() >= EXPORT_CHUNK_BYTES {
                let chunk: Vec<u8> = buffer.drain(..EXPORT_CHUNK_BYTES).collect();
                digest.update(&chunk);
                bytes_written += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                send(Part::Chunk(chunk)).await?;
            }
        }
        if !buffer.is_empty() {
            digest.update(&buffer);
            bytes_written += i64::try_from(buffer.len()).unwrap_or(i64::MAX);
            send(Part::Chunk(buffer)).await?;
        }
        Ok(pb::ExportTrailer {
            row_count: rows_written,
            byte_count: bytes_written,
            content_sha256_hex: hex::encode(digest.finalize()),
            checkpoint: None,
        })
    }
}
