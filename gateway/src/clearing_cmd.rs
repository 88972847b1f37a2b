//! `posgate clearing ...`: run a business day's clearing, verify a file,
//! print the signing key's public half, and benchmark a 1,000,000-transaction day.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use clap::Subcommand;
use posgate::bench::clearing as bench;
use posgate_core::clearing::service::{self, Progress, Verifier};
use posgate_core::config::Config;
use posgate_store as store;

#[derive(Debug, Subcommand)]
pub enum ClearingCommand {
    /// Close a business day (if open) and write every partner's clearing files,
    /// signatures, net positions and the manifest into OUT/YYYY-MM-DD/.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// The business date, YYYY-MM-DD.
        #[arg(long)]
        date: NaiveDate,
        /// Output directory (default: `[clearing] out_dir` of the config).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a clearing file or manifest: signatures, manifest entry, record
    /// layout and trailer totals. Exits 1 and names line and field on any problem.
    Verify {
        file: PathBuf,
        /// Check signatures with this config's HSM.
        #[arg(long, short, conflicts_with = "public_key")]
        config: Option<PathBuf>,
        /// Check signatures with this Ed25519 public key (64 hex digits), as a partner does.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Ingest a partner's acknowledgement (or return) file: parse it strictly,
    /// reconcile it against posgate's items of its partner and business date,
    /// store it with the exceptions found. A malformed file is refused with
    /// its line and field, and nothing of it is applied.
    Ack {
        #[arg(long, short)]
        config: PathBuf,
        file: PathBuf,
    },
    /// List reconciliation exceptions (items missing on either side, amount
    /// mismatches, rejected items), optionally of one business date and partner.
    Exceptions {
        #[arg(long, short)]
        config: PathBuf,
        /// The business date, YYYY-MM-DD.
        #[arg(long)]
        date: Option<NaiveDate>,
        /// The partner, e.g. `bank:acquirer`.
        #[arg(long)]
        partner: Option<String>,
    },
    /// Print the public key (hex) of the clearing signing key, for partners.
    PublicKey {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Seed ROWS transactions for one business day into a fresh database with
    /// bulk SQL, then time `posgate clearing run` on it and report its peak memory.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// `sqlite://FILE` (a new file) or a PostgreSQL URL (a private schema is created and dropped).
        #[arg(long)]
        database_url: String,
        /// Where the files go (default: a temporary directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(command: ClearingCommand) -> anyhow::Result<()> {
    match command {
        ClearingCommand::Run { config, date, out } => run_command(&config, date, out).await,
        ClearingCommand::Verify {
            file,
            config,
            public_key,
        } => verify_command(&file, config.as_deref(), public_key.as_deref()).await,
        ClearingCommand::PublicKey { config } => {
            let config = Config::load(&config)?;
            let hsm = config
                .card
                .hsm
                .as_ref()
                .context("no [hsm] section")?
                .open()?;
            let key = hsm
                .public_key(&posgate_hsm::KeyRef::latest(
                    config.clearing.signing_key.clone(),
                ))
                .await?;
            println!("{}", hex::encode(key.as_bytes()));
            Ok(())
        }
        ClearingCommand::Bench {
            rows,
            database_url,
            out,
        } => bench_command(rows, &database_url, out).await,
        ClearingCommand::Ack { config, file } => ack_command(&config, &file).await,
        ClearingCommand::Exceptions {
            config,
            date,
            partner,
        } => exceptions_command(&config, date, partner.as_deref()).await,
    }
}

async fn open_store(
    config_path: &Path,
) -> anyhow::Result<(
    Config,
    std::sync::Arc<dyn posgate_core::ports::db::Database>,
)> {
    let config = Config::load(config_path)
        .with_context(|| format!("loading config {}", config_path.display()))?;
    let store = store::open(&config.database.url, 2).await?;
    store.migrate().await?;
    Ok((config, store))
}

async fn ack_command(config_path: &Path, file: &Path) -> anyhow::Result<()> {
    let (_, store) = open_store(config_path).await?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let ingested = service::reconcile(&store, &bytes, Utc::now())
        .await
        .with_context(|| format!("acknowledgement {}", file.display()))?;
    let verb = if ingested.new {
        "ingested"
    } else {
        "already ingested"
    };
    println!(
        "{verb} {} {} {}: {} items, {} matched, {} exceptions",
        ingested.file.file_id,
        ingested.file.partner,
        ingested.file.business_date,
        ingested.file.items.len(),
        ingested.report.matched,
        ingested.report.exceptions.len()
    );
    Ok(())
}

async fn exceptions_command(
    config_path: &Path,
    date: Option<NaiveDate>,
    partner: Option<&str>,
) -> anyhow::Result<()> {
    let (_, store) = open_store(config_path).await?;
    let exceptions = service::exceptions(store.as_ref(), date, partner).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "business_date,partner,kind,transaction_id,reference,currency,ours_minor,theirs_minor,reason"
    )?;
    let amount = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
    for e in &exceptions {
        writeln!(
            stdout,
            "{},{},{},{},{},{},{},{},{}",
            e.business_date,
            e.partner,
            e.kind.as_str(),
            e.transaction_id,
            e.reference,
            e.currency,
            amount(e.ours_minor),
            amount(e.theirs_minor),
            e.reason
        )?;
    }
    eprintln!("{} exceptions", exceptions.len());
    Ok(())
}

async fn run_command(
    config_path: &Path,
    date: NaiveDate,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = Config::load(config_path)
        .with_context(|| format!("loading config {}", config_path.display()))?;
    let store = store::open(&config.database.url, 2).await?;
    store.migrate().await?;
    let context = config.clearing_context(store)?;
    let out = out.unwrap_or_else(|| config.clearing.out_dir.clone());
    let mut last_report = Instant::now();
    let mut progress = move |progress: Progress| {
        // Progress on stderr, at most twice a second.
        if last_report.elapsed().as_millis() >= 500 {
            last_report = Instant::now();
            eprintln!(
                "clearing {date}: {} items written, {} partners done",
                progress.items, progress.partners_done
            );
        }
    };
    let day = service::close_day(&context, date, &out, Utc::now(), &mut progress)
        .await
        .with_context(|| format!("clearing business date {date}"))?;
    let mut stdout = std::io::stdout().lock();
    for file in &day.files {
        writeln!(stdout, "file {}", file.display())?;
    }
    for position in &day.positions {
        writeln!(
            stdout,
            "position {} {} items={} gross_minor={} fees_minor={} net_minor={}",
            position.partner,
            position.currency,
            position.items,
            position.gross_minor,
            position.fees_minor,
            position.net_minor
        )?;
    }
    eprintln!(
        "clearing {date}: done in {:.2} s, peak_rss_kib={}",
        started.elapsed().as_secs_f64(),
        bench::peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}

async fn verify_command(
    file: &Path,
    config: Option<&Path>,
    public_key: Option<&str>,
) -> anyhow::Result<()> {
    let verifier = match (config, public_key) {
        (_, Some(key)) => {
            Verifier::PublicKey(hex::decode(key.trim()).context("--public-key is not hex")?)
        }
        (Some(config), None) => {
            let config = Config::load(config)?;
            Verifier::Hsm(
                config
                    .card
                    .hsm
                    .as_ref()
                    .context("no [hsm] section in the config")?
                    .open()?,
            )
        }
        (None, None) => anyhow::bail!("give --config (HSM) or --public-key to check signatures"),
    };
    let report = service::verify_file(file, &verifier).await;
    for passed in &report.passed {
        println!("ok: {passed}");
    }
    for problem in &report.problems {
        println!("PROBLEM: {problem}");
    }
    if report.is_ok() {
        println!("{}: verified", file.display());
        Ok(())
    } else {
        anyhow::bail!(
            "{}: {} problem(s) found",
            file.display(),
            report.problems.len()
        )
    }
}

/// The benchmark's business date: any ended day works (a day is closed only
/// after every store's cutoff); this one is long past and far from real data.
const BENCH_DATE: &str = "2001-01-15";

async fn bench_command(rows: u64, database_url: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("temporary directory")?;
    let (url, schema) = bench_database(database_url).await?;
    let result = bench_in(rows, &url, work.path(), out).await;
    if let Some(schema) = schema {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
    }
    result
}

/// A fresh database for the bench: the SQLite file must not exist; on
/// PostgreSQL a private schema is created (and dropped afterwards).
pub(crate) async fn bench_database(url: &str) -> anyhow::Result<(String, Option<String>)> {
    use sqlx::Connection as _;
    if let Some(path) = url.strip_prefix("sqlite://") {
        anyhow::ensure!(
            !Path::new(path).exists(),
            "{path} exists; the bench needs a new SQLite file"
        );
        return Ok((url.to_owned(), None));
    }
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok((
        format!("{url}{separator}options=-c%20search_path%3D{schema}"),
        Some(schema),
    ))
}

async fn bench_in(rows: u64, url: &str, work: &Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let date: NaiveDate = BENCH_DATE.parse().expect("a valid date");
    let store = store::open(url, 2).await?;
    store.migrate().await?;
    drop(store);
    let seeding = Instant::now();
    bench::seed(url, rows, date, Utc::now()).await?;
    eprintln!(
        "bench: seeded {rows} transactions in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let keystore = work.join("bench.keystore");
    let master = work.join("bench.master");
    posgate_sims::test_keys::write_test_keystore(&keystore, &master).await?;
    let config_path = work.join("bench.toml");
    std::fs::write(&config_path, bench_config(url, &keystore, &master))?;
    let out = out.unwrap_or_else(|| work.join("out"));
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["clearing", "run", "--config"])
        .arg(&config_path)
        .args(["--date", BENCH_DATE, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting posgate clearing run")?;
    let mut peak_rss_kib: u64 = 0;
    let stderr = child.stderr.take().expect("piped");
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line?;
        if let Some(value) = line.split("peak_rss_kib=").nth(1) {
            peak_rss_kib = value.trim().parse().unwrap_or(0);
        }
        eprintln!("  {line}");
    }
    let status = child.wait()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "posgate clearing run failed: {status}");
    let day_dir = out.join(BENCH_DATE);
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(&day_dir)? {
        files += 1;
        bytes += entry?.metadata()?.len();
    }
    let backend = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "clearing bench ({backend}): {rows} transactions, {files} files, {} MB written, wall {:.2} s, peak RSS {}.{} MB",
        bytes / 1_000_000,
        elapsed.as_secs_f64(),
        peak_rss_kib / 1024,
        peak_rss_kib % 1024 * 10 / 1024
    );
    Ok(())
}

fn bench_config(url: &str, keystore: &Path, master: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused.pem"
tls_key = "unused.key"
client_ca = "ca.pem"

[database]
url = "{url}"

[hsm]
backend = "software"
keystore = "{keystore}"
master_key_file = "{master}"

[[store]]
id = "S001"
name = "Taipei"
time_zone = "Asia/Taipei"
cutoff = "23:00"

[[store]]
id = "S101"
name = "Tokyo"
time_zone = "Asia/Tokyo"
cutoff = "00:00"

[[partner]]
id = "biller:TPC"
profile = "tw-fixed"
currency = "TWD"
fee = {{ kind = "fixed", amount_minor = 200 }}

[[partner]]
id = "biller:TWATER"
profile = "tw-fixed"
currency = "TWD"
fee = {{ kind = "percent", rate_percent = "0.15", min_minor = 100, max_minor = 2000, rounding = "half-even" }}

[[partner]]
id = "biller:TKGAS"
profile = "jp-fixed"
currency = "JPY"
fee = {{ kind = "tiered", tiers = [ {{ up_to_minor = 10000, fee_minor = 10 }}, {{ up_to_minor = 999999999999, fee_minor = 30 }} ] }}

[[partner]]
id = "bank:acquirer"
profile = "tw-fixed"
currency = "TWD"
fee = {{ kind = "percent", rate_percent = "1.5", min_minor = 0, max_minor = 999999999999, rounding = "half-up" }}

[[partner]]
id = "bank:cobrand"
profile = "jp-fixed"
currency = "JPY"
"#,
        keystore = keystore.display(),
        master = master.display()
    )
}
