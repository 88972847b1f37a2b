//! Idempotency through the real gRPC API, on both backends.

use posgate_api::grpc::idempotent::REPLAY_HEADER;
use posgate_proto::v1 as pb;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{TestGateway, backends, tw_pay, utc};

/// A retry gets the first answer byte for byte, marked as a replay, even a day later with a new `pos_timestamp`.
#[tokio::test]
async fn retry_replays_the_first_answer_exactly() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        let first = gw.client.pay_bill(tw_pay("idem-1", now)).await.unwrap();
        assert!(first.metadata().get(REPLAY_HEADER).is_none());
        let first = first.into_inner();
        // The next morning, with a later pos_timestamp: still the same request.
        let next_day = utc("2026-11-24T01:00:00Z");
        gw.clock.set(next_day);
        let again = gw
            .client
            .pay_bill(tw_pay("idem-1", next_day))
            .await
            .unwrap();
        assert_eq!(
            again.metadata().get(REPLAY_HEADER).unwrap(),
            "true",
            "{backend:?}"
        );
        assert_eq!(again.into_inner().encode_to_vec(), first.encode_to_vec());
        let counts = gw.store().row_counts().await.unwrap();
        assert_eq!((counts.transactions, counts.settlement_lines), (1, 4));
        gw.stop().await;
    }
}

/// The same key with a different request is `ALREADY_EXISTS` and names each differing field.
#[tokio::test]
async fn reused_key_names_the_differing_fields() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let mut gw = TestGateway::start(backend, now).await;
        gw.client.pay_bill(tw_pay("idem-2", now)).await.unwrap();
        let cases: Vec<(&str, Box<dyn Fn(&mut pb::PayBillRequest)>)> = vec![
            (
                "amount.amount_minor",
                Box::new(|r| r.amount.as_mut().unwrap().amount_minor = 123_500),
            ),
            (
                "amount.currency",
                Box::new(|r| r.amount.as_mut().unwrap().currency = "JPY".into()),
            ),
            (
                "slip.barcodes",
                Box::new(|r| r.slip.as_mut().unwrap().barcodes.reverse()),
            ),
            (
                "slip.biller_id",
                Box::new(|r| r.slip.as_mut().unwrap().biller_id = "TPC".into()),
            ),
            (
                "context.operator_id",
                Box::new(|r| r.context.as_mut().unwrap().operator_id = "OP2".into()),
            ),
        ];
        for (field, change) in cases {
            let mut request = tw_pay("idem-2", now);
            change(&mut request);
            let status = gw.client.pay_bill(request).await.unwrap_err();
            assert_eq!(status.code(), Code::AlreadyExists, "{backend:?} {field}");
            let info = status.get_details_error_info().expect("ErrorInfo");
            assert_eq!(info.reason, "IDEMPOTENCY_KEY_REUSED");
            assert_eq!(info.metadata["differing_fields"], field);
            assert!(
                status.message().contains(field),
                "message names {field}: {}",
                status.message()
            );
        }
        // A different RPC under the same key is a reuse too.
        let cancel = pb::CancelBillRequest {
            context: tw_pay("idem-2", now).context,
            transaction_id: uuid::Uuid::now_v7().to_string(),
            reason: "x".into(),
        };
        let status = gw.client.cancel_bill(cancel).await.unwrap_err();
        assert_eq!(
            status.get_details_error_info().unwrap().metadata["differing_fields"],
            "operation"
        );
        // Same client_request_id from another terminal is a different key
        // (paying a slip of its own: the first terminal's slip is paid).
        let mut other_terminal = tw_pay("idem-2", now);
        other_terminal.context.as_mut().unwrap().terminal_id = "T02".into();
        other_terminal.slip = tw_pay("idem-2 at T02", now).slip;
        gw.bills_as("S001", "T02")
            .pay_bill(other_terminal)
            .await
            .unwrap();
        assert_eq!(gw.store().row_counts().await.unwrap().transactions, 2);
        gw.stop().await;
    }
}

/// 50 concurrent identical `PayBill` calls make one transaction and one set of lines; all 50 get the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_duplicates_make_one_payment() {
    for backend in backends() {
        let now = utc("2026-11-23T03:00:00Z");
        let gw = TestGateway::start(backend, now).await;
        let calls = (0..50).map(|_| {
            let mut client = gw.client.clone();
            tokio::spawn(async move {
                client
                    .pay_bill(tw_pay("storm-1", now))
                    .await
                    .map(|r| r.into_inner().encode_to_vec())
            })
        });
        let answers: Vec<Vec<u8>> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap())
            .collect();
        assert!(
            answers.iter().all(|answer| *answer == answers[0]),
            "{backend:?}: all 50 answers identical"
        );
        let counts = gw.store().row_counts().await.unwrap();
        assert_eq!(
            (
                counts.transactions,
                counts.bill_payments,
                counts.settlement_lines,
                counts.events,
                counts.idempotency_keys
            ),
            // Two events: RECEIVED, then PAID.
            (1, 1, 4, 2, 1),
            "{backend:?}"
        );
        gw.stop().await;
    }
}
