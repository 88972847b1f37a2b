//! Several gateway instances on one PostgreSQL database, all started in
//! this process (`posgate::server::start` again with the same
//! configuration: same schema, same PKI, same partners, same clock, each on
//! its own port), against one set of simulators: the identifiers the bank
//! sees stay unique across instances, and a request sent to two instances
//! at once is one transaction, one partner call and one answer.
//!
//! PostgreSQL only: SQLite is one process's embedded database. Without
//! `POSGATE_TEST_PG_URL` every test prints why it skips.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use pb::bill_payment_service_client::BillPaymentServiceClient;
use pb::payment_service_client::PaymentServiceClient;
use pb::wallet_service_client::WalletServiceClient;
use posgate_proto::v1 as pb;
use tonic::transport::Channel;

use crate::audit::{auditor, verify};
use crate::cards::{CardWorld, auth_only, sale, visa_ok, wait_links_up};
use crate::online_bills::{BILLS, BillerWorld};
use crate::support::{Backend, TestGateway, TestInstance, terminal};
use crate::wallets::{RICH, WalletWorld, retry_until_answered, top_up};

/// Card sales in the identifier test, spread over three instances: more
/// than one block of STANs (`STAN_BLOCK`, 100) per instance.
const SALES: usize = 360;
/// Sales in flight at once: enough to interleave the instances' blocks,
/// few enough for a busy 2-core machine.
const SALES_IN_FLIGHT: usize = 48;
/// Copies of one request in the idempotency tests, spread over two instances.
const DUPLICATES: usize = 100;
/// Longest a copy may take to get its final answer, retries included.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);
/// Most times a copy is sent: once, then a retry every 250 ms
/// (`retry_until_answered`) while the first copy is in progress.
const MAX_SENDS_PER_COPY: u32 = 240;
/// A top-up the test wallet takes (a multiple of the operator's unit).
const TOP_UP_MINOR: i64 = 10_000;

/// PostgreSQL, or `None` after printing why the test skips.
fn postgres() -> Option<Backend> {
    if std::env::var("POSGATE_TEST_PG_URL").is_ok() {
        Some(Backend::Postgres)
    } else {
        eprintln!(
            "SKIPPED: several instances share a PostgreSQL database; POSGATE_TEST_PG_URL is not set (CI sets it)"
        );
        None
    }
}

/// `more` instances of `gw` beside it, with a channel as S001/T01 to each
/// of the lot (`gw` first).
async fn instances(gw: &TestGateway, more: usize) -> (Vec<TestInstance>, Vec<Channel>) {
    let mut others = Vec::new();
    let mut channels = vec![gw.channel.clone()];
    for _ in 0..more {
        let other = gw.another_instance().await;
        channels.push(other.channel_as(&gw.pki, &terminal("S001", "T01")));
        others.push(other);
    }
    (others, channels)
}

async fn stop_all(others: Vec<TestInstance>) {
    for other in others {
        other.stop().await;
    }
}

/// Sends `DUPLICATES` copies of one request at once, copy `i` through
/// `channels[i mod n]`; a copy answered "in progress" (`ABORTED`, or
/// `UNAVAILABLE` while the first copy's partner call is unresolved) is
/// retried with the same key as a POS would, within `ANSWER_DEADLINE` and
/// `MAX_SENDS_PER_COPY`. Every copy's final answer must be the same, byte
/// for byte; returns it.
async fn send_duplicates<F, Fut, M>(channels: &[Channel], send: F) -> M
where
    F: Fn(Channel) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<M>, tonic::Status>> + Send,
    M: prost::Message + Default + Send + 'static,
{
    let copies = (0..DUPLICATES).map(|copy| {
        let channel = channels[copy % channels.len()].clone();
        let send = send.clone();
        tokio::spawn(async move {
            let mut sends = 0_u32;
            let answer = retry_until_answered(ANSWER_DEADLINE, || {
                sends += 1;
                assert!(
                    sends <= MAX_SENDS_PER_COPY,
                    "copy {copy} sent {sends} times"
                );
                send(channel.clone())
            })
            .await;
            answer.encode_to_vec()
        })
    });
    let answers: BTreeSet<Vec<u8>> = futures::future::join_all(copies)
        .await
        .into_iter()
        .map(|joined| joined.expect("a copy's task completed"))
        .collect();
    assert_eq!(answers.len(), 1, "{} different answers", answers.len());
    let answer = answers.first().expect("one answer");
    M::decode(answer.as_slice()).expect("the answer decodes")
}

/// One transaction and one idempotency key in the shared database.
async fn assert_one_transaction(gw: &TestGateway) {
    let rows = gw.store().row_counts().await.unwrap();
    assert_eq!((rows.transactions, rows.idempotency_keys), (1, 1));
}

/// (STAN, RRN, transmission day) of every card payment in the database.
async fn recorded_card_identifiers(db_url: &str) -> Vec<(String, String, chrono::NaiveDate)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
    let rows: Vec<(String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT stan, rrn, transmitted_at FROM card_payments")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(stan, rrn, at)| (stan, rrn, at.date_naive()))
        .collect()
}

/// Concurrent card sales spread over three instances against one bank that
/// refuses a STAN reused on the same day for another transaction: every
/// sale is approved, none is refused 94, the STANs (per acquirer and day)
/// and RRNs are distinct, at the bank and in the database alike, and the
/// audit chain the three wrote verifies whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stans_and_rrns_are_unique_across_instances() {
    let Some(backend) = postgres() else { return };
    let world = CardWorld::start(backend).await;
    let (others, channels) = instances(&world.gw, 2).await;
    for other in &others {
        wait_links_up(&other.server).await;
    }
    let answers: Vec<pb::CardTransaction> = futures::stream::iter(0..SALES)
        .map(|index| {
            let mut client = PaymentServiceClient::new(channels[index % channels.len()].clone());
            let amount_minor = 100 + i64::try_from(index).unwrap();
            async move {
                let request = sale(&format!("unique-{index}"), &visa_ok(), amount_minor);
                let answer = client.authorize(request).await;
                answer.unwrap_or_else(|status| panic!("sale {index}: {status:?}"))
            }
        })
        .buffer_unordered(SALES_IN_FLIGHT)
        .map(|answer| answer.into_inner().transaction.unwrap())
        .collect()
        .await;
    for transaction in &answers {
        assert_eq!(
            (transaction.status(), transaction.response_code.as_str()),
            (pb::CardTransactionStatus::Captured, "00"),
            "{transaction:?}"
        );
    }

    let stats = world.acquirer.stats();
    assert_eq!(stats.requests("0200"), SALES as u64);
    assert_eq!(
        (stats.duplicate_stans_refused, stats.duplicates_refused),
        (0, 0)
    );
    let applied = world.acquirer.ledger_dump().applied;
    assert_eq!(applied.len(), SALES);
    let bank_traces: BTreeSet<(String, String, String)> = applied
        .iter()
        .map(|entry| {
            let day = entry.transmitted_at[..4].to_owned();
            (entry.acquirer_id.clone(), day, entry.stan.clone())
        })
        .collect();
    assert_eq!(
        bank_traces.len(),
        SALES,
        "STANs distinct per acquirer and day"
    );
    let bank_pairs: BTreeSet<(String, String)> = applied
        .iter()
        .map(|entry| (entry.stan.clone(), entry.rrn.clone()))
        .collect();
    let bank_rrns: BTreeSet<&str> = applied.iter().map(|entry| entry.rrn.as_str()).collect();
    assert_eq!(bank_rrns.len(), SALES, "RRNs distinct");

    let recorded = recorded_card_identifiers(world.gw.db_url()).await;
    assert_eq!(recorded.len(), SALES);
    let recorded_stans: BTreeSet<_> = recorded.iter().map(|(stan, _, day)| (stan, day)).collect();
    assert_eq!(recorded_stans.len(), SALES, "STANs distinct per day");
    let recorded_pairs: BTreeSet<(String, String)> = recorded
        .into_iter()
        .map(|(stan, rrn, _)| (stan, rrn))
        .collect();
    assert_eq!(recorded_pairs, bank_pairs, "the bank saw what was recorded");
    let (head, _) = world.gw.store().chain_head().await.unwrap();
    let report = verify(&mut auditor(&world.gw), 1, head).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked_count, head);
    stop_all(others).await;
    world.gw.stop().await;
}

/// 100 identical `PayBill`s of one online bill sent at once over two
/// instances: one payment notice at the biller, one transaction, and 100
/// identical answers, the bill paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_pay_bill_over_two_instances_notifies_once() {
    let Some(backend) = postgres() else { return };
    let world = BillerWorld::start(backend).await;
    let (others, channels) = instances(&world.gw, 1).await;
    let request = Arc::new(crate::online_bills::pay("storm-bill", BILLS[0]));
    let answer: pb::PayBillResponse = send_duplicates(&channels, move |channel| {
        let request = (*request).clone();
        async move {
            BillPaymentServiceClient::new(channel)
                .pay_bill(request)
                .await
        }
    })
    .await;
    let payment = answer.payment.unwrap();
    assert_eq!(payment.status(), pb::BillPaymentStatus::Paid, "{payment:?}");
    assert_eq!(world.sim.biller_counters().notices, 1);
    assert_eq!(world.sim.ledger().entries.len(), 1);
    assert_one_transaction(&world.gw).await;
    stop_all(others).await;
    world.stop().await;
}

/// 100 identical card `Authorize`s sent at once over two instances: one
/// authorization at the bank, one transaction, and 100 identical answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_authorize_over_two_instances_reaches_the_bank_once() {
    let Some(backend) = postgres() else { return };
    let world = CardWorld::start(backend).await;
    let (others, channels) = instances(&world.gw, 1).await;
    wait_links_up(&others[0].server).await;
    let request = Arc::new(auth_only("storm-auth", &visa_ok(), 5_000));
    let answer: pb::AuthorizeResponse = send_duplicates(&channels, move |channel| {
        let request = (*request).clone();
        async move { PaymentServiceClient::new(channel).authorize(request).await }
    })
    .await;
    let transaction = answer.transaction.unwrap();
    assert_eq!(
        transaction.status(),
        pb::CardTransactionStatus::Authorized,
        "{transaction:?}"
    );
    let stats = world.acquirer.stats();
    assert_eq!(stats.requests("0100"), 1);
    assert_eq!(world.acquirer.ledger_dump().applied.len(), 1);
    let account = world.acquirer.ledger().account(&visa_ok()).cloned();
    assert_eq!(account.unwrap().held_minor, 5_000, "held once");
    assert_one_transaction(&world.gw).await;
    stop_all(others).await;
    world.gw.stop().await;
}

/// 100 identical wallet `TopUp`s sent at once over two instances: one
/// top-up at the operator, one transaction, 100 identical answers, and
/// the wallet credited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_top_up_over_two_instances_credits_once() {
    let Some(backend) = postgres() else { return };
    let world = WalletWorld::start(backend).await;
    let (others, channels) = instances(&world.gw, 1).await;
    let before = world.sim.ledger().wallets[RICH].balance_minor;
    let request = Arc::new(top_up("storm-top-up", RICH, TOP_UP_MINOR));
    let answer: pb::TopUpResponse = send_duplicates(&channels, move |channel| {
        let request = (*request).clone();
        async move { WalletServiceClient::new(channel).top_up(request).await }
    })
    .await;
    let transaction = answer.transaction.unwrap();
    assert_eq!(
        transaction.status(),
        pb::WalletTransactionStatus::Completed,
        "{transaction:?}"
    );
    assert_eq!(world.sim.stats().top_ups, 1);
    assert_eq!(
        world.sim.ledger().wallets[RICH].balance_minor,
        before + TOP_UP_MINOR
    );
    assert_one_transaction(&world.gw).await;
    stop_all(others).await;
    world.stop().await;
}
