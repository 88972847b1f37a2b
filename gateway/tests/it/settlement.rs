//! Settlement instructions: the NACHA ACH file is checked by achkit, an
//! independent NACHA validator from the Python package index (record lengths, blocking, entry
//! and batch counts, entry hash, debit and credit totals at batch and file
//! level, block count, routing-number check digits). Skipped with a note when
//! achkit is missing, unless `POSGATE_REQUIRE_ACH_VALIDATOR=1` (CI sets it).

use std::io::Write as _;
use std::process::{Command, Stdio};

use chrono::NaiveDate;
use posgate_core::clearing::model::{FileProfile, NetPosition, PartnerConfig};
use posgate_core::clearing::settle::nacha::{self, AchEntry, AchFileSpec};
use posgate_core::clearing::settle::{Originator, SettleRun, SettlementConfig, write_day};
use posgate_core::model::money::Currency;

/// Prints achkit's verdict as JSON: `{"ok": bool, "errors": [...]}`.
const VALIDATE: &str = "import sys, json, achkit\n\
                        print(json.dumps(achkit.validate(sys.stdin.read())))";

/// Whether achkit can be imported; fails when required and missing.
fn achkit_available() -> bool {
    let imported = Command::new("python3")
        .args(["-c", "import achkit"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !imported {
        let required = std::env::var("POSGATE_REQUIRE_ACH_VALIDATOR").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "POSGATE_REQUIRE_ACH_VALIDATOR=1 but `python3 -c 'import achkit'` fails: pip install achkit==0.2.0"
        );
        eprintln!(
            "SKIPPED the NACHA check by achkit: `import achkit` fails (pip install achkit==0.2.0)"
        );
    }
    imported
}

/// achkit's list of errors for a file (empty: valid).
fn achkit_errors(file: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(file.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "achkit ran");
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors: Vec<String> = verdict["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| format!("{}: {}", error["code"], error["message"]))
        .collect();
    assert_eq!(verdict["ok"].as_bool(), Some(errors.is_empty()));
    errors
}

fn originator() -> Originator {
    Originator {
        destination_routing: "091000019".into(),
        destination_name: "Federal Reserve Bank".into(),
        origin_id: "1234567890".into(),
        origin_name: "posgate chain".into(),
        company_name: "POSGATE CHAIN".into(),
        company_id: "1234567890".into(),
        odfi_routing: "091000019".into(),
    }
}

/// Valid ABA routing numbers of real US banks (public).
const ROUTINGS: [&str; 4] = ["011401533", "021000021", "111000025", "026009593"];

fn entries(amounts: &[i64]) -> Vec<AchEntry> {
    amounts
        .iter()
        .enumerate()
        .map(|(index, &amount_minor)| AchEntry {
            partner: format!("biller:US{index:02}"),
            name: format!("Partner {index}"),
            routing_number: ROUTINGS[index % ROUTINGS.len()].into(),
            account_number: format!("{}", 100_000 + index),
            amount_minor,
        })
        .collect()
}

fn spec(sequence: u32) -> AchFileSpec {
    AchFileSpec {
        business_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        created_at: NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap(),
        run_sequence: sequence,
    }
}

/// Files of several partners with credits only, debits only, both, at the
/// blocking edge (exactly 10 records) and past it, all pass achkit; the
/// same input gives the same bytes.
#[test]
fn nacha_files_pass_the_independent_validator() {
    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("credits only", vec![150_000, 2_500, 99]),
        ("debits only", vec![-75_000, -1]),
        (
            "credits and debits",
            vec![120_000, -40_000, 3_333, -9_999_999_999],
        ),
        // 1 + 1 + 6 + 1 + 1 = 10 records: one full block, no filler.
        ("exactly ten records", vec![1, -2, 3, -4, 5, -6]),
        ("eleven records", vec![1, -2, 3, -4, 5, -6, 7]),
        (
            "many partners",
            (1..=37)
                .map(|i| i * 1_001 * if i % 3 == 0 { -1 } else { 1 })
                .collect(),
        ),
    ];
    let available = achkit_available();
    for (name, amounts) in cases {
        let entries = entries(&amounts);
        let file = nacha::render(&originator(), &spec(1), &entries)
            .unwrap()
            .unwrap();
        let again = nacha::render(&originator(), &spec(1), &entries)
            .unwrap()
            .unwrap();
        assert_eq!(file, again, "{name}: deterministic");
        let records = file.lines().count();
        assert_eq!(records % 10, 0, "{name}: blocked by 10");
        assert!(file.lines().all(|line| line.len() == 94), "{name}");
        if name == "exactly ten records" {
            assert_eq!(records, 10);
            assert!(!file.contains(&"9".repeat(94)), "no filler at the edge");
        }
        if name == "eleven records" {
            assert_eq!(records, 20);
        }
        if available {
            assert_eq!(
                achkit_errors(&file),
                Vec::<String>::new(),
                "{name}:\n{file}"
            );
        }
    }
}

/// The validator is not a rubber stamp: a changed amount, a broken routing
/// check digit and a dropped filler record are each caught.
#[test]
fn the_validator_catches_tampering() {
    if !achkit_available() {
        return;
    }
    let file = nacha::render(&originator(), &spec(2), &entries(&[120_000, -40_000, 7]))
        .unwrap()
        .unwrap();
    assert!(achkit_errors(&file).is_empty());
    let lines: Vec<&str> = file.lines().collect();
    let mut amount = lines.clone();
    let entry = lines[2].replacen("0000120000", "0000120001", 1);
    amount[2] = &entry;
    let errors = achkit_errors(&(amount.join("\n") + "\n"));
    assert!(
        errors.iter().any(|e| e.contains("BAD_BATCH_CREDIT")),
        "{errors:?}"
    );
    let mut routing = lines.clone();
    let entry = format!("{}{}{}", &lines[2][..3], "011401534", &lines[2][12..]);
    routing[2] = &entry;
    let errors = achkit_errors(&(routing.join("\n") + "\n"));
    assert!(
        errors.iter().any(|e| e.contains("BAD_ROUTING_CHECKSUM")),
        "{errors:?}"
    );
    let short = lines[..lines.len() - 1].join("\n") + "\n";
    let errors = achkit_errors(&short);
    assert!(
        errors.iter().any(|e| e.contains("BAD_BLOCKING")),
        "{errors:?}"
    );
}

fn partner(
    id: &str,
    currency: &str,
    routing: Option<&str>,
    bank_code: Option<&str>,
) -> PartnerConfig {
    let mut partner = PartnerConfig::unconfigured(id, Currency::from_code(currency).unwrap());
    partner.profile = if currency == "USD" {
        FileProfile::UsAch
    } else if currency == "JPY" {
        FileProfile::JpFixed
    } else {
        FileProfile::TwFixed
    };
    partner.routing_number = routing.map(str::to_owned);
    partner.bank_code = bank_code.map(str::to_owned);
    partner.account_number = Some("000123456".into());
    partner
}

fn position(partner: &str, currency: &str, net_minor: i64) -> NetPosition {
    NetPosition {
        partner: partner.into(),
        currency: currency.into(),
        gross_minor: net_minor,
        fees_minor: 0,
        net_minor,
        items: 1,
    }
}

/// A day's positions become one ACH file (USD, validated by achkit) and one
/// instruction file per other currency; stores, the chain and zero
/// positions move nothing; a rerun writes identical bytes.
#[test]
fn a_day_of_positions_becomes_instruction_files() {
    let partners = vec![
        partner("biller:USWATER", "USD", Some("011401533"), None),
        partner("bank:usacq", "USD", Some("021000021"), None),
        partner("biller:TPC", "TWD", None, Some("0081234")),
        partner("biller:TEPCO", "JPY", None, Some("0001001")),
    ];
    let mut config = SettlementConfig {
        ach: Some(originator()),
        ..SettlementConfig::default()
    };
    for currency in ["TWD", "JPY"] {
        config.accounts.insert(
            currency.into(),
            posgate_core::clearing::settle::OriginAccount {
                bank_code: "0040037".into(),
                account_number: "9876543210".into(),
                name: "posgate chain".into(),
            },
        );
    }
    let positions = vec![
        position("biller:USWATER", "USD", 125_000),
        position("bank:usacq", "USD", -80_000),
        position("biller:TPC", "TWD", 450_000),
        position("biller:TEPCO", "JPY", 0),
        position("store:S1", "TWD", -450_000),
        position("chain", "USD", -45_000),
    ];
    let run = SettleRun {
        business_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        created_at: NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_opt(1, 0, 0)
            .unwrap(),
        run_sequence: 1,
        config: &config,
        partners: &partners,
    };
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let files = write_day(&run, &positions, first.path()).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["settle-20261123-TWD.txt", "settle-20261123-USD.ach"]
    );
    let again = write_day(&run, &positions, second.path()).unwrap();
    for (a, b) in files.iter().zip(&again) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
    let ach = std::fs::read_to_string(&files[1]).unwrap();
    let header = ach.lines().nth(1).unwrap();
    assert_eq!(&header[1..4], "200");
    assert_eq!(&header[50..53], "CCD");
    let codes: Vec<_> = ach
        .lines()
        .filter(|line| line.starts_with('6'))
        .map(|line| &line[1..3])
        .collect();
    assert_eq!(
        codes,
        ["27", "22"],
        "bank:usacq owes (debit), biller:USWATER is owed (credit)"
    );
    if achkit_available() {
        assert_eq!(achkit_errors(&ach), Vec::<String>::new());
    }
    let twd = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(twd.lines().count(), 3);
    assert!(
        twd.lines()
            .nth(1)
            .unwrap()
            .starts_with("D000001CBILLER:TPC")
    );

    // A partner whose routing number fails the check digit is refused at config load.
    let raw: posgate_core::clearing::model::RawPartner = toml::from_str(
        "id = \"biller:BAD\"\nprofile = \"us-ach\"\ncurrency = \"USD\"\nrouting_number = \"011401534\"",
    )
    .unwrap();
    let (field, _) = PartnerConfig::check(raw).unwrap_err();
    assert_eq!(field, "routing_number");
}

/// `posgate clearing verify` reads the settlement files' content, not only
/// their hash: what the independent validators catch in an ACH file (a
/// changed amount, a broken routing check digit, a dropped filler record)
/// and a changed instruction amount are each named by line and field.
#[test]
fn verify_checks_settlement_structure_and_totals() {
    use posgate_core::clearing::settle::check::{check_ach, check_instruction};
    let lines_of = |text: &str| -> Vec<Vec<u8>> {
        text.lines().map(|line| line.as_bytes().to_vec()).collect()
    };
    let file = nacha::render(&originator(), &spec(2), &entries(&[120_000, -40_000, 7]))
        .unwrap()
        .unwrap();
    let lines = lines_of(&file);
    assert_eq!(check_ach("a.ach", &lines), Vec::<String>::new());

    let mut amount = lines.clone();
    let entry =
        String::from_utf8(amount[2].clone())
            .unwrap()
            .replacen("0000120000", "0000120001", 1);
    amount[2] = entry.into_bytes();
    let problems = check_ach("a.ach", &amount);
    let batch_control = lines.iter().position(|line| line[0] == b'8').unwrap() + 1;
    let file_control = lines.iter().position(|line| line[0] == b'9').unwrap() + 1;
    for expected in [
        format!(
            "line {batch_control}, positions 33-44 (total credit entry dollar amount): says 120007, the entries give 120008"
        ),
        format!(
            "line {file_control}, positions 44-55 (total credit entry dollar amount): says 120007, the entries give 120008"
        ),
    ] {
        assert!(
            problems.iter().any(|problem| problem.contains(&expected)),
            "{expected} not in {problems:?}"
        );
    }

    let mut routing = lines.clone();
    let entry = String::from_utf8(lines[2].clone()).unwrap();
    routing[2] = format!("{}{}{}", &entry[..3], "011401534", &entry[12..]).into_bytes();
    let problems = check_ach("a.ach", &routing);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("line 3, positions 4-12")
                && problem.contains("ABA check digit")),
        "{problems:?}"
    );

    let short = &lines[..lines.len() - 1];
    let problems = check_ach("a.ach", short);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("whole blocks")),
        "{problems:?}"
    );

    let instruction = posgate_core::clearing::settle::instruction::render(
        &posgate_core::clearing::settle::instruction::InstructionSpec {
            business_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            created_at: NaiveDate::from_ymd_opt(2026, 11, 24)
                .unwrap()
                .and_hms_opt(1, 0, 0)
                .unwrap(),
            run_sequence: 1,
            currency: "TWD".into(),
        },
        &posgate_core::clearing::settle::OriginAccount {
            bank_code: "0040037".into(),
            account_number: "9876543210".into(),
            name: "posgate chain".into(),
        },
        &[
            posgate_core::clearing::settle::instruction::InstructionEntry {
                partner: "biller:TPC".into(),
                name: "Taipower".into(),
                bank_code: "0081234".into(),
                account_number: "555".into(),
                amount_minor: 150_000,
            },
        ],
    )
    .unwrap()
    .unwrap();
    let name = "settle-20261123-TWD.txt";
    let mut lines = lines_of(&instruction);
    assert_eq!(check_instruction(name, &lines), Vec::<String>::new());
    lines[1][111] = b'1';
    let problems = check_instruction(name, &lines);
    assert!(
        problems.iter().any(|problem| problem.contains(
            "line 3, positions 8-25 (total credited): says 150000, the entries give 150001"
        )),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("positions 45-62")),
        "{problems:?}"
    );
}
