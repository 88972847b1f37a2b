//! The export formats of `ExportTransactions`, exactly as audit.proto
//! specifies them: RFC 4180 CSV (CRLF, header line) and JSON Lines (proto3
//! JSON mapping, proto field names, every field, field-number order). Both
//! are pure functions of the rows, so the same rows give the same bytes.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use posgate_proto::v1 as pb;

/// The CSV header line.
pub const CSV_HEADER: &str = "transaction_id,type,status,store_id,terminal_id,operator_id,partner_id,\
amount_minor,currency,fee_minor,fee_currency,business_date,created_at,updated_at,masked_pan,\
client_request_id,card_brand,original_transaction_id,parent_transaction_id,first_sequence,last_sequence\r\n";

/// RFC 3339 in UTC with exactly 6 fractional digits and `Z`.
pub fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|at| {
        DateTime::<Utc>::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
    })
    .map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true))
    .unwrap_or_default()
}

fn type_name(row: &pb::TransactionSummary) -> &'static str {
    pb::TransactionType::try_from(row.r#type)
        .unwrap_or_default()
        .as_str_name()
}

fn status_name(row: &pb::TransactionSummary) -> &'static str {
    pb::TransactionStatus::try_from(row.status)
        .unwrap_or_default()
        .as_str_name()
}

fn brand_name(row: &pb::TransactionSummary) -> &'static str {
    pb::CardBrand::try_from(row.card_brand)
        .unwrap_or_default()
        .as_str_name()
}

/// One CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// One CSV data line, CRLF-terminated.
pub fn csv_line(row: &pb::TransactionSummary) -> String {
    let amount = row.amount.clone().unwrap_or_default();
    let fee = row.fee.clone().unwrap_or_default();
    let fields: [String; 21] = [
        row.transaction_id.clone(),
        type_name(row).to_owned(),
        status_name(row).to_owned(),
        row.store_id.clone(),
        row.terminal_id.clone(),
        row.operator_id.clone(),
        row.partner_id.clone(),
        amount.amount_minor.to_string(),
        amount.currency,
        fee.amount_minor.to_string(),
        fee.currency,
        row.business_date.clone(),
        time(row.created_at.as_ref()),
        time(row.updated_at.as_ref()),
        row.masked_pan.clone(),
        row.client_request_id.clone(),
        brand_name(row).to_owned(),
        row.original_transaction_id.clone(),
        row.parent_transaction_id.clone(),
        row.first_sequence.to_string(),
        row.last_sequence.to_string(),
    ];
    let mut out = String::with_capacity(256);
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        csv_field(&mut out, field);
    }
    out.push_str("\r\n");
    out
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string always serializes")
}

fn json_money(money: Option<&pb::Money>) -> String {
    let money = money.cloned().unwrap_or_default();
    format!(
        "{{\"amount_minor\":\"{}\",\"currency\":{}}}",
        money.amount_minor,
        json_string(&money.currency)
    )
}

/// One JSON Lines line, LF-terminated.
pub fn json_line(row: &pb::TransactionSummary) -> String {
    let mut out = String::with_capacity(512);
    let _ = writeln!(
        out,
        "{{\"transaction_id\":{},\"type\":\"{}\",\"status\":\"{}\",\"store_id\":{},\"terminal_id\":{},\
         \"operator_id\":{},\"partner_id\":{},\"amount\":{},\"fee\":{},\"business_date\":{},\
         \"created_at\":\"{}\",\"updated_at\":\"{}\",\"masked_pan\":{},\"client_request_id\":{},\
         \"card_brand\":\"{}\",\"original_transaction_id\":{},\"parent_transaction_id\":{},\
         \"first_sequence\":\"{}\",\"last_sequence\":\"{}\"}}",
        json_string(&row.transaction_id),
        type_name(row),
        status_name(row),
        json_string(&row.store_id),
        json_string(&row.terminal_id),
        json_string(&row.operator_id),
        json_string(&row.partner_id),
        json_money(row.amount.as_ref()),
        json_money(row.fee.as_ref()),
        json_string(&row.business_date),
        time(row.created_at.as_ref()),
        time(row.updated_at.as_ref()),
        json_string(&row.masked_pan),
        json_string(&row.client_request_id),
        brand_name(row),
        json_string(&row.original_transaction_id),
        json_string(&row.parent_transaction_id),
        row.first_sequence,
        row.last_sequence,
    );
    out
}

/// The suggested file name of an export as of `sequence`.
pub fn file_name(sequence: i64, format: pb::ExportFormat) -> String {
    let extension = if format == pb::ExportFormat::Csv {
        "csv"
    } else {
        "jsonl"
    };
    format!("posgate-transactions-{sequence:012}.{extension}")
}
