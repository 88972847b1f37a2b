//! The whole suite, through the library API, against a gateway it starts.

use std::collections::HashSet;

use posgate_conformance::all_cases;

use crate::gateway::{Bank, Gateway};

/// This release's contract has at least this many cases.
const MIN_CASES: usize = 25;
/// Of which at least this many are about card payments.
const MIN_CARD_CASES: usize = 20;

/// Case names are unique and every case says what it proves.
#[test]
fn cases_are_named_and_described() {
    let cases = all_cases();
    assert!(cases.len() >= MIN_CASES, "only {} cases", cases.len());
    let names: HashSet<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "duplicate case names");
    let card_cases = cases
        .iter()
        .filter(|case| case.name.starts_with("card"))
        .count();
    assert!(card_cases >= MIN_CARD_CASES, "only {card_cases} card cases");
    for case in &cases {
        assert!(case.name.contains('.'), "{} is not group.case", case.name);
        assert!(
            !case.description.is_empty(),
            "{} has no description",
            case.name
        );
    }
}

/// Every case passes against a real posgate gateway configured like the
/// example, with the example bank simulator behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_against_a_real_gateway() {
    let gateway = Gateway::start().await.expect("gateway starts");
    let report = posgate_conformance::run(&gateway.target(), None)
        .await
        .expect("suite connects");
    println!("{}", report.to_text());
    let expected = all_cases()
        .iter()
        .filter(|case| !case.needs_bank_no_response)
        .count();
    assert_eq!(report.results.len(), expected);
    assert!(
        report.all_passed(),
        "{} case(s) failed:\n{}\ngateway log:\n{}",
        report.failed_count(),
        report.to_text(),
        gateway.log()
    );
}

/// The cases that need a bank dropping answers pass against a gateway whose
/// bank simulator runs with `faults.no_response` and whose bank timeout is
/// 500 ms: unknown outcomes end REVERSED by the store-and-forward queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_cases_pass_against_a_bank_dropping_answers() {
    let gateway = Gateway::start_with(Bank::DropsAnswers)
        .await
        .expect("gateway starts");
    let report = posgate_conformance::run(&gateway.target(), None)
        .await
        .expect("suite connects");
    println!("{}", report.to_text());
    let expected = all_cases()
        .iter()
        .filter(|case| case.needs_bank_no_response)
        .count();
    assert!(expected >= 1, "no case needs a bank dropping answers");
    assert_eq!(report.results.len(), expected);
    assert!(
        report.all_passed(),
        "{} case(s) failed:\n{}\ngateway log:\n{}",
        report.failed_count(),
        report.to_text(),
        gateway.log()
    );
}
