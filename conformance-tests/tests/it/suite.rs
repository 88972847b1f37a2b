//! The whole suite, through the library API, against a gateway it starts.

use std::collections::HashSet;

use posgate_conformance::all_cases;

use crate::gateway::Gateway;

/// This release's contract has at least this many cases.
const MIN_CASES: usize = 25;

/// Case names are unique and every case says what it proves.
#[test]
fn cases_are_named_and_described() {
    let cases = all_cases();
    assert!(cases.len() >= MIN_CASES, "only {} cases", cases.len());
    let names: HashSet<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "duplicate case names");
    for case in &cases {
        assert!(case.name.contains('.'), "{} is not group.case", case.name);
        assert!(
            !case.description.is_empty(),
            "{} has no description",
            case.name
        );
    }
}

/// Every case passes against a real posgate gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_against_a_real_gateway() {
    let gateway = Gateway::start().await.expect("gateway starts");
    let report = posgate_conformance::run(&gateway.target(), None)
        .await
        .expect("suite connects");
    println!("{}", report.to_text());
    assert_eq!(report.results.len(), all_cases().len());
    assert!(
        report.all_passed(),
        "{} case(s) failed:\n{}\ngateway log:\n{}",
        report.failed_count(),
        report.to_text(),
        gateway.log()
    );
}
