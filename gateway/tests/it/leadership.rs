//! Several `posgate serve` processes on one PostgreSQL database: one of them
//! leads the jobs that must run once; when the leader is killed another
//! takes over within a bound; a drained instance reports `NOT_SERVING`
//! first, then finishes, gives the leadership up at once and exits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use posgate::tls::DevPki;
use sqlx::Connection as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cards_chaos::{Child, free_port, serve};
use crate::support::{Backend, OPEN_LIMITS, TestDb, config_text, endpoint, issue, terminal};

/// The first half of the leader's advisory lock key ("lead" in ASCII), as
/// `pg_locks.classid` shows it.
const LEADER_LOCK_CLASSID: i64 = 0x6c65_6164;
/// How often an instance that does not lead tries to (`[instance] leader_poll_ms`).
const LEADER_POLL_MS: u64 = 200;
/// A bound on the takeover on a busy 2-core machine: the poll, plus the
/// database noticing a killed process's connection, plus scheduling noise.
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);

/// One `posgate serve` process of the test, by instance id.
struct Gateway {
    id: String,
    port: u16,
    config: PathBuf,
    process: Option<Child>,
}

impl Gateway {
    fn new(dir: &Path, db_url: &str, pki: &DevPki, id: String) -> Self {
        let port = free_port();
        let text = config_text(db_url, pki, OPEN_LIMITS)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            .replace(
                "drain_ms = 0",
                &format!("id = \"{id}\"\nleader_poll_ms = {LEADER_POLL_MS}\ndrain_ms = 2000"),
            );
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(&config, text).unwrap();
        Self {
            id,
            port,
            config,
            process: None,
        }
    }

    fn start(&mut self) {
        self.process = Some(serve(&self.config));
    }

    fn kill_9(&mut self) {
        let mut process = self.process.take().expect("running");
        process.0.kill().unwrap();
        process.0.wait().unwrap();
    }

    /// Sends SIGTERM (the drain), leaving the process to exit by itself.
    fn terminate(&self) {
        let pid = self.process.as_ref().expect("running").0.id();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn health(&self, pki: &DevPki) -> HealthClient<tonic::transport::Channel> {
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let endpoint = endpoint(addr, pki, &issue(pki, &terminal("S001", "T01")));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = endpoint.connect().await {
                return HealthClient::new(channel);
            }
            assert!(Instant::now() < deadline, "{} did not come up", self.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The instances among `ids` that hold the leader's lock now.
async fn leaders(conn: &mut sqlx::PgConnection, ids: &[&str]) -> Vec<String> {
    let names: Vec<String> = ids.iter().map(|id| format!("posgate {id}")).collect();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 \
         AND a.application_name = ANY($2)",
    )
    .bind(LEADER_LOCK_CLASSID)
    .bind(&names)
    .fetch_all(conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|name| name.trim_start_matches("posgate ").to_owned())
        .collect()
}

/// Waits until exactly one of `ids` other than `former` leads and returns
/// it with the time it took. A killed leader's lock shows in `pg_locks`
/// until its backend has read the end of the closed connection, so the
/// former leader is waited out, not taken for the new one.
async fn wait_for_leader(
    conn: &mut sqlx::PgConnection,
    ids: &[&str],
    former: Option<&str>,
) -> (String, Duration) {
    let started = Instant::now();
    loop {
        let now = leaders(conn, ids).await;
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        if let [leader] = now.as_slice()
            && Some(leader.as_str()) != former
        {
            return (leader.clone(), started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no leader among {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances: one leads; SIGKILL of the leader hands the lead to the
/// other within the bound; SIGTERM of the new leader reports `NOT_SERVING`
/// while it still answers, exits cleanly, and the restarted first instance
/// leads at once (the drained leader resigned instead of leaving its lock
/// to time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_a_drained_one_hands_over() {
    let Ok(base) = std::env::var("POSGATE_TEST_PG_URL") else {
        eprintln!("SKIPPED: POSGATE_TEST_PG_URL is not set; leadership needs PostgreSQL");
        return;
    };
    let db = TestDb::new(Backend::Postgres).await;
    db.store().await; // migrated once, before the instances race to start
    let pki = DevPki::generate(db.dir.path()).unwrap();
    let run = &uuid::Uuid::now_v7().simple().to_string()[24..];
    let mut gateways: Vec<Gateway> = ["a", "b"]
        .iter()
        .map(|name| Gateway::new(db.dir.path(), &db.url, &pki, format!("lead-{run}-{name}")))
        .collect();
    let ids: Vec<String> = gateways.iter().map(|gateway| gateway.id.clone()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for gateway in &mut gateways {
        gateway.start();
    }
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();

    let (first, _) = wait_for_leader(&mut conn, &ids, None).await;
    let killed = gateways.iter().position(|g| g.id == first).unwrap();
    gateways[killed].kill_9();
    let (second, takeover) = wait_for_leader(&mut conn, &ids, Some(&first)).await;
    eprintln!("leader {first} killed with SIGKILL: {second} took over in {takeover:?}");
    assert!(takeover < TAKEOVER_BOUND, "takeover took {takeover:?}");

    gateways[killed].start();
    gateways[killed].health(&pki).await;
    let leader = 1 - killed;
    let mut health = gateways[leader].health(&pki).await;
    let serving = |health: &mut HealthClient<_>| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest::default())
                .await
                .map(|answer| answer.into_inner().status())
        }
    };
    assert_eq!(serving(&mut health).await.unwrap(), ServingStatus::Serving);
    gateways[leader].terminate();
    let drain_started = Instant::now();
    loop {
        match serving(&mut health).await {
            Ok(ServingStatus::NotServing) => break,
            Ok(_) => {}
            Err(status) => {
                panic!("the draining instance stopped answering before NOT_SERVING: {status}")
            }
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(20),
            "never NOT_SERVING"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut process = gateways[leader].process.take().unwrap();
    let exited = loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(30),
            "the drained instance did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "drained instance exited with {exited}");
    let (third, handover) = wait_for_leader(&mut conn, &ids, Some(&second)).await;
    assert_eq!(third, gateways[killed].id);
    eprintln!(
        "leader {second} drained with SIGTERM: {third} took over {handover:?} after it exited"
    );
    assert!(handover < TAKEOVER_BOUND, "handover took {handover:?}");
}
