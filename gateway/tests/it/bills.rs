//! Bill collection end to end through the real gRPC API: inquire, pay,
//! cancel, get; business days across cutoff and midnight; due dates.

use posgate_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{
    NowForTest as _, TestGateway, backends, context, jp_slip, money, tw_pay, tw_slip, utc,
};

fn cancel_request(
    key: &str,
    transaction_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> pb::CancelBillRequest {
    pb::CancelBillRequest {
        context: context("S001", "T02", key, at),
        transaction_id: transaction_id.to_owned(),
        reason: "customer changed mind".to_owned(),
    }
}

/// Inquire reads the slip; pay records it with balanced lines (amount, fee) and an event.
#[tokio::test]
async fn pay_taiwan_bill_records_balanced_lines() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        let inquiry = gw
            .client
            .inquire_bill(pb::InquireBillRequest {
                context: context("S001", "T01", "inq-1", now),
                slip: tw_pay("x", now).slip,
            })
            .await
            .unwrap()
            .into_inner();
        let bill = inquiry.bill.unwrap();
        assert_eq!(
            (bill.biller_id.as_str(), bill.due_date.as_str()),
            ("TPC", "2026-12-31")
        );
        assert_eq!(bill.amount, money(123_400, "TWD"));
        assert_eq!(inquiry.business_date, "2026-11-23");
        assert_eq!(
            gw.store().row_counts().await.unwrap().transactions,
            0,
            "inquiry stores nothing"
        );

        let payment = gw
            .client
            .pay_bill(tw_pay("pay-1", now))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(payment.status(), pb::BillPaymentStatus::Paid);
        assert_eq!(payment.fee, money(1_000, "TWD"));
        assert_eq!(payment.business_date, "2026-11-23");
        let lines = gw
            .store()
            .settlement_lines(&payment.transaction_id)
            .await
            .unwrap();
        assert_eq!(lines.len(), 4, "{backend:?}");
        assert_eq!(lines.iter().map(|line| line.amount_minor).sum::<i64>(), 0);
        assert!(
            lines
                .iter()
                .any(|line| line.party == "store:S001" && line.amount_minor == -123_400)
        );
        assert!(
            lines
                .iter()
                .any(|line| line.party == "chain" && line.amount_minor == 1_000)
        );
        gw.stop().await;
    }
}

/// A Japanese GS1-128 slip pays in yen with a percentage fee (0.5% of 12,345 = 61.725, half-up → 62).
#[tokio::test]
async fn pay_japan_bill_with_percentage_fee() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let gw = TestGateway::start(backend, now).await;
        let request = pb::PayBillRequest {
            context: context("S101", "T01", "jp-1", now),
            slip: Some(pb::BillSlip {
                barcodes: jp_slip("912345", "778899", "2026-12-10", 12_345),
                biller_id: "TKGAS".into(),
            }),
            amount: money(12_345, "JPY"),
        };
        let payment = gw
            .bills_as("S101", "T01")
            .pay_bill(request)
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(payment.fee, money(62, "JPY"), "{backend:?}");
        assert_eq!(payment.bill.unwrap().agency_code, "912345");
        gw.stop().await;
    }
}

/// Business dates: Taipei after its 23:00 cutoff is the next day; Tokyo across midnight is the local date.
#[tokio::test]
async fn business_date_across_cutoff_and_midnight() {
    for backend in backends() {
        let mut gw = TestGateway::start(backend, utc("2026-11-23T14:59:00Z")).await;
        let before = gw
            .client
            .pay_bill(tw_pay("bd-1", gw.clock.now_for_test()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            before.payment.unwrap().business_date,
            "2026-11-23",
            "22:59 Taipei"
        );
        gw.clock.set(utc("2026-11-23T15:00:00Z"));
        let after = gw
            .client
            .pay_bill(tw_pay("bd-2", gw.clock.now_for_test()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            after.payment.unwrap().business_date,
            "2026-11-24",
            "23:00 Taipei"
        );
        // 15:30 UTC is 00:30 on the 24th in Tokyo, where the cutoff is midnight.
        gw.clock.set(utc("2026-11-23T15:30:00Z"));
        let tokyo = pb::PayBillRequest {
            context: context("S101", "T01", "bd-3", gw.clock.now_for_test()),
            slip: Some(pb::BillSlip {
                barcodes: jp_slip("912345", "1", "2026-12-10", 500),
                biller_id: String::new(),
            }),
            amount: money(500, "JPY"),
        };
        let tokyo = gw
            .bills_as("S101", "T01")
            .pay_bill(tokyo)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            tokyo.payment.unwrap().business_date,
            "2026-11-24",
            "{backend:?}"
        );
        gw.stop().await;
    }
}

/// Cancel works before cutoff the same business day, reverses the lines, and is refused after cutoff.
#[tokio::test]
async fn cancel_only_before_cutoff() {
    for backend in backends() {
        let now = utc("2026-11-23T10:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        let first = gw
            .client
            .pay_bill(tw_pay("c-1", now))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        let second = gw
            .client
            .pay_bill(tw_pay("c-2", now))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();

        let cancelled = gw
            .bills_as("S001", "T02")
            .cancel_bill(cancel_request("c-3", &first.transaction_id, now))
            .await
            .unwrap();
        let cancelled = cancelled.into_inner().payment.unwrap();
        assert_eq!(cancelled.status(), pb::BillPaymentStatus::Cancelled);
        assert!(cancelled.cancelled_at.is_some());
        let lines = gw
            .store()
            .settlement_lines(&first.transaction_id)
            .await
            .unwrap();
        assert_eq!(
            (
                lines.len(),
                lines.iter().map(|line| line.amount_minor).sum::<i64>()
            ),
            (8, 0)
        );

        let twice = gw
            .bills_as("S001", "T02")
            .cancel_bill(cancel_request("c-4", &first.transaction_id, now))
            .await
            .unwrap_err();
        assert_eq!(twice.code(), Code::FailedPrecondition);
        assert_eq!(
            twice.get_details_precondition_failure().unwrap().violations[0].r#type,
            "ALREADY_CANCELLED"
        );

        // 23:00 Taipei: the business day of the second payment has closed.
        gw.clock.set(utc("2026-11-23T15:00:00Z"));
        let late = gw
            .bills_as("S001", "T02")
            .cancel_bill(cancel_request(
                "c-5",
                &second.transaction_id,
                gw.clock.now_for_test(),
            ))
            .await;
        let late = late.unwrap_err();
        assert_eq!(late.code(), Code::FailedPrecondition, "{backend:?}");
        assert_eq!(
            late.get_details_precondition_failure().unwrap().violations[0].r#type,
            "BUSINESS_DAY_CLOSED"
        );

        let unknown = uuid::Uuid::now_v7().to_string();
        let missing = gw
            .bills_as("S001", "T02")
            .cancel_bill(cancel_request("c-6", &unknown, now))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        gw.stop().await;
    }
}

/// A past-due slip is refused when the biller refuses late payment and marked late when it accepts it.
#[tokio::test]
async fn due_dates_follow_biller_policy() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        let mut overdue = tw_pay("due-1", now);
        overdue.slip = Some(pb::BillSlip {
            barcodes: tw_slip("TPC", "77", "2026-11-22", 1234),
            biller_id: String::new(),
        });
        let refused = gw.client.pay_bill(overdue).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{backend:?}");
        assert_eq!(
            refused
                .get_details_precondition_failure()
                .unwrap()
                .violations[0]
                .r#type,
            "BILL_PAST_DUE"
        );

        let mut water = tw_pay("due-2", now);
        water.slip = Some(pb::BillSlip {
            barcodes: tw_slip("TWW", "88", "2026-11-22", 1234),
            biller_id: String::new(),
        });
        let paid = gw
            .client
            .pay_bill(water)
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert!(paid.bill.unwrap().late);
        assert_eq!(
            paid.fee,
            money(800, "TWD"),
            "tiered: NT$1,234 is above the first tier"
        );

        // The due date itself is still on time, even after the 23:00 cutoff moved the business date.
        gw.clock.set(utc("2026-11-23T15:30:00Z"));
        let mut on_due_date = tw_pay("due-3", gw.clock.now_for_test());
        on_due_date.slip = Some(pb::BillSlip {
            barcodes: tw_slip("TPC", "99", "2026-11-23", 1234),
            biller_id: String::new(),
        });
        let paid = gw
            .client
            .pay_bill(on_due_date)
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(paid.business_date, "2026-11-24");
        gw.stop().await;
    }
}

/// GetBillPayment finds a payment by id and by the key it was paid with, only from its own store.
#[tokio::test]
async fn get_bill_payment_by_id_and_key() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        let paid = gw
            .client
            .pay_bill(tw_pay("g-1", now))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        let by_id = pb::GetBillPaymentRequest {
            context: context("S001", "T09", "g-2", now),
            lookup: Some(pb::get_bill_payment_request::Lookup::TransactionId(
                paid.transaction_id.clone(),
            )),
        };
        assert_eq!(
            gw.bills_as("S001", "T09")
                .get_bill_payment(by_id)
                .await
                .unwrap()
                .into_inner()
                .payment
                .unwrap(),
            paid
        );
        let by_key = pb::GetBillPaymentRequest {
            context: context("S001", "T01", "g-3", now),
            lookup: Some(pb::get_bill_payment_request::Lookup::PaidClientRequestId(
                "g-1".into(),
            )),
        };
        assert_eq!(
            gw.client
                .get_bill_payment(by_key)
                .await
                .unwrap()
                .into_inner()
                .payment
                .unwrap(),
            paid
        );
        let other_store = pb::GetBillPaymentRequest {
            context: context("S101", "T01", "g-4", now),
            lookup: Some(pb::get_bill_payment_request::Lookup::TransactionId(
                paid.transaction_id.clone(),
            )),
        };
        assert_eq!(
            gw.bills_as("S101", "T01")
                .get_bill_payment(other_store)
                .await
                .unwrap_err()
                .code(),
            Code::NotFound,
            "{backend:?}"
        );
        gw.stop().await;
    }
}

/// The type and subject of a `FAILED_PRECONDITION`'s first violation.
fn precondition_of(status: &tonic::Status) -> (String, String) {
    let failure = status
        .get_details_precondition_failure()
        .expect("a google.rpc.PreconditionFailure");
    let violation = &failure.violations[0];
    (violation.r#type.clone(), violation.subject.clone())
}

/// A batch biller's slip is paid once: a second PayBill under another key
/// (another terminal, another store, or many at once) is refused with
/// `BILL_ALREADY_PAID` on `slip.barcodes` and stores nothing; the first
/// payment still replays; its cancellation frees the slip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slip_is_paid_once() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let gw = TestGateway::start(backend, now).await;
        let slip = |reference: &str| {
            Some(pb::BillSlip {
                barcodes: tw_slip("TPC", reference, "2026-12-31", 1234),
                biller_id: String::new(),
            })
        };
        let pay = |store: &str, terminal: &str, key: &str, reference: &str| pb::PayBillRequest {
            context: context(store, terminal, key, now),
            slip: slip(reference),
            amount: money(123_400, "TWD"),
        };
        let first = gw
            .bills_as("S001", "T01")
            .pay_bill(pay("S001", "T01", "once-1", "ONCE1"))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        let counts = gw.store().row_counts().await.unwrap();

        for (store, terminal, key) in [
            ("S001", "T01", "once-2"),
            ("S001", "T02", "once-3"),
            ("S101", "T01", "once-4"),
        ] {
            let refused = gw
                .bills_as(store, terminal)
                .pay_bill(pay(store, terminal, key, "ONCE1"))
                .await
                .unwrap_err();
            assert_eq!(
                refused.code(),
                Code::FailedPrecondition,
                "{backend:?} {store}/{terminal}: {refused:?}"
            );
            assert_eq!(
                precondition_of(&refused),
                ("BILL_ALREADY_PAID".to_owned(), "slip.barcodes".to_owned())
            );
        }
        assert_eq!(
            gw.store().row_counts().await.unwrap(),
            counts,
            "{backend:?}: a refused payment stores nothing"
        );

        let replayed = gw
            .bills_as("S001", "T01")
            .pay_bill(pay("S001", "T01", "once-1", "ONCE1"))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(replayed, first, "{backend:?}: the first payment replays");

        // Many tills at once, one new slip: exactly one is paid.
        let attempts = (0..12).map(|index| {
            let terminal = format!("T{:02}", index % 4 + 1);
            let mut client = gw.bills_as("S001", &terminal);
            let request = pay("S001", &terminal, &format!("race-{index}"), "RACE1");
            tokio::spawn(async move { client.pay_bill(request).await })
        });
        let results = futures::future::join_all(attempts).await;
        let mut paid = 0;
        for result in results {
            match result.unwrap() {
                Ok(_) => paid += 1,
                Err(status) => assert_eq!(
                    precondition_of(&status).0,
                    "BILL_ALREADY_PAID",
                    "{backend:?}: {status:?}"
                ),
            }
        }
        assert_eq!(paid, 1, "{backend:?}: concurrent payments of one slip");

        gw.bills_as("S001", "T02")
            .cancel_bill(cancel_request("once-cancel", &first.transaction_id, now))
            .await
            .unwrap();
        let repaid = gw
            .bills_as("S001", "T02")
            .pay_bill(pay("S001", "T02", "once-5", "ONCE1"))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_ne!(repaid.transaction_id, first.transaction_id);
        gw.stop().await;
    }
}

/// A biller whose contract allows repeated payments (`allow_repeat_payment`) takes the same slip twice.
#[tokio::test]
async fn repeat_payments_when_the_contract_allows() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let gw = TestGateway::start(backend, now).await;
        for key in ["rep-1", "rep-2"] {
            let mut request = tw_pay(key, now);
            request.slip = Some(pb::BillSlip {
                barcodes: tw_slip("TWW", "REPEAT1", "2026-12-31", 1234),
                biller_id: String::new(),
            });
            let payment = gw
                .bills_as("S001", "T01")
                .pay_bill(request)
                .await
                .unwrap()
                .into_inner()
                .payment
                .unwrap();
            assert_eq!(payment.status(), pb::BillPaymentStatus::Paid, "{backend:?}");
        }
        gw.stop().await;
    }
}

/// A bill whose contract fee is not less than its amount (NT$2 and NT$5 at
/// Taipei Water, whose fee is NT$5) is refused at inquiry and payment with
/// `FEE_EXCEEDS_AMOUNT` on `amount.amount_minor`, storing nothing; NT$6 is paid.
#[tokio::test]
async fn a_fee_never_takes_the_whole_bill() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let gw = TestGateway::start(backend, now).await;
        let water = |key: &str, amount_twd: u64| {
            let mut request = tw_pay(key, now);
            request.slip = Some(pb::BillSlip {
                barcodes: tw_slip("TWW", &format!("FEE{amount_twd}"), "2026-12-31", amount_twd),
                biller_id: String::new(),
            });
            request.amount = money(i64::try_from(amount_twd).unwrap() * 100, "TWD");
            request
        };
        for amount_twd in [2, 5] {
            let request = water(&format!("fee-{amount_twd}"), amount_twd);
            let inquiry = gw
                .bills_as("S001", "T01")
                .inquire_bill(pb::InquireBillRequest {
                    context: request.context.clone(),
                    slip: request.slip.clone(),
                })
                .await
                .unwrap_err();
            let refused = gw
                .bills_as("S001", "T01")
                .pay_bill(request)
                .await
                .unwrap_err();
            for status in [&inquiry, &refused] {
                assert_eq!(status.code(), Code::FailedPrecondition, "{backend:?}");
                assert_eq!(
                    precondition_of(status),
                    (
                        "FEE_EXCEEDS_AMOUNT".to_owned(),
                        "amount.amount_minor".to_owned()
                    ),
                    "{backend:?} NT${amount_twd}"
                );
            }
        }
        assert_eq!(
            gw.store().row_counts().await.unwrap().transactions,
            0,
            "{backend:?}: refused payments store nothing"
        );
        let paid = gw
            .bills_as("S001", "T01")
            .pay_bill(water("fee-6", 6))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(
            (paid.bill.unwrap().amount, paid.fee),
            (money(600, "TWD"), money(500, "TWD")),
            "{backend:?}"
        );
        gw.stop().await;
    }
}

/// The first violation of an `INVALID_ARGUMENT`: field and description.
fn bad_request_of(status: &tonic::Status) -> (String, String) {
    let bad_request = status
        .get_details_bad_request()
        .expect("a google.rpc.BadRequest");
    let violation = &bad_request.field_violations[0];
    (violation.field.clone(), violation.description.clone())
}

/// A Taiwan slip whose due date lands years away (Gregorian `261231` read
/// under the ROC profile is 2037; ROC `151231` read as Gregorian is 2015,
/// which a late-accepting biller would otherwise take) is refused as a bad
/// due date on `slip.barcodes[0]`, storing nothing.
#[tokio::test]
async fn a_due_date_years_away_is_refused() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let gw = TestGateway::start(backend, now).await;
        for (agency_code, due) in [("TPC", "2037-12-31"), ("TWW", "2015-12-31")] {
            let mut request = tw_pay(&format!("far-{agency_code}"), now);
            request.slip = Some(pb::BillSlip {
                barcodes: tw_slip(agency_code, "FARAWAY", due, 1234),
                biller_id: String::new(),
            });
            let refused = gw
                .bills_as("S001", "T01")
                .pay_bill(request)
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{backend:?} {due}");
            let (field, description) = bad_request_of(&refused);
            assert_eq!(field, "slip.barcodes[0]");
            assert!(
                description.contains(&format!("due date {due}")),
                "{description}"
            );
        }
        assert_eq!(gw.store().row_counts().await.unwrap().transactions, 0);
        gw.stop().await;
    }
}

/// Barcode length errors count characters, not UTF-8 bytes.
#[tokio::test]
async fn barcode_lengths_count_characters() {
    let now = utc("2026-11-23T03:00:00Z");
    let gw = TestGateway::start(crate::support::Backend::Sqlite, now).await;
    let inquire = |barcodes: Vec<String>| pb::InquireBillRequest {
        context: context("S001", "T01", "len-1", now),
        slip: Some(pb::BillSlip {
            barcodes,
            biller_id: String::new(),
        }),
    };
    // 65 characters (195 bytes): too long, and said in characters.
    let status = gw
        .bills_as("S001", "T01")
        .inquire_bill(inquire(vec!["臺".repeat(65)]))
        .await
        .unwrap_err();
    assert_eq!(
        bad_request_of(&status),
        (
            "slip.barcodes[0]".to_owned(),
            "is 65 characters; at most 64 are allowed".to_owned()
        )
    );
    // 30 characters (90 bytes) are within the limit: refused for what they are.
    let mut barcodes = tw_slip("TPC", "LEN1", "2026-12-31", 1234);
    barcodes[0] = "臺".repeat(30);
    let status = gw
        .bills_as("S001", "T01")
        .inquire_bill(inquire(barcodes.clone()))
        .await
        .unwrap_err();
    let (field, description) = bad_request_of(&status);
    assert_eq!(field, "slip.barcodes[0]");
    assert!(!description.contains("90"), "{description}");
    assert!(description.contains("digits and letters"), "{description}");
    // 5 characters (15 bytes) are too short, counted in characters.
    barcodes[0] = "臺".repeat(5);
    let status = gw
        .bills_as("S001", "T01")
        .inquire_bill(inquire(barcodes))
        .await
        .unwrap_err();
    let (_, description) = bad_request_of(&status);
    assert!(description.starts_with("is 5 characters"), "{description}");
    gw.stop().await;
}
