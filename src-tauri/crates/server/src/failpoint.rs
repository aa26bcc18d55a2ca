//! Test-only pause points, for crash tests that SIGKILL a real server at an
//! exact moment. `OPPTAK_TEST_FAILPOINT=<point>:<marker file>` makes the
//! first task that reaches `<point>` write the marker file and then wait
//! for ever (the test kills the process). Unset, a point costs one
//! environment lookup. Points: `finish-before-commit` (storage completed
//! the upload, the database does not know yet) and `verifying` (a
//! verification job is claimed and nothing else happens to it).

/// The environment variable that arms a point.
const ARM: &str = "OPPTAK_TEST_FAILPOINT";

/// Waits for ever if the test armed `point`, after writing its marker file.
pub(crate) async fn pause_if_armed(point: &str) {
    let Ok(armed) = std::env::var(ARM) else { return };
    let Some((name, marker)) = armed.split_once(':') else { return };
    if name != point {
        return;
    }
    tracing::warn!(point, "test failpoint reached: this task waits until the process is killed");
    if let Err(err) = std::fs::write(marker, point) {
        tracing::error!(error = %err, marker, "could not write the failpoint's marker file");
    }
    std::future::pending::<()>().await;
}
