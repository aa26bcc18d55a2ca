//! The words the UI and `opptak recordings` use for a recording: truthful,
//! and never more hopeful than the journal. "safe on server" appears only
//! in `ready`, which [`Journal::mark_ready`] reaches only when the
//! server's sha256 equals the local one; an upload's percentage counts
//! parts whose ETag storage returned, and never reaches 100 % before every
//! byte of the file was sent.

use crate::{Journal, LocalRecording, Problem, RecordingState, Result, UploadSession};

/// One line for a recording: "recording", "recovered", "only on this
/// computer", "waiting for network" (or, from its [`Problem`], "connection
/// stalled — retrying" and "server busy — retrying"), "uploading 43 %",
/// "processing", "safe on server" or "failed: reason" (the journaled
/// detail, else the problem's description).
///
/// `sent_bytes` counts the parts of `session` (see [`Journal::sent_bytes`]);
/// it is ignored without a session.
pub fn status_line(recording: &LocalRecording, session: Option<&UploadSession>, sent_bytes: u64) -> String {
    match recording.state {
        RecordingState::Recording => "recording".into(),
        RecordingState::Recovered => "recovered".into(),
        RecordingState::Stopped => "only on this computer".into(),
        RecordingState::Waiting => match recording.problem {
            Some(Problem::Stalled) => "connection stalled — retrying".into(),
            Some(Problem::ServerBusy) => "server busy — retrying".into(),
            _ => "waiting for network".into(),
        },
        RecordingState::Uploading => {
            let sent = if session.is_some() { sent_bytes } else { 0 };
            format!("uploading {} %", percent(sent, recording.upload_size()))
        }
        // Every part is sent; only the `finish` call is left.
        RecordingState::Finishing => "uploading 100 %".into(),
        RecordingState::Processing => "processing".into(),
        RecordingState::Ready => "safe on server".into(),
        RecordingState::Failed => {
            let reason = recording.error.as_deref().map(str::trim).filter(|reason| !reason.is_empty());
            let reason = reason.or(recording.problem.map(Problem::describe));
            format!("failed: {}", reason.unwrap_or("no reason was recorded"))
        }
    }
}

/// `part` of `whole` in whole percent, rounded down so that 100 means all.
fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let percent = u128::from(part.min(whole)) * 100 / u128::from(whole);
    u64::try_from(percent).unwrap_or(100)
}

impl Journal {
    /// [`status_line`] for the recording with this id, from its live session.
    pub fn status_line(&self, id: i64) -> Result<String> {
        let recording = self.recording(id)?.ok_or(crate::Error::UnknownRecording(id))?;
        let session = self.current_session(id)?;
        let sent = match &session {
            Some(session) => self.sent_bytes(session.id)?,
            None => 0,
        };
        Ok(status_line(&recording, session.as_ref(), sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionState;
    use crate::test_support::{growing, journal, new_session, part};

    fn recording(state: RecordingState) -> LocalRecording {
        LocalRecording {
            id: 1,
            path: "/tmp/a.wav".into(),
            name: "a".into(),
            content_type: "audio/wav".into(),
            recorder_type: "audio".into(),
            is_video: false,
            created_at: 0,
            state,
            durable_bytes: 1000,
            finished: true,
            total_bytes: Some(1000),
            sha256: None,
            server_sha256: None,
            error: None,
            destination_id: Some(1),
            problem: None,
            retry_attempts: 0,
            next_retry_at: None,
            keep_local: false,
        }
    }

    fn session() -> UploadSession {
        UploadSession {
            id: 1,
            recording_id: 1,
            destination_id: 1,
            server_recording_id: "r".into(),
            upload_id: "u".into(),
            object_key: "k".into(),
            part_size_bytes: 100,
            max_parts: 10,
            expires_at: 0,
            state: SessionState::Open,
            last_error: None,
            created_at: 0,
        }
    }

    #[test]
    fn every_state_has_its_words() {
        let session = session();
        let line = |state| status_line(&recording(state), Some(&session), 430);
        assert_eq!(line(RecordingState::Recording), "recording");
        assert_eq!(line(RecordingState::Recovered), "recovered");
        assert_eq!(line(RecordingState::Stopped), "only on this computer");
        assert_eq!(line(RecordingState::Waiting), "waiting for network");
        assert_eq!(line(RecordingState::Uploading), "uploading 43 %");
        assert_eq!(line(RecordingState::Finishing), "uploading 100 %");
        assert_eq!(line(RecordingState::Processing), "processing");
        assert_eq!(line(RecordingState::Ready), "safe on server");
        assert_eq!(line(RecordingState::Failed), "failed: no reason was recorded");
        let failed = LocalRecording {
            error: Some("the server refused the file".into()),
            ..recording(RecordingState::Failed)
        };
        assert_eq!(status_line(&failed, None, 0), "failed: the server refused the file");
        let without_detail =
            LocalRecording { problem: Some(Problem::PartsMissing), ..recording(RecordingState::Failed) };
        assert_eq!(status_line(&without_detail, None, 0), "failed: the server lost parts of the upload");
    }

    #[test]
    fn waiting_says_why_it_waits() {
        let waiting = |problem| LocalRecording { problem, ..recording(RecordingState::Waiting) };
        assert_eq!(status_line(&waiting(None), None, 0), "waiting for network");
        assert_eq!(status_line(&waiting(Some(Problem::Offline)), None, 0), "waiting for network");
        assert_eq!(status_line(&waiting(Some(Problem::Stalled)), None, 0), "connection stalled — retrying");
        assert_eq!(status_line(&waiting(Some(Problem::ServerBusy)), None, 0), "server busy — retrying");
    }

    #[test]
    fn the_percentage_never_claims_more_than_was_sent() {
        let session = session();
        let uploading = recording(RecordingState::Uploading);
        assert_eq!(status_line(&uploading, Some(&session), 0), "uploading 0 %");
        assert_eq!(status_line(&uploading, Some(&session), 999), "uploading 99 %");
        assert_eq!(status_line(&uploading, Some(&session), 1000), "uploading 100 %");
        assert_eq!(status_line(&uploading, Some(&session), 5000), "uploading 100 %");
        assert_eq!(status_line(&uploading, None, 500), "uploading 0 %", "no session, nothing sent");
        let growing =
            LocalRecording { finished: false, total_bytes: None, durable_bytes: 200, ..uploading.clone() };
        assert_eq!(status_line(&growing, Some(&session), 100), "uploading 50 %");
        let empty = LocalRecording { durable_bytes: 0, total_bytes: Some(0), ..uploading };
        assert_eq!(status_line(&empty, Some(&session), 0), "uploading 0 %");
        assert_eq!(percent(u64::MAX - 1, u64::MAX), 99);
    }

    #[test]
    fn the_journal_reads_the_words_from_its_tables() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap().id;
        assert_eq!(journal.status_line(id).unwrap(), "recording");
        journal.set_durable_bytes(id, 40).unwrap();
        journal.mark_finished(id, 40, None).unwrap();
        assert_eq!(journal.status_line(id).unwrap(), "only on this computer");
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(id, new_session(destination, 10)).unwrap();
        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        journal.record_part_sent(session.id, part(1, 10, 10)).unwrap();
        assert_eq!(journal.status_line(id).unwrap(), "uploading 25 %");
        journal.set_state(id, RecordingState::Waiting, Some("connection refused")).unwrap();
        assert_eq!(journal.status_line(id).unwrap(), "waiting for network");
        assert!(journal.status_line(999).is_err());
    }
}
