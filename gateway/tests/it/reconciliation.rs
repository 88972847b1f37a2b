//! Acknowledgement ingest and reconciliation on both backends: every kind
//! of mismatch injected into the partner's file is reported and listed;
//! malformed files are refused with line and field and nothing is stored.

use std::sync::Arc;

use chrono::NaiveDate;
use posgate_core::clearing::model::ClearingItem;
use posgate_core::clearing::recon::{IngestError, ingest};
use posgate_core::model::recon::ExceptionKind;
use posgate_core::ports::db::Database;
use posgate_sims::bank::ack::{self as sim_ack, AckFaults, AckItem};

use crate::support::{TestDb, backends, date, utc};

const PARTNER: &str = "bank:acquirer";

fn business_date() -> NaiveDate {
    date("2026-11-23")
}

/// posgate's items of the day: three sales, one voided the same day (two
/// items netting to zero), one refund.
fn our_items() -> Vec<ClearingItem> {
    let item = |id: &str, rrn: &str, kind: &str, amount_minor: i64| ClearingItem {
        partner: PARTNER.into(),
        business_date: business_date(),
        transaction_id: id.into(),
        reference: rrn.into(),
        kind: kind.into(),
        currency: "TWD".into(),
        amount_minor,
        fee_minor: 0,
        store_id: "S1".into(),
    };
    vec![
        item("tx-1", "000000000001", "card_sale", -10_000),
        item("tx-2", "000000000002", "card_sale", -25_000),
        item("tx-3", "000000000003", "card_sale", -7_000),
        item("tx-4", "000000000004", "card_sale", -5_000),
        item("tx-4", "000000000004", "card_void", 5_000),
        item("tx-5", "000000000005", "card_refund", 3_000),
    ]
}

/// The partner's view when it agrees with posgate on everything.
fn their_items() -> Vec<AckItem> {
    [
        ("000000000001", -10_000),
        ("000000000002", -25_000),
        ("000000000003", -7_000),
        ("000000000004", 0),
        ("000000000005", 3_000),
    ]
    .into_iter()
    .map(|(rrn, amount_minor)| AckItem {
        reference: rrn.into(),
        currency: "TWD".into(),
        amount_minor,
        rejected: None,
    })
    .collect()
}

fn ack_text(faults: &AckFaults) -> String {
    let items = sim_ack::apply_faults(their_items(), faults);
    sim_ack::render(PARTNER, business_date(), "ACK-1", &items)
}

async fn ingest_text(
    store: &dyn Database,
    text: &str,
) -> Result<posgate_core::clearing::recon::Ingested, IngestError> {
    ingest(
        store,
        text.as_bytes(),
        utc("2026-11-24T02:00:00Z"),
        |partner, day| async move {
            assert_eq!((partner.as_str(), day), (PARTNER, business_date()));
            Ok(our_items())
        },
    )
    .await
}

/// An agreeing file reconciles fully; one with a dropped item, a changed
/// amount, a rejection and an unknown item lists exactly those, on both backends.
#[tokio::test]
async fn injected_mismatches_are_each_reported_and_listed() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let clean = ingest_text(store.as_ref(), &ack_text(&AckFaults::default()))
            .await
            .unwrap();
        assert_eq!(clean.report.matched, 5, "{backend:?}");
        assert!(clean.report.exceptions.is_empty(), "{backend:?}");
        // The same bytes again change nothing.
        let again = ingest_text(store.as_ref(), &ack_text(&AckFaults::default()))
            .await
            .unwrap();
        assert!(!again.new);
        // A different file for the same partner and day is refused.
        let other = ack_text(&AckFaults {
            drop: vec!["000000000001".into()],
            ..AckFaults::default()
        });
        assert!(matches!(
            ingest_text(store.as_ref(), &other).await,
            Err(IngestError::Conflict { .. })
        ));
        assert!(store.exceptions(None, None).await.unwrap().is_empty());

        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let faults = AckFaults {
            drop: vec!["000000000001".into()],
            change_amount: vec![("000000000002".into(), -24_000)],
            reject: vec![("000000000003".into(), "R03".into())],
            extra: vec![AckItem {
                reference: "000000000099".into(),
                currency: "TWD".into(),
                amount_minor: -1_234,
                rejected: None,
            }],
        };
        let outcome = ingest_text(store.as_ref(), &ack_text(&faults))
            .await
            .unwrap();
        assert_eq!(
            outcome.report.matched, 2,
            "{backend:?}: the voided sale and the refund"
        );
        let listed = store
            .exceptions(Some(business_date()), Some(PARTNER))
            .await
            .unwrap();
        let summary: Vec<_> = listed
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.transaction_id.as_str(),
                    e.reference.as_str(),
                    e.ours_minor,
                    e.theirs_minor,
                    e.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    ExceptionKind::AmountMismatch,
                    "tx-2",
                    "000000000002",
                    Some(-25_000),
                    Some(-24_000),
                    "acknowledgement line 2"
                ),
                (
                    ExceptionKind::MissingAtPartner,
                    "tx-1",
                    "000000000001",
                    Some(-10_000),
                    None,
                    ""
                ),
                (
                    ExceptionKind::MissingAtPosgate,
                    "",
                    "000000000099",
                    None,
                    Some(-1_234),
                    "acknowledgement line 6"
                ),
                (
                    ExceptionKind::Rejected,
                    "tx-3",
                    "000000000003",
                    Some(-7_000),
                    Some(-7_000),
                    "R03"
                ),
            ],
            "{backend:?}"
        );
        assert_eq!(
            store.exceptions(None, Some("biller:OTHER")).await.unwrap(),
            []
        );
        assert_eq!(
            store
                .exceptions(Some(date("2026-11-24")), None)
                .await
                .unwrap(),
            []
        );
        assert_eq!(store.exceptions(None, None).await.unwrap().len(), 4);
    }
}

/// Malformed files (bad record type, wrong field count, bad amount, totals
/// that do not add up, missing end) are refused with line and field, and
/// nothing is stored: a good file for the same day is accepted afterwards.
#[tokio::test]
async fn malformed_files_are_refused_and_nothing_is_applied() {
    let good = ack_text(&AckFaults {
        drop: vec!["000000000001".into()],
        ..AckFaults::default()
    });
    let cases: Vec<(String, usize, &str)> = vec![
        (
            good.replacen("D||000000000002", "X||000000000002", 1),
            2,
            "record_type",
        ),
        (good.replacen("|-25000|A|", "|-25000|A", 1), 2, "line"),
        (good.replacen("|-25000|", "|-250.00|", 1), 2, "amount_minor"),
        (good.replacen("|-25000|", "|-25O00|", 1), 2, "amount_minor"),
        (
            good.replacen("T|TWD|4|-29000|0", "T|TWD|4|-28000|0", 1),
            6,
            "accepted_total",
        ),
        (good.replacen("T|TWD|4|", "T|TWD|5|", 1), 6, "items"),
        (good.replacen("E|4\n", "", 1), 6, "record_type"),
        (
            good.replacen("|TWD|-7000|", "|ZZZ|-7000|", 1),
            3,
            "currency",
        ),
    ];
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        for (text, line, field) in &cases {
            assert_ne!(text, &good, "the mutation applies");
            match ingest_text(store.as_ref(), text).await {
                Err(IngestError::Malformed(error)) => {
                    assert_eq!(
                        (error.line, error.field),
                        (*line, *field),
                        "{backend:?}: {error}"
                    );
                    let message = IngestError::Malformed(error).to_string();
                    assert!(
                        message.contains(&format!("line {line}, field {field}")),
                        "{message}"
                    );
                }
                other => panic!("{backend:?}: {field} accepted: {other:?}"),
            }
        }
        assert!(store.exceptions(None, None).await.unwrap().is_empty());
        let outcome = ingest_text(store.as_ref(), &good).await.unwrap();
        assert!(
            outcome.new,
            "{backend:?}: nothing of the refused files was stored"
        );
        assert_eq!(store.exceptions(None, None).await.unwrap().len(), 1);
    }
}

/// End to end: card sales, a refund and a void through the real gateway and
/// bank simulator; the day is closed and cleared; the simulator's
/// acknowledgement, written from its own ledger, reconciles item by item,
/// and the one amount the test makes it misstate is listed as an exception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_acknowledgement_from_its_own_ledger_reconciles() {
    use posgate_core::clearing::close::{ClearingContext, run_day};
    use posgate_core::clearing::model::{PartnerConfig, RawPartner};
    use posgate_core::clearing::recon;
    use posgate_proto::v1 as pb;

    use crate::cards::{CardWorld, context, sale, visa_ok};

    for backend in crate::support::backends() {
        let mut world = CardWorld::start(backend).await;
        let mut sales = Vec::new();
        for (index, amount) in [12_300, 4_500, 99_900].into_iter().enumerate() {
            let tx = world
                .client
                .authorize(sale(&format!("rc-{index}"), &visa_ok(), amount))
                .await
                .unwrap()
                .into_inner()
                .transaction
                .unwrap();
            sales.push(tx);
        }
        world
            .client
            .refund(pb::CardRefundRequest {
                context: context("rc-refund"),
                original_transaction_id: sales[0].transaction_id.clone(),
                amount: Some(pb::Money {
                    amount_minor: 2_300,
                    currency: "TWD".to_owned(),
                }),
                reason: "returned".to_owned(),
                card: None,
            })
            .await
            .unwrap();
        world
            .client
            .void(pb::VoidRequest {
                context: context("rc-void"),
                transaction_id: sales[1].transaction_id.clone(),
                reason: "wrong item".to_owned(),
            })
            .await
            .unwrap();
        world.drain_queue(std::time::Duration::from_secs(20)).await;

        let store = Arc::clone(world.gw.store());
        let hsm = world
            .gw
            .server
            .gateway
            .payments
            .as_ref()
            .unwrap()
            .hsm
            .clone();
        let partner = |id: &str| {
            let raw: RawPartner = toml::from_str(&format!(
                "id = \"{id}\"\nprofile = \"tw-fixed\"\ncurrency = \"TWD\"\nfee = {{ kind = \"fixed\", amount_minor = 0 }}"
            ))
            .unwrap();
            PartnerConfig::check(raw).unwrap()
        };
        let clearing = ClearingContext {
            store: Arc::clone(&store),
            hsm,
            signing_key: "clearing-sign".to_owned(),
            partners: vec![partner("bank:acquirer"), partner("bank:cobrand")],
            settlement: posgate_core::clearing::settle::SettlementConfig::default(),
            calendars: std::collections::BTreeMap::from([(
                "S001".to_owned(),
                posgate_core::model::business_day::BusinessCalendar {
                    time_zone: chrono_tz::Asia::Taipei,
                    cutoff: chrono::NaiveTime::from_hms_opt(23, 0, 0).unwrap(),
                },
            )]),
        };
        let day = crate::support::date("2026-11-23");
        let out = tempfile::tempdir().unwrap();
        run_day(
            &clearing,
            day,
            out.path(),
            utc("2026-11-24T01:00:00Z"),
            &mut |_| {},
        )
        .await
        .unwrap();

        let misstated = sales[2].rrn.clone();
        let ack = world.acquirer.acknowledgement(
            "bank:acquirer",
            day,
            &AckFaults {
                change_amount: vec![(misstated.clone(), 1)],
                ..AckFaults::default()
            },
        );
        let items_store = Arc::clone(&store);
        let ingested =
            recon::ingest(
                store.as_ref(),
                ack.as_bytes(),
                utc("2026-11-24T02:00:00Z"),
                |partner, date| async move {
                    recon::day_items(items_store.as_ref(), &partner, date).await
                },
            )
            .await
            .unwrap();
        // The refunded sale, its refund, and the voided sale (zero on both sides).
        assert_eq!(ingested.report.matched, 3, "{backend:?}");
        assert_eq!(
            ingested.report.exceptions.len(),
            1,
            "{backend:?}: {:?}",
            ingested.report.exceptions
        );
        let exception = &ingested.report.exceptions[0];
        assert_eq!(exception.reference, misstated);
        assert_eq!(exception.kind.as_str(), "amount_mismatch");
        let listed = store
            .exceptions(Some(day), Some("bank:acquirer"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        world.gw.stop().await;
    }
}
