//! Card payments under failure: the gateway process killed with SIGKILL in
//! the middle of a payment, and a randomized run of 2,000 payments against a
//! bank that misbehaves. Both end with the bank simulator's own ledger equal
//! to what the gateway recorded, to the cent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pb::payment_service_client::PaymentServiceClient;
use posgate::tls::{DevPki, client_tls_as};
use posgate_proto::v1 as pb;
use posgate_sims::bank::{BankSim, FaultConfig};
use tonic::Code;
use tonic::transport::Channel;

use crate::cards::{
    CardWorld, auth_only, card_config, co_brand, context, sale, visa_ok, write_keystore,
};
use crate::support::{OPEN_LIMITS, TestDb, backends, config_text};

/// Kills the child on drop, so a failing test leaves no process behind.
pub(crate) struct Child(pub(crate) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn serve(config: &std::path::Path) -> Child {
    Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_posgate"))
            .args(["serve", "--config"])
            .arg(config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn connect(port: u16, pki: &DevPki) -> PaymentServiceClient<Channel> {
    let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(
            client_tls_as(
                &pki.ca_cert,
                "localhost",
                &crate::support::issue(pki, &crate::support::terminal("S001", "T01")),
            )
            .unwrap(),
        )
        .unwrap();
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            return PaymentServiceClient::new(channel);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("posgate serve did not come up within 10 s");
}

/// SIGKILL of the gateway while the bank holds a payment it has charged:
/// after a restart the gateway finds the request it never finished, reverses
/// it at the bank, and the POS's retry learns it was REVERSED. The customer
/// is not charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_payment_ends_reversed_and_uncharged() {
    for backend in backends() {
        let bank = BankSim::start(crate::cards::acquirer_config())
            .await
            .unwrap();
        let cobrand = BankSim::start(crate::cards::cobrand_config())
            .await
            .unwrap();
        // The bank charges and keeps quiet: the gateway waits for its answer.
        bank.set_faults(FaultConfig {
            no_response: 1.0,
            ..FaultConfig::default()
        });
        let db = TestDb::new(backend).await;
        let dir = db.dir.path();
        let pki = DevPki::generate(dir).unwrap();
        write_keystore(dir).await;
        let port = free_port();
        let text = config_text(&db.url, &pki, OPEN_LIMITS)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + &card_config(
                dir,
                &bank.addr().to_string(),
                &cobrand.addr().to_string(),
                2_000,
            );
        let config = dir.join("posgate.toml");
        std::fs::write(&config, text).unwrap();

        let mut gateway = serve(&config);
        let mut client = connect(port, &pki).await;
        // Wait until the links are up: a sale before that is refused unsent.
        let request = sale("kill-1", &visa_ok(), 77_700);
        let started = std::time::Instant::now();
        let mut in_flight = None;
        while in_flight.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the sale reached the bank"
            );
            let mut caller = client.clone();
            let attempt = request.clone();
            let call = tokio::spawn(async move { caller.authorize(attempt).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            if bank
                .stats()
                .requests_by_mti
                .get("0200")
                .copied()
                .unwrap_or(0)
                > 0
            {
                in_flight = Some(call);
            } else {
                let status = call.await.unwrap().unwrap_err();
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            }
        }
        assert_eq!(
            bank.ledger().account(&visa_ok()).unwrap().posted_minor,
            77_700,
            "{backend:?}: the bank has charged the card"
        );
        // SIGKILL: no shutdown, no answer recorded.
        gateway.0.kill().unwrap();
        gateway.0.wait().unwrap();
        let lost = in_flight.unwrap().await.unwrap();
        assert!(lost.is_err(), "the POS never got an answer");

        bank.set_faults(FaultConfig::default());
        let _restarted = serve(&config);
        client = connect(port, &pki).await;
        // The POS retries with the same key until the outcome is settled.
        let started = std::time::Instant::now();
        let settled = loop {
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "{backend:?}: the outcome settled"
            );
            match client.authorize(request.clone()).await {
                Ok(answer) => break answer.into_inner().transaction.unwrap(),
                Err(status) => {
                    assert!(
                        matches!(status.code(), Code::Unavailable | Code::Aborted),
                        "{status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        assert_eq!(
            pb::CardTransactionStatus::try_from(settled.status).unwrap(),
            pb::CardTransactionStatus::Reversed,
            "{backend:?}"
        );
        let account = bank.ledger().account(&visa_ok()).cloned().unwrap();
        assert_eq!(account.posted_minor, 0, "{backend:?}: not charged");
        assert_eq!(bank.stats().reversals_applied, 1);
        bank.shutdown().await;
        cobrand.shutdown().await;
    }
}

/// What the gateway recorded, per simulator: captured minus refunded
/// (posted) and authorized-not-captured (held), in TWD minor units.
async fn gateway_books(world: &CardWorld, ids: &[String]) -> BTreeMap<String, (i64, i64)> {
    let mut books: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for id in ids {
        let record = world
            .gw
            .store()
            .card_transaction(id)
            .await
            .unwrap()
            .unwrap();
        let entry = books.entry(record.link_id.clone()).or_default();
        match record.status {
            posgate_core::model::transaction::TransactionStatus::Captured => {
                let sign = if record.card_type == posgate_core::model::card::CardType::Refund {
                    -1
                } else {
                    1
                };
                entry.0 += sign * record.captured_minor;
            }
            posgate_core::model::transaction::TransactionStatus::Authorized => {
                entry.1 += record.amount_minor;
            }
            _ => {}
        }
    }
    books
}

/// 2,000 payments (sales, authorizations with partial captures, voids,
/// refunds, retries) against banks that drop, delay, duplicate and corrupt
/// answers. After the faults stop and the queue drains, each bank's ledger
/// equals the gateway's approved-and-not-reversed totals exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_payments_with_faults_reconcile_to_the_cent() {
    for backend in backends() {
        let world = Arc::new(CardWorld::start_with_timeout(backend, 400).await);
        let chaos = |seed| FaultConfig {
            no_response: 0.03,
            drop_connection: 0.01,
            late_response: 0.03,
            late_by: Duration::from_millis(600),
            duplicate_response: 0.03,
            bad_mac: 0.03,
            seed,
            ..FaultConfig::default()
        };
        world.acquirer.set_faults(chaos(7));
        world.cobrand.set_faults(chaos(11));
        let workers = 32;
        let per_worker = 2_000 / workers;
        let tasks: Vec<_> = (0..workers)
            .map(|worker| {
                let world = Arc::clone(&world);
                tokio::spawn(async move { run_worker(&world, worker, per_worker).await })
            })
            .collect();
        let mut ids = Vec::new();
        let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for task in tasks {
            let (worker_ids, worker_outcomes) = task.await.unwrap();
            ids.extend(worker_ids);
            for (outcome, count) in worker_outcomes {
                *outcomes.entry(outcome).or_default() += count;
            }
        }
        world.acquirer.set_faults(FaultConfig::default());
        world.cobrand.set_faults(FaultConfig::default());
        world.wait_links_up().await;
        world.drain_queue(Duration::from_secs(120)).await;
        eprintln!(
            "{backend:?}: {outcomes:?}; faults {:?} {:?}",
            world.acquirer.stats().faults_injected,
            world.cobrand.stats().faults_injected
        );
        assert!(
            outcomes.get("unknown").copied().unwrap_or(0) > 0,
            "faults were hit"
        );
        let books = gateway_books(&world, &ids).await;
        for (link, bank) in [("acquirer", &world.acquirer), ("cobrand", &world.cobrand)] {
            let totals = bank.ledger().totals("901");
            let (posted, held) = books.get(link).copied().unwrap_or_default();
            assert_eq!(
                (i128::from(posted), i128::from(held)),
                (totals.posted_minor, totals.held_minor),
                "{backend:?} {link}: gateway (posted, held) vs the bank's ledger"
            );
        }
        assert_eq!(world.gw.store().saf_open().await.unwrap(), 0);
    }
}

/// One terminal's share of the run. Returns the transactions it created and
/// a count of outcomes.
async fn run_worker(
    world: &CardWorld,
    worker: usize,
    count: usize,
) -> (Vec<String>, BTreeMap<&'static str, usize>) {
    let mut client = world.client.clone();
    let mut ids = Vec::new();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    // A small deterministic generator per worker (splitmix64).
    let mut state = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(worker as u64 + 1);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for index in 0..count {
        let key = format!("chaos-{worker}-{index}");
        let pan = if next() % 4 == 0 {
            co_brand()
        } else {
            visa_ok()
        };
        let amount = 100 + i64::try_from(next() % 5_000).unwrap();
        let roll = next() % 10;
        let request = if roll < 7 {
            sale(&key, &pan, amount)
        } else {
            auth_only(&key, &pan, amount)
        };
        // Like a POS: while the bank link is down (it reconnects after a
        // dropped connection), retry the same request after a pause.
        let mut attempt = 0;
        let result = loop {
            match client.authorize(request.clone()).await {
                Err(status)
                    if status.code() == Code::Unavailable
                        && !status.message().contains("no answer")
                        && attempt < 200 =>
                {
                    attempt += 1;
                    *outcomes.entry("retried_unsent").or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        };
        let answer = match result {
            Ok(answer) => answer.into_inner().transaction.unwrap(),
            Err(status) => {
                assert!(
                    status.code() == Code::Unavailable && status.message().contains("no answer"),
                    "unexpected {status:?}"
                );
                *outcomes.entry("unknown").or_default() += 1;
                ids.push(transaction_of(&mut client, &key).await);
                continue;
            }
        };
        ids.push(answer.transaction_id.clone());
        let status = pb::CardTransactionStatus::try_from(answer.status).unwrap();
        *outcomes.entry(status.as_str_name()).or_default() += 1;
        if next() % 10 == 0 {
            // A retry replays the same answer and charges nothing more.
            let again = client
                .authorize(request)
                .await
                .unwrap()
                .into_inner()
                .transaction
                .unwrap();
            assert_eq!(again, answer, "a retry replays");
        }
        let follow = next() % 10;
        match status {
            pb::CardTransactionStatus::Authorized if follow < 6 => {
                let part = amount - i64::try_from(next() % 50).unwrap();
                let _ = client
                    .capture(pb::CaptureRequest {
                        context: context(&format!("{key}-cap")),
                        transaction_id: answer.transaction_id.clone(),
                        amount: Some(pb::Money {
                            amount_minor: part,
                            currency: "TWD".to_owned(),
                        }),
                    })
                    .await
                    .unwrap();
            }
            pb::CardTransactionStatus::Authorized | pb::CardTransactionStatus::Captured
                if follow == 9 =>
            {
                client
                    .void(pb::VoidRequest {
                        context: context(&format!("{key}-void")),
                        transaction_id: answer.transaction_id.clone(),
                        reason: "chaos".to_owned(),
                    })
                    .await
                    .unwrap();
            }
            pb::CardTransactionStatus::Captured if follow == 8 => {
                match client
                    .refund(pb::CardRefundRequest {
                        context: context(&format!("{key}-ref")),
                        original_transaction_id: answer.transaction_id.clone(),
                        amount: Some(pb::Money {
                            amount_minor: amount / 2,
                            currency: "TWD".to_owned(),
                        }),
                        reason: "chaos".to_owned(),
                        card: None,
                    })
                    .await
                {
                    Ok(refund) => ids.push(refund.into_inner().refund.unwrap().transaction_id),
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        if status.message().contains("no answer") {
                            ids.push(transaction_of(&mut client, &format!("{key}-ref")).await);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (ids, outcomes)
}

/// The transaction a request created, found by its key.
async fn transaction_of(client: &mut PaymentServiceClient<Channel>, key: &str) -> String {
    client
        .get_transaction(pb::GetTransactionRequest {
            context: context(&format!("{key}-get")),
            lookup: Some(pb::get_transaction_request::Lookup::CreatedClientRequestId(
                key.to_owned(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .transaction
        .unwrap()
        .transaction_id
}

/// One bank for both links: the acquirer's cards and the co-brand card in
/// one simulator, reached by two links with the same acquiring institution id.
pub fn one_bank_config() -> posgate_sims::bank::SimConfig {
    let mut config = crate::cards::acquirer_config();
    let cobrand = crate::cards::cobrand_config();
    config.accounts.extend(cobrand.accounts);
    config.co_brand_bins = cobrand.co_brand_bins;
    config
}

/// Runs `sql` (five columns: text, text, text, integer, integer) on the
/// gateway's database, whichever backend it is.
async fn query_rows(url: &str, sql: &str) -> Vec<(String, String, String, i64, i64)> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }
}

/// What posgate's records say each card owes, by masked PAN: (posted, held).
/// Also how many card transactions and queue entries are still unresolved.
pub async fn recorded_books(url: &str) -> (BTreeMap<String, (i64, i64)>, i64) {
    let rows = query_rows(
        url,
        "SELECT c.masked_pan, t.status, c.card_type, c.captured_minor, t.amount_minor \
         FROM transactions t JOIN card_payments c ON c.transaction_id = t.id",
    )
    .await;
    let mut books: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut unresolved = 0;
    for (masked_pan, status, card_type, captured_minor, amount_minor) in rows {
        let entry = books.entry(masked_pan).or_default();
        match (status.as_str(), card_type.as_str()) {
            ("captured", "refund") => entry.0 -= captured_minor,
            ("captured", _) => entry.0 += captured_minor,
            ("authorized", _) => entry.1 += amount_minor,
            ("in_progress" | "pending_reversal", _) => unresolved += 1,
            _ => {}
        }
    }
    let open = query_rows(
        url,
        "SELECT '', '', '', count(*), CAST(0 AS BIGINT) FROM saf_queue WHERE acked_at IS NULL",
    )
    .await;
    (books, unresolved + open[0].3)
}

/// STANs that two card requests of the test's one institution id carried
/// on the same UTC day (both links share the institution id).
async fn reused_stans(url: &str) -> Vec<String> {
    let sql = "SELECT stan, transmitted_at FROM card_payments";
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    };
    let mut seen = std::collections::BTreeSet::new();
    rows.into_iter()
        .filter(|(stan, at)| !seen.insert((stan.clone(), at.date_naive())))
        .map(|(stan, at)| format!("{stan} on {}", at.date_naive()))
        .collect()
}

/// One till's mixed card traffic until `stop`: sales and authorizations on
/// the acquirer's Visa and the co-brand card, then captures, voids and
/// refunds by reference. Calls that fail (the gateway is being killed) are
/// dropped; `answered` counts authorizations that got an answer.
async fn mixed_card_traffic(
    mut client: PaymentServiceClient<Channel>,
    worker: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(worker + 1);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut index = 0;
    while !stop.load(Ordering::Relaxed) {
        index += 1;
        let key = format!("k9-{worker}-{index}");
        let pan = if next() % 2 == 0 {
            co_brand()
        } else {
            visa_ok()
        };
        let amount = 100 + i64::try_from(next() % 5_000).unwrap();
        let request = if next() % 2 == 0 {
            sale(&key, &pan, amount)
        } else {
            auth_only(&key, &pan, amount)
        };
        let Ok(answer) = client.authorize(request).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        answered.fetch_add(1, Ordering::Relaxed);
        let transaction = answer.into_inner().transaction.unwrap();
        let id = transaction.transaction_id.clone();
        let money = |amount_minor| {
            Some(pb::Money {
                amount_minor,
                currency: "TWD".to_owned(),
            })
        };
        let status = pb::CardTransactionStatus::try_from(transaction.status).unwrap();
        match (status, next() % 4) {
            (pb::CardTransactionStatus::Authorized, 0 | 1) => {
                let _ = client
                    .capture(pb::CaptureRequest {
                        context: context(&format!("{key}-cap")),
                        transaction_id: id,
                        amount: money(amount - i64::try_from(next() % 50).unwrap()),
                    })
                    .await;
            }
            (pb::CardTransactionStatus::Authorized | pb::CardTransactionStatus::Captured, 2) => {
                let _ = client
                    .void(pb::VoidRequest {
                        context: context(&format!("{key}-void")),
                        transaction_id: id,
                        reason: "kill-9 cycles".to_owned(),
                    })
                    .await;
            }
            (pb::CardTransactionStatus::Captured, 3) => {
                let _ = client
                    .refund(pb::CardRefundRequest {
                        context: context(&format!("{key}-ref")),
                        original_transaction_id: id,
                        amount: money(amount / 2),
                        reason: "kill-9 cycles".to_owned(),
                        card: None,
                    })
                    .await;
            }
            _ => {}
        }
    }
}

/// Issue 13 item 14: SIGKILL cycles of `posgate serve` during captures,
/// voids and refunds on both links of one bank simulator (same acquiring
/// institution id). STANs stay unique across links and restarts, the bank
/// matches every reference to exactly one original, and at the end each
/// card's posted and held amounts at the bank equal posgate's, to the cent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_cycles_on_two_links_of_one_bank_keep_the_books_equal() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    /// Kill cycles per backend, and answered authorizations per cycle
    /// before the kill: enough to put STANs of both links in the same
    /// seconds across restarts, small enough for well under a minute.
    const CYCLES: usize = 4;
    const ANSWERS_PER_CYCLE: usize = 25;
    const TILLS: u64 = 4;
    for backend in backends() {
        let bank = BankSim::start(one_bank_config()).await.unwrap();
        let db = TestDb::new(backend).await;
        let dir = db.dir.path();
        let pki = DevPki::generate(dir).unwrap();
        write_keystore(dir).await;
        let port = free_port();
        let addr = bank.addr().to_string();
        let text = config_text(&db.url, &pki, OPEN_LIMITS)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + &card_config(dir, &addr, &addr, 1_000);
        let config = dir.join("posgate.toml");
        std::fs::write(&config, text).unwrap();

        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(
                client_tls_as(
                    &pki.ca_cert,
                    "localhost",
                    &crate::support::issue(&pki, &crate::support::terminal("S001", "T01")),
                )
                .unwrap(),
            )
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .connect_lazy();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let tills: Vec<_> = (0..TILLS)
            .map(|worker| {
                tokio::spawn(mixed_card_traffic(
                    PaymentServiceClient::new(channel.clone()),
                    worker,
                    Arc::clone(&stop),
                    Arc::clone(&answered),
                ))
            })
            .collect();
        let wait_answers = |wanted: usize, what: String| {
            let answered = Arc::clone(&answered);
            async move {
                let started = std::time::Instant::now();
                while answered.load(Ordering::Relaxed) < wanted {
                    assert!(started.elapsed() < Duration::from_secs(30), "{what}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        for cycle in 0..CYCLES {
            let mut gateway = serve(&config);
            let wanted = answered.load(Ordering::Relaxed) + ANSWERS_PER_CYCLE;
            wait_answers(wanted, format!("{backend:?}: cycle {cycle} got answers")).await;
            gateway.0.kill().unwrap();
            gateway.0.wait().unwrap();
        }
        // A last run lets the queue and the recovery of cut-off requests finish.
        let _last = serve(&config);
        let wanted = answered.load(Ordering::Relaxed) + ANSWERS_PER_CYCLE;
        wait_answers(wanted, format!("{backend:?}: the last run got answers")).await;
        stop.store(true, Ordering::Relaxed);
        for till in tills {
            tokio::time::timeout(Duration::from_secs(20), till)
                .await
                .expect("a till stops after its call")
                .unwrap();
        }
        let started = std::time::Instant::now();
        let books = loop {
            let (books, unresolved) = recorded_books(&db.url).await;
            if unresolved == 0 {
                break books;
            }
            assert!(
                started.elapsed() < Duration::from_secs(45),
                "{backend:?}: {unresolved} card requests or queue entries still unresolved"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            reused_stans(&db.url).await,
            Vec::<String>::new(),
            "{backend:?}: STANs of one institution and day are never reused"
        );
        let ledger = bank.ledger();
        for account in &ledger.accounts {
            let (posted, held) = books.get(&account.pan_masked).copied().unwrap_or_default();
            assert_eq!(
                (posted, held),
                (account.posted_minor, account.held_minor),
                "{backend:?} {}: posgate's (posted, held) vs the bank's",
                account.pan_masked
            );
        }
        let stats = bank.stats();
        assert_eq!(stats.references_ambiguous, 0, "{backend:?}: {stats:?}");
        assert!(
            stats.requests("0400") + stats.requests("0401") > 0 && stats.requests("0220") > 0,
            "{backend:?}: reversals and captures were exercised: {stats:?}"
        );
        eprintln!(
            "{backend:?}: {} answers; bank {stats:?}",
            answered.load(Ordering::Relaxed)
        );
        bank.shutdown().await;
    }
}
