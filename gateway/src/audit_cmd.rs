//! `posgate audit`: an auditor's client for `AuditService` (search, history,
//! verify, export) over mTLS with the auditor's client certificate, and
//! `bench`, which measures search latency and chain verification speed.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use posgate::bench::audit as bench;
use posgate_api::audit::export;
use posgate_core::audit::AuditConfig;
use posgate_proto::v1 as pb;
use posgate_proto::v1::audit_service_client::AuditServiceClient;
use sha2::Digest as _;
use tonic::transport::Channel;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

/// How to reach `AuditService` as an auditor.
#[derive(Debug, Args)]
struct Connection {
    /// The gateway, e.g. `https://127.0.0.1:50051`.
    #[arg(long, default_value = "https://127.0.0.1:50051")]
    addr: String,
    /// CA certificate that signed the gateway's certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The auditor's client certificate (PEM), `spiffe://posgate/auditor/{id}`.
    #[arg(long)]
    cert: PathBuf,
    /// The auditor's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The gateway certificate's name.
    #[arg(long, default_value = posgate::tls::DEV_SERVER_NAME)]
    server_name: String,
    /// The auditor id of the certificate (the last segment of its SPIFFE id).
    #[arg(long)]
    auditor: String,
    /// Why you are reading (engagement, case or ticket); recorded in the chain.
    #[arg(long)]
    purpose: String,
    /// Print JSON (one object per line) instead of tables.
    #[arg(long)]
    json: bool,
}

/// A transaction filter from flags. The PAN is read from standard input
/// (`--pan-stdin`), never from the command line, where `ps` would show it.
#[derive(Debug, Args, Default)]
struct FilterArgs {
    #[arg(long = "store")]
    stores: Vec<String>,
    #[arg(long = "terminal")]
    terminals: Vec<String>,
    #[arg(long = "partner")]
    partners: Vec<String>,
    /// Transaction types, e.g. card-sale, bill-payment.
    #[arg(long = "type", value_enum)]
    types: Vec<TypeArg>,
    /// Statuses, e.g. captured, paid, cancelled.
    #[arg(long = "status", value_enum)]
    statuses: Vec<StatusArg>,
    /// `created_at` at or after (RFC 3339).
    #[arg(long)]
    created_from: Option<DateTime<Utc>>,
    /// `created_at` before (RFC 3339).
    #[arg(long)]
    created_to: Option<DateTime<Utc>>,
    #[arg(long)]
    business_date_from: Option<String>,
    #[arg(long)]
    business_date_to: Option<String>,
    /// Smallest amount in minor units (needs --currency).
    #[arg(long)]
    amount_min: Option<i64>,
    /// Largest amount in minor units (needs --currency).
    #[arg(long)]
    amount_max: Option<i64>,
    #[arg(long)]
    currency: Option<String>,
    #[arg(long)]
    client_request_id: Option<String>,
    /// Read a full PAN from the first line of standard input.
    #[arg(long)]
    pan_stdin: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TypeArg {
    CardAuthorization,
    CardSale,
    CardRefund,
    CardVerification,
    BillPayment,
    WalletTopUp,
    WalletPayment,
    WalletRefund,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    InProgress,
    Authorized,
    Captured,
    Verified,
    Completed,
    Paid,
    Declined,
    PendingReversal,
    Reversed,
    Voided,
    Expired,
    Cancelled,
    CaptureRefused,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Jsonl,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Find transactions; prints a table (or JSON Lines with --json).
    Search {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        filter: FilterArgs,
        /// Rows per page (1-1000).
        #[arg(long, default_value_t = 100)]
        page_size: i32,
        /// Follow every page instead of printing only the first.
        #[arg(long)]
        all: bool,
    },
    /// One transaction with every event of it, in chain order.
    History {
        #[command(flatten)]
        connection: Connection,
        transaction_id: String,
    },
    /// Verify the hash chain and its signed checkpoints.
    Verify {
        #[command(flatten)]
        connection: Connection,
        /// First sequence (0: from the start).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// Last sequence (0: the latest checkpoint).
        #[arg(long, default_value_t = 0)]
        to: i64,
    },
    /// Export transactions as of a checkpoint into a file, then check its digest.
    Export {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum)]
        format: FormatArg,
        /// Checkpoint sequence (0: the latest).
        #[arg(long, default_value_t = 0)]
        checkpoint: i64,
        /// Where to write the file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seed N transactions with a chain and measure search latency and verification speed.
    Bench {
        /// An empty PostgreSQL database (a private schema is created and
        /// dropped) or a new SQLite file.
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Searches to time.
        #[arg(long, default_value_t = 400)]
        searches: u64,
        /// Keep the PostgreSQL bench schema (printed) for EXPLAIN; drop it yourself.
        #[arg(long)]
        keep: bool,
    },
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Search {
            connection,
            filter,
            page_size,
            all,
        } => search(&connection, &filter, page_size, all).await,
        AuditCommand::History {
            connection,
            transaction_id,
        } => history(&connection, transaction_id).await,
        AuditCommand::Verify {
            connection,
            from,
            to,
        } => verify(&connection, from, to).await,
        AuditCommand::Export {
            connection,
            filter,
            format,
            checkpoint,
            out,
        } => export_file(&connection, &filter, format, checkpoint, &out).await,
        AuditCommand::Bench {
            database_url,
            rows,
            searches,
            keep,
        } => bench_command(&database_url, rows, searches, keep).await,
    }
}

async fn client(connection: &Connection) -> anyhow::Result<AuditServiceClient<Channel>> {
    let tls = posgate::tls::client_tls_as(
        &connection.ca,
        &connection.server_name,
        &posgate::tls::ClientCert {
            cert: connection.cert.clone(),
            key: connection.key.clone(),
        },
    )?;
    let channel = Channel::from_shared(connection.addr.clone())
        .context("--addr is not a URI")?
        .tls_config(tls)?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", connection.addr))?;
    Ok(AuditServiceClient::new(channel))
}

fn context(connection: &Connection) -> pb::AuditContext {
    let now = Utc::now();
    pb::AuditContext {
        auditor_id: connection.auditor.clone(),
        client_request_id: uuid::Uuid::now_v7().to_string(),
        client_timestamp: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        purpose: connection.purpose.clone(),
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn proto_type(value: TypeArg) -> pb::TransactionType {
    match value {
        TypeArg::CardAuthorization => pb::TransactionType::CardAuthorization,
        TypeArg::CardSale => pb::TransactionType::CardSale,
        TypeArg::CardRefund => pb::TransactionType::CardRefund,
        TypeArg::CardVerification => pb::TransactionType::CardVerification,
        TypeArg::BillPayment => pb::TransactionType::BillPayment,
        TypeArg::WalletTopUp => pb::TransactionType::WalletTopUp,
        TypeArg::WalletPayment => pb::TransactionType::WalletPayment,
        TypeArg::WalletRefund => pb::TransactionType::WalletRefund,
    }
}

fn proto_status(value: StatusArg) -> pb::TransactionStatus {
    match value {
        StatusArg::InProgress => pb::TransactionStatus::InProgress,
        StatusArg::Authorized => pb::TransactionStatus::Authorized,
        StatusArg::Captured => pb::TransactionStatus::Captured,
        StatusArg::Verified => pb::TransactionStatus::Verified,
        StatusArg::Completed => pb::TransactionStatus::Completed,
        StatusArg::Paid => pb::TransactionStatus::Paid,
        StatusArg::Declined => pb::TransactionStatus::Declined,
        StatusArg::PendingReversal => pb::TransactionStatus::PendingReversal,
        StatusArg::Reversed => pb::TransactionStatus::Reversed,
        StatusArg::Voided => pb::TransactionStatus::Voided,
        StatusArg::Expired => pb::TransactionStatus::Expired,
        StatusArg::CaptureRefused => pb::TransactionStatus::CaptureRefused,
        StatusArg::Cancelled => pb::TransactionStatus::Cancelled,
    }
}

fn filter(args: &FilterArgs) -> anyhow::Result<pb::TransactionFilter> {
    let money = |amount_minor: Option<i64>| -> anyhow::Result<Option<pb::Money>> {
        amount_minor
            .map(|amount_minor| {
                let currency = args
                    .currency
                    .clone()
                    .context("--amount-min/--amount-max need --currency")?;
                Ok(pb::Money {
                    amount_minor,
                    currency,
                })
            })
            .transpose()
    };
    let pan = if args.pan_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the PAN from standard input")?;
        line.trim().to_owned()
    } else {
        String::new()
    };
    Ok(pb::TransactionFilter {
        created_from: args.created_from.map(timestamp),
        created_to: args.created_to.map(timestamp),
        business_date_from: args.business_date_from.clone().unwrap_or_default(),
        business_date_to: args.business_date_to.clone().unwrap_or_default(),
        store_ids: args.stores.clone(),
        terminal_ids: args.terminals.clone(),
        partner_ids: args.partners.clone(),
        types: args.types.iter().map(|t| proto_type(*t).into()).collect(),
        statuses: args
            .statuses
            .iter()
            .map(|s| proto_status(*s).into())
            .collect(),
        amount_min: money(args.amount_min)?,
        amount_max: money(args.amount_max)?,
        client_request_id: args.client_request_id.clone().unwrap_or_default(),
        pan,
    })
}

/// A gRPC error in words, with the fields a BadRequest names.
fn explain(status: &tonic::Status) -> anyhow::Error {
    use tonic_types::StatusExt as _;
    let fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        anyhow::anyhow!("{:?}: {}", status.code(), status.message())
    } else {
        anyhow::anyhow!("{:?}: {}", status.code(), fields.join("; "))
    }
}

fn money_text(money: Option<&pb::Money>) -> String {
    money.map_or_else(String::new, |m| {
        format!("{} {}", m.amount_minor, m.currency)
    })
}

fn print_rows(rows: &[pb::TransactionSummary], json: bool) {
    let mut out = std::io::stdout().lock();
    for row in rows {
        if json {
            let _ = out.write_all(export::json_line(row).as_bytes());
        } else {
            let _ = writeln!(
                out,
                "{:<36} {:<36} {:<30} {:<5} {:<4} {:>16} {:<10} {:<16} {:>8}",
                row.transaction_id,
                row.r#type().as_str_name(),
                row.status().as_str_name(),
                row.store_id,
                row.terminal_id,
                money_text(row.amount.as_ref()),
                row.business_date,
                row.masked_pan,
                row.first_sequence
            );
        }
    }
}

async fn search(
    connection: &Connection,
    args: &FilterArgs,
    page_size: i32,
    all: bool,
) -> anyhow::Result<()> {
    let mut client = client(connection).await?;
    let filter = filter(args)?;
    let mut token = String::new();
    if !connection.json {
        println!(
            "{:<36} {:<36} {:<30} {:<5} {:<4} {:>16} {:<10} {:<16} {:>8}",
            "TRANSACTION", "TYPE", "STATUS", "STORE", "TERM", "AMOUNT", "DATE", "CARD", "SEQ"
        );
    }
    loop {
        let page = client
            .search_transactions(pb::SearchTransactionsRequest {
                context: Some(context(connection)),
                filter: Some(filter.clone()),
                page_size,
                page_token: token,
            })
            .await
            .map_err(|status| explain(&status))?
            .into_inner();
        print_rows(&page.transactions, connection.json);
        token = page.next_page_token;
        if token.is_empty() || !all {
            if !connection.json {
                eprintln!(
                    "as of chain sequence {}{}",
                    page.as_of_sequence,
                    if token.is_empty() {
                        ""
                    } else {
                        "; more pages (use --all)"
                    }
                );
            }
            return Ok(());
        }
    }
}

async fn history(connection: &Connection, transaction_id: String) -> anyhow::Result<()> {
    let mut client = client(connection).await?;
    let answer = client
        .get_transaction_history(pb::GetTransactionHistoryRequest {
            context: Some(context(connection)),
            transaction_id,
        })
        .await
        .map_err(|status| explain(&status))?
        .into_inner();
    if let Some(transaction) = &answer.transaction {
        print_rows(std::slice::from_ref(transaction), connection.json);
    }
    for event in &answer.events {
        let actor = event.actor.clone().unwrap_or_default();
        if connection.json {
            let mut details: Vec<_> = event.details.iter().collect();
            details.sort();
            println!(
                "{}",
                serde_json::json!({
                    "sequence": event.sequence.to_string(),
                    "event_type": event.event_type().as_str_name(),
                    "from_status": event.from_status().as_str_name(),
                    "to_status": event.to_status().as_str_name(),
                    "occurred_at": export::time(event.occurred_at.as_ref()),
                    "actor": actor.id,
                    "details": details,
                    "entry_hash_hex": event.entry_hash_hex,
                })
            );
        } else {
            println!(
                "  #{:<8} {:<34} {:<30} -> {:<30} {} {} {}",
                event.sequence,
                event.event_type().as_str_name(),
                event.from_status().as_str_name(),
                event.to_status().as_str_name(),
                export::time(event.occurred_at.as_ref()),
                actor.id,
                &event.entry_hash_hex[..16.min(event.entry_hash_hex.len())]
            );
        }
    }
    Ok(())
}

async fn verify(connection: &Connection, from: i64, to: i64) -> anyhow::Result<()> {
    let mut client = client(connection).await?;
    let answer = client
        .verify_chain(pb::VerifyChainRequest {
            context: Some(context(connection)),
            from_sequence: from,
            to_sequence: to,
        })
        .await
        .map_err(|status| explain(&status))?
        .into_inner();
    let checkpoint = answer.checkpoint.clone().unwrap_or_default();
    if connection.json {
        println!(
            "{}",
            serde_json::json!({
                "ok": answer.ok,
                "first_bad_sequence": answer.first_bad_sequence.to_string(),
                "problem": answer.problem().as_str_name(),
                "problem_detail": answer.problem_detail,
                "checked_from_sequence": answer.checked_from_sequence.to_string(),
                "checked_to_sequence": answer.checked_to_sequence.to_string(),
                "checked_count": answer.checked_count.to_string(),
                "head_hash_hex": answer.head_hash_hex,
                "checkpoint_sequence": checkpoint.sequence.to_string(),
                "checkpoint_key_id": checkpoint.key_id,
                "chain_head_sequence": answer.chain_head_sequence.to_string(),
            })
        );
    } else if answer.ok {
        println!(
            "chain OK: entries {}..{} ({} checked), head hash {}; signed up to checkpoint {} (key {}); chain head {}",
            answer.checked_from_sequence,
            answer.checked_to_sequence,
            answer.checked_count,
            answer.head_hash_hex,
            checkpoint.sequence,
            checkpoint.key_id,
            answer.chain_head_sequence
        );
    } else {
        println!(
            "chain BROKEN at sequence {}: {} — {}",
            answer.first_bad_sequence,
            answer.problem().as_str_name(),
            answer.problem_detail
        );
    }
    anyhow::ensure!(answer.ok, "the audit chain does not verify");
    Ok(())
}

async fn export_file(
    connection: &Connection,
    args: &FilterArgs,
    format: FormatArg,
    checkpoint: i64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use pb::export_transactions_response::Part;
    let mut client = client(connection).await?;
    let format = match format {
        FormatArg::Csv => pb::ExportFormat::Csv,
        FormatArg::Jsonl => pb::ExportFormat::JsonLines,
    };
    let mut stream = client
        .export_transactions(pb::ExportTransactionsRequest {
            context: Some(context(connection)),
            filter: Some(filter(args)?),
            format: format.into(),
            checkpoint_sequence: checkpoint,
        })
        .await
        .map_err(|status| explain(&status))?
        .into_inner();
    let partial = out.with_extension("partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let mut digest = sha2::Sha256::new();
    let mut bytes = 0_i64;
    let mut trailer = None;
    while let Some(message) = stream.message().await.map_err(|status| explain(&status))? {
        match message.part {
            Some(Part::Header(header)) => {
                eprintln!(
                    "exporting as of checkpoint {} ({})",
                    header.as_of_sequence, header.file_name
                );
            }
            Some(Part::Chunk(chunk)) => {
                digest.update(&chunk);
                bytes += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                file.write_all(&chunk)?;
            }
            Some(Part::Trailer(t)) => trailer = Some(t),
            None => {}
        }
    }
    file.flush()?;
    drop(file);
    let trailer =
        trailer.context("the export ended without a trailer: it is incomplete; run it again")?;
    let sha256 = hex::encode(digest.finalize());
    anyhow::ensure!(
        sha256 == trailer.content_sha256_hex && bytes == trailer.byte_count,
        "the file does not match the trailer (sha256 {sha256} vs {}, {bytes} vs {} bytes)",
        trailer.content_sha256_hex,
        trailer.byte_count
    );
    std::fs::rename(&partial, out)?;
    let checkpoint = trailer.checkpoint.unwrap_or_default();
    println!(
        "wrote {} ({} rows, {} bytes, sha256 {}) as of checkpoint {} signed by {} ({}); digest verified",
        out.display(),
        trailer.row_count,
        trailer.byte_count,
        trailer.content_sha256_hex,
        checkpoint.sequence,
        checkpoint.key_id,
        checkpoint.signature_hex
    );
    Ok(())
}

async fn bench_command(
    database_url: &str,
    rows: u64,
    searches: u64,
    keep: bool,
) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("temporary directory")?;
    let keystore = work.path().join("bench.keystore");
    let master = work.path().join("bench.master");
    posgate_sims::test_keys::write_test_keystore(&keystore, &master).await?;
    let hsm: Arc<dyn posgate_hsm::Hsm> = Arc::new(posgate_hsm::SoftwareHsm::open(
        &keystore,
        posgate_hsm::MasterKey::from_file(&master)?,
    )?);
    let (url, schema) = crate::clearing_cmd::bench_database(database_url).await?;
    let result = bench::run(&url, rows, searches, hsm, AuditConfig::default()).await;
    if let Some(schema) = schema.as_deref().filter(|_| keep) {
        println!("kept schema {schema}");
    } else if let Some(schema) = schema {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
    }
    let report = result?;
    println!(
        "audit bench: {} transactions, {} chain entries, {} signed checkpoints",
        report.transactions, report.entries, report.checkpoints
    );
    println!(
        "seed {:.1} s, chain (hash + bulk insert + sign) {:.1} s",
        report.seed.as_secs_f64(),
        report.chain.as_secs_f64()
    );
    println!(
        "SearchTransactions at the store, {} searches (page 100, filter mix, half deep pages): p50 {} us, p99 {} us, max {} us",
        report.search_count, report.search_us_p50, report.search_us_p99, report.search_us_max
    );
    for (label, p50, p99, max) in &report.search_kinds {
        println!("  {label:<40} p50 {p50:>8} us  p99 {p99:>8} us  max {max:>8} us");
    }
    println!(
        "VerifyChain over {} entries: {:.2} s, {:.0} entries/s",
        report.entries,
        report.verify.as_secs_f64(),
        report.verify_entries_per_second
    );
    Ok(())
}
