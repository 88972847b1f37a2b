//! `posgate audit bench`: seeds N transactions (the clearing benchmark's
//! bulk seed: bills and card sales) with their events, chains the events in
//! bulk (hashes computed here, rows inserted in multi-row statements, a
//! signed checkpoint every `checkpoint_every_entries`), then measures
//! `SearchTransactions` latency at the store (a mix of filters and deep
//! pages, p50/p99) and `VerifyChain` speed (entries per second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use posgate_hsm::{Hsm, KeyRef};
use sqlx::Connection as _;

use crate::bench::clearing::{Dialect, seed};
use posgate_core::audit::chain::{GENESIS_HASH, canonical_time, checkpoint_statement, entry_hash};
use posgate_core::audit::{Audit, AuditConfig, verify};
use posgate_core::model::chain::{EntryContent, EntryType};
use posgate_core::ports::db::audit::{KindMatch, SearchFilter};

/// Chain rows per multi-row INSERT: 11 values each stays under SQLite's
/// 32,766 bind parameters and PostgreSQL's 65,535.
const INSERT_ROWS: usize = 2_000;
/// Events read per round while chaining.
const READ_ROWS: i64 = 20_000;

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub transactions: u64,
    pub entries: i64,
    pub checkpoints: i64,
    pub seed: Duration,
    pub chain: Duration,
    pub search_count: u64,
    pub search_us_p50: u64,
    pub search_us_p99: u64,
    pub search_us_max: u64,
    /// Per search kind of the mix: (label, p50 us, p99 us, max us).
    pub search_kinds: Vec<(&'static str, u64, u64, u64)>,
    pub verify: Duration,
    pub verify_entries_per_second: f64,
}

/// Card and bill events of the seeded transactions: a bill is paid in one
/// event; a card sale is sent, then approved.
const SEED_EVENTS: [&str; 2] = [
    "INSERT INTO transaction_events (transaction_id, event_type, from_status, to_status, actor, detail, at) \
     SELECT id, CASE WHEN kind = 'bill_payment' THEN 'bill_paid' ELSE 'sent' END, NULL, \
     CASE WHEN kind = 'bill_payment' THEN 'paid' ELSE 'in_progress' END, \
     'store/' || store_id || '/terminal/' || terminal_id || '/operator/' || operator_id, '', created_at \
     FROM transactions ORDER BY id",
    "INSERT INTO transaction_events (transaction_id, event_type, from_status, to_status, actor, detail, at) \
     SELECT id, 'approved', 'in_progress', 'captured', 'bank', 'response code 00', created_at \
     FROM transactions WHERE kind = 'card_payment' ORDER BY id",
];

type EventRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    DateTime<Utc>,
);

/// Chains every event in id order on a connection, signing a checkpoint
/// every `every` entries; returns (entries, checkpoints).
macro_rules! chain_all {
    ($conn:expr, $hsm:expr, $label:expr, $every:expr, $signed_at:expr) => {{
        let conn = $conn;
        let mut prev = GENESIS_HASH.to_vec();
        let (mut sequence, mut after, mut checkpoints) = (0_i64, 0_i64, 0_i64);
        loop {
            let rows: Vec<EventRow> = sqlx::query_as(posgate_store::bench::SELECT_EVENTS_AFTER)
                .bind(after)
                .bind(READ_ROWS)
                .fetch_all(&mut *conn)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            let mut entries = Vec::with_capacity(rows.len());
            for (_, transaction_id, event_type, from_status, to_status, actor, detail, at) in rows {
                sequence += 1;
                let content = EntryContent {
                    entry_type: EntryType::Event,
                    transaction_id: Some(transaction_id),
                    event_type,
                    from_status,
                    to_status: Some(to_status),
                    actor,
                    detail,
                    occurred_at: canonical_time(at),
                };
                let hash = entry_hash(&prev, sequence, &content).to_vec();
                entries.push((
                    sequence,
                    content,
                    std::mem::replace(&mut prev, hash.clone()),
                    hash,
                ));
                if sequence % $every == 0 {
                    let tag = $hsm
                        .sign(
                            &KeyRef::latest($label),
                            &checkpoint_statement(sequence, &prev),
                        )
                        .await?;
                    sqlx::query(posgate_store::bench::INSERT_CHECKPOINT)
                        .bind(sequence)
                        .bind(&prev)
                        .bind(tag.bytes)
                        .bind($label)
                        .bind(i32::try_from(tag.key_version).unwrap_or(i32::MAX))
                        .bind($signed_at)
                        .execute(&mut *conn)
                        .await?;
                    checkpoints += 1;
                }
            }
            for chunk in entries.chunks(INSERT_ROWS) {
                let mut builder = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_chain (sequence, entry_type, transaction_id, event_type, \
                     from_status, to_status, actor, detail, occurred_at, prev_hash, entry_hash) ",
                );
                builder.push_values(chunk, |mut row, (sequence, content, prev_hash, hash)| {
                    row.push_bind(*sequence)
                        .push_bind(content.entry_type.as_str())
                        .push_bind(content.transaction_id.clone())
                        .push_bind(content.event_type.clone())
                        .push_bind(content.from_status.clone())
                        .push_bind(content.to_status.clone())
                        .push_bind(content.actor.clone())
                        .push_bind(content.detail.clone())
                        .push_bind(content.occurred_at.clone())
                        .push_bind(prev_hash.clone())
                        .push_bind(hash.clone());
                });
                builder.build().execute(&mut *conn).await?;
            }
        }
        sqlx::query("UPDATE audit_head SET sequence = $1, head_hash = $2 WHERE id = 1")
            .bind(sequence)
            .bind(&prev)
            .execute(&mut *conn)
            .await?;
        (sequence, checkpoints)
    }};
}

/// Seeds events for the seeded transactions and chains them.
async fn seed_chain(
    url: &str,
    hsm: &dyn Hsm,
    label: &str,
    every: i64,
    signed_at: DateTime<Utc>,
) -> anyhow::Result<(i64, i64)> {
    let dialect = Dialect::of_url(url).context("unknown database url")?;
    Ok(match dialect {
        Dialect::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            sqlx::query("PRAGMA synchronous = OFF")
                .execute(&mut conn)
                .await?;
            let mut tx = conn.begin().await?;
            for statement in SEED_EVENTS {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            let counts = chain_all!(&mut *tx, hsm, label, every, signed_at);
            tx.commit().await?;
            sqlx::query("ANALYZE audit_chain")
                .execute(&mut conn)
                .await?;
            counts
        }
        Dialect::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let mut tx = conn.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = OFF")
                .execute(&mut *tx)
                .await?;
            for statement in SEED_EVENTS {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            let counts = chain_all!(&mut *tx, hsm, label, every, signed_at);
            tx.commit().await?;
            sqlx::query("ANALYZE audit_chain, transaction_events")
                .execute(&mut conn)
                .await?;
            counts
        }
    })
}

/// What each search of the mix looks for, by `index % 8`.
pub const SEARCH_KINDS: [&str; 8] = [
    "no filter",
    "store S101 (30%)",
    "partner TKGAS (20%)",
    "card sales, status captured as of",
    "amount TWD 1000.00-2000.00",
    "one client_request_id of S001/T01",
    "PAN fingerprint (all cards)",
    "no filter",
];

/// The searches of the latency mix, cycled: unfiltered and filtered first
/// pages, a selective key look-up, a status filter, and deep pages.
fn search_mix(index: u64, rows: u64, head: i64) -> (SearchFilter, i64) {
    let deep = i64::try_from((index * 7919) % rows.max(1)).unwrap_or(0);
    let filter = match index % 8 {
        1 => SearchFilter {
            store_ids: vec!["S101".to_owned()],
            ..SearchFilter::default()
        },
        2 => SearchFilter {
            partner_ids: vec!["TKGAS".to_owned()],
            ..SearchFilter::default()
        },
        3 => SearchFilter {
            statuses: vec!["captured"],
            kinds: vec![KindMatch {
                kind: "card_payment",
                card_type: Some("sale"),
            }],
            ..SearchFilter::default()
        },
        4 => SearchFilter {
            amount_min: Some((100_000, "TWD".to_owned())),
            amount_max: Some((200_000, "TWD".to_owned())),
            ..SearchFilter::default()
        },
        5 => SearchFilter {
            store_ids: vec!["S001".to_owned()],
            terminal_ids: vec!["T01".to_owned()],
            client_request_id: Some(format!("bench-{}", deep + 1)),
            ..SearchFilter::default()
        },
        6 => SearchFilter {
            pan_fingerprints: Some(vec!["bench".to_owned()]),
            ..SearchFilter::default()
        },
        _ => SearchFilter::default(), // 0 and 7: no filter
    };
    // Every other search starts deep in the chain, as a later page does.
    let after = if index % 2 == 1 {
        (deep * head) / i64::try_from(rows.max(1)).unwrap_or(1)
    } else {
        0
    };
    (filter, after)
}

/// Runs the benchmark on an empty database at `url`.
pub async fn run(
    url: &str,
    rows: u64,
    searches: u64,
    hsm: Arc<dyn Hsm>,
    config: AuditConfig,
) -> anyhow::Result<BenchReport> {
    let store = posgate_store::open(url, 4).await?;
    store.migrate().await?;
    let date = NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
    let created_at = DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z")?.with_timezone(&Utc);
    let started = Instant::now();
    seed(url, rows, date, created_at).await?;
    let seeded = started.elapsed();
    let started = Instant::now();
    let (entries, checkpoints) = seed_chain(
        url,
        hsm.as_ref(),
        &config.signing_key,
        config.checkpoint_every_entries,
        created_at,
    )
    .await?;
    let chained = started.elapsed();
    let audit = Audit {
        db: Arc::clone(&store),
        hsm,
        config,
        pan_fingerprint_key: "pan-fingerprint".to_owned(),
    };
    let (head, _) = store.chain_head().await?;
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut kinds: Vec<hdrhistogram::Histogram<u64>> = (0..SEARCH_KINDS.len())
        .map(|_| hdrhistogram::Histogram::new(3))
        .collect::<Result<_, _>>()?;
    for index in 0..searches {
        let (filter, after) = search_mix(index, rows, head);
        let started = Instant::now();
        let page = store.search_transactions(&filter, head, after, 101).await?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.record(micros)?;
        kinds[usize::try_from(index % 8).unwrap_or(0)].record(micros)?;
        std::hint::black_box(page);
    }
    let started = Instant::now();
    let report = verify::verify(&audit, 1, head).await?;
    let verified = started.elapsed();
    if let Some(failure) = report.failure {
        anyhow::bail!("the seeded chain does not verify: {failure:?}");
    }
    Ok(BenchReport {
        transactions: rows,
        entries,
        checkpoints,
        seed: seeded,
        chain: chained,
        search_count: searches,
        search_us_p50: histogram.value_at_quantile(0.50),
        search_us_p99: histogram.value_at_quantile(0.99),
        search_us_max: histogram.max(),
        search_kinds: SEARCH_KINDS
            .iter()
            .zip(&kinds)
            .map(|(label, h)| {
                (
                    *label,
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max(),
                )
            })
            .collect(),
        verify: verified,
        verify_entries_per_second: f64::from(
            u32::try_from(report.checked_count).unwrap_or(u32::MAX),
        ) / verified.as_secs_f64().max(1e-9),
    })
}
