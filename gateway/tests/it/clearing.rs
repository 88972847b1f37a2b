//! Clearing: deterministic files, verification that pinpoints tampering,
//! closed days that never change, late lines as next-day adjustments,
//! refusal to close an unbalanced day, and the scheduler's lock, on both backends.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use posgate::bench::clearing as bench;
use posgate_core::clearing::close::{ClearingContext, ClearingError, files_created_at, run_day};
use posgate_core::clearing::model::{PartnerConfig, RawPartner};
use posgate_core::clearing::sign::Verifier;
use posgate_core::clearing::{schedule, verify};
use posgate_core::model::business_day::BusinessCalendar;
use posgate_core::model::idempotency::FingerprintBuilder;
use posgate_core::model::transaction::{Event, SettlementLine, TransactionStatus};
use posgate_core::model::{IdempotencyKey, StoredAnswer};
use posgate_core::ports::db::{Change, Database, StatusChange, WriteOutcome, WriteRequest};
use posgate_hsm::{ClearKey, Hsm, KeyRef, KeySpec, SoftwareHsm};
use posgate_sims::test_keys::CLEARING_SIGN_SEED;

use crate::support::{Backend, TestDb, backends, date, utc};

const DAY: &str = "2030-01-15";

async fn hsm() -> Arc<dyn Hsm> {
    let hsm = SoftwareHsm::in_memory();
    hsm.import_key(
        "clearing-sign",
        KeySpec::ED25519,
        ClearKey::from_hex(CLEARING_SIGN_SEED).unwrap(),
    )
    .await
    .unwrap();
    Arc::new(hsm)
}

fn partner(toml_text: &str) -> PartnerConfig {
    let raw: RawPartner = toml::from_str(toml_text).unwrap();
    PartnerConfig::check(raw).unwrap()
}

fn calendars() -> std::collections::BTreeMap<String, BusinessCalendar> {
    std::collections::BTreeMap::from([
        (
            "S001".to_owned(),
            BusinessCalendar {
                time_zone: chrono_tz::Asia::Taipei,
                cutoff: chrono::NaiveTime::from_hms_opt(23, 0, 0).unwrap(),
            },
        ),
        (
            "S101".to_owned(),
            BusinessCalendar {
                time_zone: chrono_tz::Asia::Tokyo,
                cutoff: chrono::NaiveTime::MIN,
            },
        ),
    ])
}

async fn context(store: Arc<dyn Database>) -> ClearingContext {
    ClearingContext {
        store,
        hsm: hsm().await,
        signing_key: "clearing-sign".to_owned(),
        partners: vec![
            partner(
                r#"id = "biller:TPC"
                profile = "tw-fixed"
                currency = "TWD"
                fee = { kind = "fixed", amount_minor = 200 }"#,
            ),
            partner(
                r#"id = "biller:TKGAS"
                profile = "jp-fixed"
                currency = "JPY"
                fee = { kind = "tiered", tiers = [ { up_to_minor = 10000, fee_minor = 10 }, { up_to_minor = 999999999999, fee_minor = 30 } ] }"#,
            ),
            partner(
                r#"id = "bank:acquirer"
                profile = "tw-fixed"
                currency = "TWD"
                fee = { kind = "percent", rate_percent = "1.5", min_minor = 0, max_minor = 999999999999, rounding = "half-even" }"#,
            ),
        ],
        settlement: posgate_core::clearing::settle::SettlementConfig::default(),
        calendars: calendars(),
    }
}

/// A seeded, migrated database for one business day of `rows` transactions.
async fn seeded(backend: Backend, rows: u64) -> (TestDb, Arc<dyn Database>) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    bench::seed(&db.url, rows, date(DAY), utc("2030-01-15T03:00:00Z"))
        .await
        .unwrap();
    (db, store)
}

fn read_dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

async fn run(
    context: &ClearingContext,
    day: NaiveDate,
    out: &Path,
) -> Result<posgate_core::clearing::model::DayRun, ClearingError> {
    run_day(context, day, out, utc("2030-01-16T01:00:00Z"), &mut |_| {}).await
}

/// Running a day twice, and on the other backend, gives identical bytes; net positions sum to zero.
#[tokio::test]
async fn files_are_deterministic_across_runs_and_backends() {
    let mut first_backend_files: Option<Vec<(String, Vec<u8>)>> = None;
    for backend in backends() {
        let (db, store) = seeded(backend, 300).await;
        let context = context(store).await;
        let first = run(&context, date(DAY), &db.dir.path().join("a"))
            .await
            .unwrap();
        let second = run(&context, date(DAY), &db.dir.path().join("b"))
            .await
            .unwrap();
        assert_eq!(first.positions, second.positions, "{backend:?}");
        let files_a = read_dir_bytes(&db.dir.path().join("a").join(DAY));
        let files_b = read_dir_bytes(&db.dir.path().join("b").join(DAY));
        assert_eq!(
            files_a, files_b,
            "{backend:?}: a rerun gives the same bytes"
        );
        // 5 partners x (dat, csv) + positions, each with a signature, + manifest and its signature.
        assert_eq!(files_a.len(), 24, "{backend:?}");
        let mut sums = std::collections::BTreeMap::new();
        for position in &first.positions {
            let entry = sums.entry(position.currency.clone()).or_insert((0, 0));
            entry.0 += position.gross_minor;
            entry.1 += position.net_minor;
        }
        assert!(sums.values().all(|sums| *sums == (0, 0)), "{sums:?}");
        let tpc = first
            .positions
            .iter()
            .find(|position| position.partner == "biller:TPC")
            .unwrap();
        assert_eq!(tpc.fees_minor, 200 * i64::try_from(tpc.items / 2).unwrap());
        if let Some(previous) = &first_backend_files {
            assert_eq!(
                previous, &files_a,
                "SQLite and PostgreSQL write the same bytes"
            );
        }
        first_backend_files = Some(files_a);
    }
}

/// The header carries the deterministic creation time: the last store's cutoff closing the day.
#[tokio::test]
async fn header_creation_time_is_the_close_of_the_day() {
    let created = files_created_at(calendars().values(), date(DAY));
    // Tokyo's midnight ending the 15th (15:00Z) is later than Taipei's 23:00 (15:00Z): equal here.
    assert_eq!(created, utc("2030-01-15T15:00:00Z"));
    let (db, store) = seeded(Backend::Sqlite, 20).await;
    let context = context(store).await;
    run(&context, date(DAY), db.dir.path()).await.unwrap();
    let dat = std::fs::read_to_string(db.dir.path().join(DAY).join("biller-TPC_20300115_01.dat"))
        .unwrap();
    let header = dat.lines().next().unwrap();
    assert_eq!(header.len(), 160);
    assert_eq!(&header[57..65], "20300115");
    // 15:00Z is 23:00 in Taipei.
    assert_eq!(&header[65..79], "20300115230000");
    assert_eq!(&header[79..87], "TWFIX001");
    let jp = std::fs::read_to_string(db.dir.path().join(DAY).join("biller-TKGAS_20300115_01.dat"))
        .unwrap();
    let header = jp.lines().next().unwrap();
    assert_eq!(header.len(), 200);
    // 15:00Z is midnight of the 16th in Tokyo.
    assert_eq!(&header[68..82], "20300116000000");
    let detail = jp.lines().nth(1).unwrap();
    assert_eq!(&detail[..1], "2");
    assert_eq!(&detail[10..12], "01", "kind code of a collection");
}

/// Verify passes on untouched files and names the line, field and total of each tampering.
#[tokio::test]
async fn verify_pinpoints_tampering() {
    let (db, store) = seeded(Backend::Sqlite, 50).await;
    let context = context(store).await;
    run(&context, date(DAY), db.dir.path()).await.unwrap();
    let day_dir = db.dir.path().join(DAY);
    let public_key = context
        .hsm
        .public_key(&KeyRef::latest("clearing-sign"))
        .await
        .unwrap();
    let verifier = Verifier::PublicKey(public_key.as_bytes().to_vec());
    for entry in std::fs::read_dir(&day_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "sig") {
            continue;
        }
        let report = verify::verify_file(&path, &verifier).await;
        assert!(report.is_ok(), "{}: {:?}", path.display(), report.problems);
    }

    // Change one detail amount digit: hash, signature and the TWD trailer totals all disagree.
    let dat = day_dir.join("biller-TPC_20300115_01.dat");
    let mut bytes = std::fs::read(&dat).unwrap();
    let line_3 = 2 * 161; // start of line 3
    let digit = line_3 + 109; // last amount digit (position 110)
    bytes[digit] = if bytes[digit] == b'9' {
        b'8'
    } else {
        bytes[digit] + 1
    };
    std::fs::write(&dat, &bytes).unwrap();
    let report = verify::verify_file(&dat, &verifier).await;
    let problems = report.problems.join("\n");
    assert!(problems.contains("has SHA-256"), "{problems}");
    assert!(problems.contains("signature does not match"), "{problems}");
    assert!(
        problems.contains("positions 14-31 (amount total) of the TWD trailer"),
        "{problems}"
    );
    assert!(
        problems.contains("positions 70-87 (hash total)"),
        "{problems}"
    );

    // A non-digit in a fee field is named by line and positions.
    bytes[line_3 + 111] = b'X';
    std::fs::write(&dat, &bytes).unwrap();
    let report = verify::verify_file(&dat, &verifier).await;
    let problems = report.problems.join("\n");
    assert!(
        problems.contains("line 3, positions 112-124 (fee)"),
        "{problems}"
    );

    // A forged manifest line is caught by the manifest's signature.
    let manifest = day_dir.join("MANIFEST_20300115.txt");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("file ", "file  ");
    std::fs::write(&manifest, text).unwrap();
    let report = verify::verify_file(&manifest, &verifier).await;
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("MANIFEST_20300115.txt.sig")),
        "{:?}",
        report.problems
    );
}

fn cancel_request(id: &str, amount: i64, fee: i64, business_date: NaiveDate) -> WriteRequest {
    let at = utc("2030-01-16T02:00:00Z");
    let line = |party: &str, kind: &str, amount_minor: i64| SettlementLine {
        party: party.to_owned(),
        kind: kind.to_owned(),
        currency: "TWD".to_owned(),
        amount_minor,
    };
    WriteRequest {
        key: IdempotencyKey {
            store_id: "S001".into(),
            terminal_id: "T01".into(),
            client_request_id: format!("cancel-{id}"),
        },
        answer: StoredAnswer {
            fingerprint: FingerprintBuilder::new("CancelBill")
                .value("transaction_id", id)
                .finish(),
            transaction_id: id.to_owned(),
            response: b"cancelled".to_vec(),
            pending: false,
        },
        created_at: at,
        expires_at: at + chrono::Duration::days(30),
        change: Change::Transition(StatusChange {
            transaction_id: id.to_owned(),
            store_id: "S001".to_owned(),
            from: TransactionStatus::Paid,
            to: TransactionStatus::Cancelled,
            at,
            reason: "late cancel".to_owned(),
            business_date,
        }),
        lines: vec![
            line("store:S001", "collection", amount),
            line("biller:TPC", "collection", -amount),
            line("biller:TPC", "fee", fee),
            line("chain", "fee", -fee),
        ],
        event: Event {
            event_type: "bill_cancelled".into(),
            from_status: Some(TransactionStatus::Paid),
            to_status: TransactionStatus::Cancelled,
            actor: "test".into(),
            detail: String::new(),
        },
        claims_slip: false,
    }
}

/// A cancel dated on a closed day lands on the next day as adjustments; the closed day's files never change.
#[tokio::test]
async fn late_lines_become_next_day_adjustments() {
    for backend in backends() {
        let (db, store) = seeded(backend, 40).await;
        let context = context(Arc::clone(&store)).await;
        run(&context, date(DAY), &db.dir.path().join("first"))
            .await
            .unwrap();
        let closed_totals = store.day_totals(date(DAY)).await.unwrap();

        // Transaction 1 is a Taiwan Power bill of 10000 + 7919 minor units with a 1000 fee.
        let id = "01900000-0000-7000-8000-000000000001";
        let written = store
            .write(cancel_request(id, 17_919, 1_000, date(DAY)))
            .await
            .unwrap();
        assert_eq!(written, WriteOutcome::Written, "{backend:?}");
        assert_eq!(
            store.day_totals(date(DAY)).await.unwrap(),
            closed_totals,
            "{backend:?}: the closed day is unchanged"
        );
        let next = date(DAY).succ_opt().unwrap();
        let next_totals = store.day_totals(next).await.unwrap();
        assert_eq!(next_totals.len(), 3, "{backend:?}: {next_totals:?}");

        // Rerunning the closed day reproduces its files exactly (the registry agrees).
        run(&context, date(DAY), &db.dir.path().join("again"))
            .await
            .unwrap();
        assert_eq!(
            read_dir_bytes(&db.dir.path().join("first").join(DAY)),
            read_dir_bytes(&db.dir.path().join("again").join(DAY)),
            "{backend:?}"
        );

        // The next day's file carries the reversal as adjustments (closed once it has ended).
        let day = run_day(
            &context,
            next,
            db.dir.path(),
            utc("2030-01-17T01:00:00Z"),
            &mut |_| {},
        )
        .await
        .unwrap();
        let csv = std::fs::read_to_string(
            db.dir
                .path()
                .join("2030-01-16")
                .join("biller-TPC_20300116_01.csv"),
        )
        .unwrap();
        assert!(
            csv.contains(&format!(
                "{id},R000000000000001,adjustment:collection,TWD,-17919,-200,S001"
            )),
            "{backend:?}: {csv}"
        );
        assert!(
            csv.contains(&format!(
                "{id},R000000000000001,adjustment:fee,TWD,1000,0,S001"
            )),
            "{backend:?}: {csv}"
        );
        let tpc = day
            .positions
            .iter()
            .find(|position| position.partner == "biller:TPC")
            .unwrap();
        assert_eq!(
            (tpc.gross_minor, tpc.fees_minor, tpc.net_minor),
            (-16_919, -200, -16_719)
        );
    }
}

/// A day whose lines do not sum to zero is not closed and no file is written.
#[tokio::test]
async fn unbalanced_day_is_refused() {
    use sqlx::Connection as _;
    for backend in backends() {
        let (db, store) = seeded(backend, 10).await;
        let insert = "INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, amount_minor, created_at, \
             store_id, reference) VALUES ('01900000-0000-7000-8000-000000000001', $1, 'chain', 'fee', 'TWD', 5, $2, 'S001', '')";
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query(insert)
                    .bind(date(DAY))
                    .bind(utc("2030-01-15T03:00:00Z"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query(insert)
                    .bind(date(DAY))
                    .bind(utc("2030-01-15T03:00:00Z"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        let context = context(Arc::clone(&store)).await;
        let error = run(&context, date(DAY), db.dir.path()).await.unwrap_err();
        assert!(
            matches!(&error, ClearingError::Unbalanced { currency, sum_minor: 5, .. } if currency == "TWD"),
            "{backend:?}: {error}"
        );
        assert_eq!(
            store.closed_day(date(DAY)).await.unwrap(),
            None,
            "{backend:?}"
        );
        assert!(!db.dir.path().join(DAY).exists());
    }
}

/// A day is not closed before every store's cutoff: asked 25 minutes early
/// the run names the store still open and closes nothing; after it, it closes.
#[tokio::test]
async fn day_is_not_closed_before_every_cutoff() {
    for backend in backends() {
        let (db, store) = seeded(backend, 10).await;
        let mut context = context(Arc::clone(&store)).await;
        // A Taipei store closing at 23:30 local: 15:30Z, after the others' 15:00Z.
        context.calendars.insert(
            "S002".to_owned(),
            BusinessCalendar {
                time_zone: chrono_tz::Asia::Taipei,
                cutoff: chrono::NaiveTime::from_hms_opt(23, 30, 0).unwrap(),
            },
        );
        let early = utc("2030-01-15T15:05:00Z");
        let error = run_day(&context, date(DAY), db.dir.path(), early, &mut |_| {})
            .await
            .unwrap_err();
        match &error {
            ClearingError::DayNotEnded { open, .. } => {
                assert_eq!(
                    open,
                    &vec![("S002".to_owned(), utc("2030-01-15T15:30:00Z"))],
                    "{backend:?}"
                );
            }
            other => panic!("{backend:?}: {other}"),
        }
        assert!(error.to_string().contains("store S002"), "{error}");
        assert_eq!(
            store.closed_day(date(DAY)).await.unwrap(),
            None,
            "{backend:?}: nothing closed"
        );
        assert!(!db.dir.path().join(DAY).exists(), "{backend:?}: no files");

        let on_time = utc("2030-01-15T15:30:00Z");
        run_day(&context, date(DAY), db.dir.path(), on_time, &mut |_| {})
            .await
            .unwrap();
        assert!(store.closed_day(date(DAY)).await.unwrap().is_some());
    }
}

/// The scheduler closes only ended days, once; on PostgreSQL a second instance does not get the lock.
#[tokio::test]
async fn scheduler_closes_ended_days_once_under_one_lock() {
    for backend in backends() {
        let (db, store) = seeded(backend, 10).await;
        let context = context(Arc::clone(&store)).await;
        // 15:04Z on the 15th: the day ended at 15:00Z, but the grace has not passed.
        let early = utc("2030-01-15T15:04:00Z");
        assert!(!schedule::ended_dates(&context, early).contains(&date(DAY)));
        let later = utc("2030-01-15T15:06:00Z");
        let ran = schedule::tick(&context, db.dir.path(), later)
            .await
            .unwrap();
        assert!(ran.contains(&date(DAY)), "{backend:?}: {ran:?}");
        let again = schedule::tick(&context, db.dir.path(), later)
            .await
            .unwrap();
        assert!(again.is_empty(), "{backend:?}: {again:?}");
        if backend == Backend::Postgres {
            let held = store.try_clearing_lock().await.unwrap();
            assert!(held.is_some());
            let second = posgate_store::open(&db.url, 2).await.unwrap();
            assert!(second.try_clearing_lock().await.unwrap().is_none());
            drop(held);
        }
    }
}

/// Settlement instructions are written with the clearing files, listed in
/// the signed manifest and signed, so `verify` covers them too.
#[tokio::test]
async fn settlement_instructions_are_under_the_signed_manifest() {
    let (db, store) = seeded(Backend::Sqlite, 50).await;
    let mut context = context(store).await;
    context.partners.push(partner(
        r#"id = "biller:TWATER"
        profile = "tw-fixed"
        currency = "TWD""#,
    ));
    context.partners.push(partner(
        r#"id = "bank:cobrand"
        profile = "jp-fixed"
        currency = "JPY""#,
    ));
    // Every partner with a position needs its bank account, posgate one per currency.
    for (index, partner) in context.partners.iter_mut().enumerate() {
        partner.bank_code = Some(format!("00{index}1234"));
        partner.account_number = Some(format!("55500{index}"));
    }
    for currency in ["TWD", "JPY"] {
        context.settlement.accounts.insert(
            currency.to_owned(),
            posgate_core::clearing::settle::OriginAccount {
                bank_code: "0040037".to_owned(),
                account_number: "123456789012".to_owned(),
                name: "posgate chain".to_owned(),
            },
        );
    }
    let day = run(&context, date(DAY), db.dir.path()).await.unwrap();
    let day_dir = db.dir.path().join(DAY);
    let instruction = day
        .files
        .iter()
        .find(|path| {
            path.to_string_lossy().contains("JPY") && !path.to_string_lossy().ends_with(".sig")
        })
        .unwrap_or_else(|| panic!("a JPY instruction file among {:?}", day.files))
        .clone();
    let name = instruction
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let manifest = std::fs::read_to_string(day_dir.join("MANIFEST_20300115.txt")).unwrap();
    assert!(
        manifest.contains(&name),
        "{name} not in the manifest:\n{manifest}"
    );
    assert!(day_dir.join(format!("{name}.sig")).exists());
    let public_key = context
        .hsm
        .public_key(&KeyRef::latest("clearing-sign"))
        .await
        .unwrap();
    let verifier = Verifier::PublicKey(public_key.as_bytes().to_vec());
    let report = verify::verify_file(&instruction, &verifier).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    // A changed instruction file is caught by the manifest.
    let mut bytes = std::fs::read(&instruction).unwrap();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
    std::fs::write(&instruction, &bytes).unwrap();
    let report = verify::verify_file(&instruction, &verifier).await;
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("has SHA-256")),
        "{:?}",
        report.problems
    );
    // A changed amount is also named by the trailer totals it breaks.
    let mut bytes = std::fs::read(&instruction).unwrap();
    let amount_last_digit = 121 + 111;
    bytes[amount_last_digit] = if bytes[amount_last_digit] == b'1' {
        b'2'
    } else {
        b'1'
    };
    std::fs::write(&instruction, &bytes).unwrap();
    let report = verify::verify_file(&instruction, &verifier).await;
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("(total credited)")
                || problem.contains("(total debited)")),
        "{:?}",
        report.problems
    );
}

/// Config load refuses a clearing partner whose items can be in another
/// currency than its own (the old example: JPY co-brand partner, TWD card
/// store), naming the partner and both currencies; the example loads.
#[test]
fn partner_currency_must_match_its_items() {
    use posgate_core::config::{Config, ConfigError};
    let example = include_str!("../../../config/posgate.example.toml");
    Config::parse(example).expect("the example config loads");

    let mixed = example.replace(
        r#"stores = { S001 = { merchant_id = "000000000000001", currency = "TWD" } }"#,
        r#"stores = { S001 = { merchant_id = "000000000000001", currency = "TWD" }, S101 = { merchant_id = "000000000000101", currency = "JPY" } }"#,
    );
    assert_ne!(mixed, example, "the example's [card] stores line moved");
    match Config::parse(&mixed) {
        Err(ConfigError::Invalid { key, reason }) => {
            assert!(key.ends_with(".currency"), "{key}");
            assert!(
                reason.contains("partner bank:acquirer settles in TWD")
                    && reason.contains("JPY")
                    && reason.contains("store S101"),
                "{reason}"
            );
        }
        other => panic!("a TWD partner with JPY card sales loaded: {other:?}"),
    }

    let jpy_cobrand = example.replace(
        "id = \"bank:cobrand\"\nprofile = \"tw-fixed\"\ncurrency = \"TWD\"",
        "id = \"bank:cobrand\"\nprofile = \"jp-fixed\"\ncurrency = \"JPY\"",
    );
    assert_ne!(
        jpy_cobrand, example,
        "the example's bank:cobrand section moved"
    );
    let error = Config::parse(&jpy_cobrand).unwrap_err().to_string();
    assert!(
        error.contains("partner bank:cobrand settles in JPY")
            && error.contains("TWD (card sales at store S001 on link cobrand)"),
        "{error}"
    );
}
