//! schemathesis fuzzes `opptak serve` from its own `/openapi.json`: a bounded
//! number of generated requests per operation, and not one may get a 5xx.

use std::process::Command;

use opptak_tests::{OpptakServe, TEST_TOKEN, require_program};

/// Examples per operation; with the coverage and stateful phases this is
/// about 1,300 requests, ~15 s here. (`--max-time` would not bound the run:
/// schemathesis keeps fuzzing until the time is spent.)
const MAX_EXAMPLES: &str = "25";

#[test]
fn no_generated_request_gets_a_server_error() {
    let Some(schemathesis) = require_program("schemathesis", "to fuzz the server from its OpenAPI document")
    else {
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(data_dir.path(), &[], &[]).unwrap();
    let report = data_dir.path().join("schemathesis");
    let output = Command::new(schemathesis)
        // It keeps a cache folder where it runs: keep that out of the repository.
        .current_dir(data_dir.path())
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["--checks", "not_a_server_error", "--max-examples", MAX_EXAMPLES])
        .args(["--seed", "20261125", "--generation-database", "none", "--no-color", "--workers", "2"])
        .args(["--header", &format!("Authorization: Bearer {TEST_TOKEN}")])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found server errors:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The summary's "Test cases: N generated, N passed" line.
    let summary = stdout.lines().rfind(|line| line.contains(" generated,")).unwrap_or_default();
    eprintln!("schemathesis: {}", summary.trim());
    assert!(summary.contains("passed"), "no test cases ran:\n{stdout}");
}
