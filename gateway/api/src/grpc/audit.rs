//! `AuditService`: auditors' read-only access to every transaction and to
//! the audit chain (see `proto/posgate/v1/audit.proto`). Auditor role only;
//! every call appends an audit-read entry to the chain before it answers.
//!
//! Each handler checks the caller's certificate and admission, reads the
//! request's wire shape, makes one call to `posgate_core::audit::service`
//! (which owns every rule, the paging, the verification and the audit-read
//! entry) and renders the answer.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use posgate_proto::v1 as pb;
use posgate_proto::v1::audit_service_server::{AuditService, AuditServiceServer};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Gateway;
use super::status::{from_hsm_error, from_store_error, invalid_argument, precondition, refused};
use crate::access::{Identity, identity_of, require_auditor};
use crate::audit::{export, token, view};
use crate::validate::Violations;
use posgate_core::audit::Audit;
use posgate_core::audit::page_token::TokenError;
use posgate_core::audit::seal::key_id;
use posgate_core::audit::service::{
    self, AuditError, Caller, CallerInput, CheckedFilter, ClientTimestamp, ExportQuery,
    ExportSlots, FilterInput, KeyPurpose, SearchQuery,
};
use posgate_core::audit::verify::Problem;
use posgate_core::model::chain::Checkpoint;

/// Longest page token accepted (audit.proto).
pub const MAX_PAGE_TOKEN_LEN: usize = 1024;
/// Export chunk size: the proto's maximum, so a file needs few messages.
pub const EXPORT_CHUNK_BYTES: usize = 65_536;
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
    exports: ExportSlots,
}

impl AuditApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            exports: ExportSlots::default(),
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

    fn now(&self) -> DateTime<Utc> {
        self.gateway.clock.now()
    }
}

/// A caller let in: the checked caller and its in-flight slot, held until
/// the call ends.
struct Admitted {
    _permit: tokio::sync::OwnedSemaphorePermit,
    caller: Caller,
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

/// Reads the `AuditContext`; the core checks its rules.
fn caller_input(context: &pb::AuditContext) -> CallerInput {
    CallerInput {
        auditor_id: context.auditor_id.clone(),
        client_request_id: context.client_request_id.clone(),
        purpose: context.purpose.clone(),
        client_timestamp: match context.client_timestamp.as_ref().map(timestamp_of) {
            None => ClientTimestamp::Missing,
            Some(None) => ClientTimestamp::Invalid,
            Some(Some(at)) => ClientTimestamp::At(at),
        },
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    (text.len() == 10)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

/// Reads a `TransactionFilter` (timestamps, dates, types and statuses
/// parsed, adding violations on "filter.*"), then has the core check it.
fn check_filter(
    violations: &mut Violations,
    filter: Option<&pb::TransactionFilter>,
) -> CheckedFilter {
    let Some(filter) = filter else {
        return CheckedFilter::default();
    };
    let mut input = FilterInput::default();
    let mut time = |field: &str, at: Option<&prost_types::Timestamp>| {
        at.and_then(|at| {
            let parsed = timestamp_of(at);
            if parsed.is_none() {
                violations.add(field, "is not a valid timestamp");
            }
            parsed
        })
    };
    input.created_from = time("filter.created_from", filter.created_from.as_ref());
    input.created_to = time("filter.created_to", filter.created_to.as_ref());
    for (field, text, slot) in [
        (
            "filter.business_date_from",
            &filter.business_date_from,
            &mut input.business_date_from,
        ),
        (
            "filter.business_date_to",
            &filter.business_date_to,
            &mut input.business_date_to,
        ),
    ] {
        if !text.is_empty() {
            *slot = parse_date(text);
            if slot.is_none() {
                violations.add(field, "must be a date YYYY-MM-DD");
            }
        }
    }
    input.store_ids.clone_from(&filter.store_ids);
    input.terminal_ids.clone_from(&filter.terminal_ids);
    input.partner_ids.clone_from(&filter.partner_ids);
    check_types(violations, filter, &mut input);
    check_statuses(violations, filter, &mut input);
    let money = |money: &Option<pb::Money>| {
        money
            .as_ref()
            .map(|money| (money.amount_minor, money.currency.clone()))
    };
    input.amount_min = money(&filter.amount_min);
    input.amount_max = money(&filter.amount_max);
    input
        .client_request_id
        .clone_from(&filter.client_request_id);
    input.pan.clone_from(&filter.pan);
    service::check_filter(violations.entries_mut(), input)
}

fn check_types(violations: &mut Violations, filter: &pb::TransactionFilter, out: &mut FilterInput) {
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
    out: &mut FilterInput,
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

/// The request's filter as the audit-read entry records it: set fields
/// only, enums by name (the core adds the PAN's masked form and
/// fingerprints); `None` without a filter.
fn filter_record(filter: Option<&pb::TransactionFilter>) -> Option<Map<String, Value>> {
    let filter = filter?;
    let mut record = Map::new();
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
    Some(record)
}

impl AuditApi {
    /// Auditor check, admission, context and field validation, the
    /// auditor's identity, the auditors' rate limit.
    fn admit<T>(
        &self,
        request: &Request<T>,
        context: Option<&pb::AuditContext>,
        check_rest: impl FnOnce(&mut Violations),
    ) -> Result<Admitted, Status> {
        auditors_only(request)?;
        let permit = self.gateway.admission.enter().map_err(refused)?;
        let mut violations = Violations::default();
        let caller = if let Some(context) = context {
            service::check_caller(
                violations.entries_mut(),
                caller_input(context),
                |auditor_id| {
                    Identity::Auditor {
                        auditor_id: auditor_id.to_owned(),
                    }
                    .spiffe_id()
                },
                self.now(),
            )
        } else {
            violations.add("context", "is required");
            None
        };
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
        Ok(Admitted {
            _permit: permit,
            caller,
        })
    }
}

/// The `Status` of a failed audit call.
fn status_of(error: &AuditError) -> Status {
    match error {
        AuditError::Invalid(violations) => invalid_argument(violations),
        AuditError::NoCheckpoint => precondition(
            "NO_CHECKPOINT",
            "audit_chain",
            "the audit chain has no signed checkpoint yet; try again after the next seal"
                .to_owned(),
        ),
        AuditError::NotFound { transaction_id } => {
            Status::not_found(format!("no transaction {transaction_id}"))
        }
        AuditError::PageToken(TokenError::Hsm(error)) | AuditError::Hsm(error) => {
            from_hsm_error(error)
        }
        AuditError::PageToken(other) => {
            invalid_argument(&[posgate_core::model::FieldViolation::new(
                "page_token",
                other.to_string(),
            )])
        }
        AuditError::ExportsBusy { .. } => Status::resource_exhausted(error.to_string()),
        AuditError::Store(error) => from_store_error(error),
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
        let admitted = self.admit(&request, body.context.as_ref(), |violations| {
            checked = Some(check_filter(violations, body.filter.as_ref()));
            service::check_page_size(violations.entries_mut(), body.page_size);
            if body.page_token.len() > MAX_PAGE_TOKEN_LEN {
                violations.add("page_token", "is longer than 1024 characters");
            }
        })?;
        let audit = self.audit()?;
        let query = SearchQuery {
            filter: checked.expect("checked in admit"),
            filter_record: filter_record(body.filter.as_ref()),
            encoded_filter: token::encoded_filter(body.filter.as_ref()),
            page_size: body.page_size,
            page_token: body.page_token.clone(),
        };
        let page = service::search(audit, &admitted.caller, query, self.now())
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(pb::SearchTransactionsResponse {
            transactions: page.rows.iter().map(view::summary).collect(),
            next_page_token: page.next_page_token,
            as_of_sequence: page.as_of_sequence,
        }))
    }

    async fn get_transaction_history(
        &self,
        request: Request<pb::GetTransactionHistoryRequest>,
    ) -> Result<Response<pb::GetTransactionHistoryResponse>, Status> {
        let body = request.get_ref();
        let admitted = self.admit(&request, body.context.as_ref(), |violations| {
            violations.transaction_id("transaction_id", &body.transaction_id);
        })?;
        let audit = self.audit()?;
        let history = service::history(audit, &admitted.caller, &body.transaction_id, self.now())
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(pb::GetTransactionHistoryResponse {
            transaction: Some(view::summary(&history.row)),
            events: history
                .entries
                .iter()
                .map(|entry| view::event(entry, &history.row.partner_id))
                .collect(),
        }))
    }

    async fn verify_chain(
        &self,
        request: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let body = request.get_ref();
        let admitted = self.admit(&request, body.context.as_ref(), |violations| {
            if body.from_sequence < 0 {
                violations.add("from_sequence", "must not be negative");
            }
            if body.to_sequence < 0 {
                violations.add("to_sequence", "must not be negative");
            }
        })?;
        let audit = self.audit()?;
        let check = service::verify_chain(
            audit,
            &admitted.caller,
            body.from_sequence,
            body.to_sequence,
            self.now(),
        )
        .await
        .map_err(|error| status_of(&error))?;
        let report = check.report;
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
            chain_head_sequence: check.head,
        }))
    }

    type ExportTransactionsStream = ExportStream;

    async fn export_transactions(
        &self,
        request: Request<pb::ExportTransactionsRequest>,
    ) -> Result<Response<Self::ExportTransactionsStream>, Status> {
        let body = request.get_ref();
        let mut checked = None;
        let admitted = self.admit(&request, body.context.as_ref(), |violations| {
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
        let query = ExportQuery {
            filter: checked.expect("checked in admit"),
            filter_record: filter_record(body.filter.as_ref()),
            format: format.as_str_name().to_owned(),
            checkpoint_sequence: body.checkpoint_sequence,
        };
        let export = service::start_export(&audit, &self.exports, &admitted.caller, query)
            .await
            .map_err(|error| status_of(&error))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(EXPORT_QUEUE);
        let api = self.clone();
        tokio::spawn(async move {
            let last = api
                .run_export(&audit, &admitted, export, format, &sender)
                .await;
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
        let admitted = self.admit(&request, request.get_ref().context.as_ref(), |_| {})?;
        let audit = self.audit()?;
        let keys = service::signing_keys(
            audit,
            &admitted.caller,
            &self.gateway.clearing_signing_key,
            self.now(),
        )
        .await
        .map_err(|error| status_of(&error))?;
        let keys = keys
            .iter()
            .map(|(purpose, version)| pb::SigningKey {
                key_id: version.key_id(),
                label: version.info.label.clone(),
                version: version.info.version,
                purpose: match purpose {
                    KeyPurpose::AuditCheckpoints => pb::SigningKeyPurpose::AuditCheckpoints,
                    KeyPurpose::ClearingFiles => pb::SigningKeyPurpose::ClearingFiles,
                }
                .into(),
                algorithm: version.public.algorithm().to_owned(),
                public_key: version.public.as_bytes().to_vec(),
                spki_der: version.public.spki_der(),
                spki_pem: version.public.spki_pem(),
                kcv: version.public.kcv().to_string(),
                created_at: Some(prost_types::Timestamp {
                    seconds: version.info.created_at_unix_s,
                    nanos: 0,
                }),
            })
            .collect();
        Ok(Response::new(pb::GetSigningKeysResponse { keys }))
    }
}

type ExportSender = tokio::sync::mpsc::Sender<Result<pb::ExportTransactionsResponse, Status>>;

impl AuditApi {
    /// Streams the header and the chunks of an export, a page of rows at a
    /// time, then has the core record the read; returns the trailer.
    async fn run_export(
        &self,
        audit: &Audit,
        admitted: &Admitted,
        mut export: service::Export,
        format: pb::ExportFormat,
        sender: &ExportSender,
    ) -> Result<pb::ExportTransactionsResponse, Status> {
        use pb::export_transactions_response::Part;
        let send = |part: Part| async move {
            sender
                .send(Ok(pb::ExportTransactionsResponse { part: Some(part) }))
                .await
                .map_err(|_| Status::cancelled("the client went away"))
        };
        let sequence = export.checkpoint.sequence;
        send(Part::Header(pb::ExportHeader {
            format: format.into(),
            as_of_sequence: sequence,
            file_name: export::file_name(sequence, format),
        }))
        .await?;
        let mut buffer: Vec<u8> = Vec::with_capacity(EXPORT_CHUNK_BYTES * 2);
        if format == pb::ExportFormat::Csv {
            buffer.extend_from_slice(export::CSV_HEADER.as_bytes());
        }
        let mut digest = Sha256::new();
        let (mut rows_written, mut bytes_written) = (0_i64, 0_i64);
        loop {
            let rows = export
                .next_page(audit)
                .await
                .map_err(|error| from_store_error(&error))?;
            if rows.is_empty() {
                break;
            }
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
        let checkpoint = export
            .finish(audit, &admitted.caller, rows_written, self.now())
            .await
            .map_err(|error| status_of(&error))?;
        Ok(pb::ExportTransactionsResponse {
            part: Some(Part::Trailer(pb::ExportTrailer {
                row_count: rows_written,
                byte_count: bytes_written,
                content_sha256_hex: hex::encode(digest.finalize()),
                checkpoint: Some(signed_checkpoint(&checkpoint)),
            })),
        })
    }
}
