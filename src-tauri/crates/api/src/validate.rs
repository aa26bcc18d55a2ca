//! The API's rules for request values, all checked at once.
//!
//! What is checked here needs nothing but the request. Checks that need the
//! server's state (the recording is the caller's, `uploadId` and
//! `objectKey` are the ones `start` issued, each part is in storage with
//! that ETag and size) are the server's, which adds its findings to the
//! same [`ModelState`] under keys built with [`FieldPath`].
//!
//! The rules are listed in the crate documentation, under "Validation".

use std::collections::{BTreeSet, HashSet};

use crate::extract::range_message;
use crate::model_state::{FieldPath, ModelState};
use crate::requests::{AbortRequest, FinishRequest, ListPartsRequest, PartsRequest, StartRequest};
use crate::{MAX_NAME_CHARS, MAX_PARTS, MAX_PRESIGN_BATCH, MAX_UPLOAD_BYTES};

/// How many missing part numbers a gap message names before summarising.
const GAPS_NAMED: usize = 5;

pub(crate) fn start(request: &StartRequest) -> ModelState {
    let mut state = ModelState::new();
    let root = FieldPath::request();
    name(&mut state, &root.field("recordingName"), &request.recording_name);
    name(&mut state, &root.field("recorderType"), &request.recorder_type);
    if let Some(size) = request.expected_size_bytes
        && !(1..=MAX_UPLOAD_BYTES).contains(&size)
    {
        state.add(
            root.field("expectedSizeBytes"),
            format!(
                "expectedSizeBytes must be null (while the size is not known) or between 1 and {MAX_UPLOAD_BYTES}; got {size}."
            ),
        );
    }
    state
}

pub(crate) fn parts(request: &PartsRequest) -> ModelState {
    let mut state = ModelState::new();
    let root = FieldPath::request();
    session(&mut state, &request.recording_id, &request.upload_id);
    let numbers = root.field("partNumbers");
    let count = request.part_numbers.len();
    if !(1..=MAX_PRESIGN_BATCH).contains(&count) {
        let advice = if count > MAX_PRESIGN_BATCH {
            format!(" Presign at most {MAX_PRESIGN_BATCH} parts per request.")
        } else {
            String::new()
        };
        state.add(
            &numbers,
            format!("partNumbers must list 1-{MAX_PRESIGN_BATCH} part numbers; it lists {count}.{advice}"),
        );
    }
    let mut seen = HashSet::new();
    for (i, &n) in request.part_numbers.iter().enumerate() {
        let path = numbers.index(i);
        if part_number(&mut state, &path, n) && !seen.insert(n) {
            state.add(&path, duplicate_message(n));
        }
    }
    // With no part numbers (none sent, or none readable) that is the
    // problem; contentMd5 has nothing to be counted against.
    if let Some(md5s) = &request.content_md5
        && count > 0
        && md5s.len() != count
    {
        state.add(
            root.field("contentMd5"),
            format!(
                "contentMd5 must have one entry per part number, in the same order: {count} expected, {} given.",
                md5s.len()
            ),
        );
    }
    state
}

pub(crate) fn list_parts(request: &ListPartsRequest) -> ModelState {
    let mut state = ModelState::new();
    session(&mut state, &request.recording_id, &request.upload_id);
    state
}

pub(crate) fn abort(request: &AbortRequest) -> ModelState {
    let mut state = ModelState::new();
    session(&mut state, &request.recording_id, &request.upload_id);
    state
}

pub(crate) fn finish(request: &FinishRequest) -> ModelState {
    let mut state = ModelState::new();
    let root = FieldPath::request();
    session(&mut state, &request.recording_id, &request.upload_id);
    not_empty(&mut state, &root.field("objectKey"), &request.object_key);
    name(&mut state, &root.field("recordingName"), &request.recording_name);
    name(&mut state, &root.field("recorderType"), &request.recorder_type);

    let parts = root.field("parts");
    let count = request.parts.len();
    if !(1..=MAX_PARTS as usize).contains(&count) {
        state.add(&parts, format!("parts must list 1-{MAX_PARTS} parts; it lists {count}."));
    }
    let mut seen = BTreeSet::new();
    let mut all_valid = true;
    for (i, part) in request.parts.iter().enumerate() {
        let item = parts.index(i);
        let number = item.field("partNumber");
        if !part_number(&mut state, &number, part.part_number) {
            all_valid = false;
        } else if !seen.insert(part.part_number) {
            state.add(&number, duplicate_message(part.part_number));
        }
        if etag_is_empty(&part.etag) {
            state.add(item.field("etag"), "etag must not be empty.");
        }
    }
    // With an out-of-range number among them, "1..N" has no clear N.
    if all_valid && let Some(message) = gap_message(&seen) {
        state.add(&parts, message);
    }
    state
}

fn session(state: &mut ModelState, recording_id: &str, upload_id: &str) {
    let root = FieldPath::request();
    not_empty(state, &root.field("recordingId"), recording_id);
    not_empty(state, &root.field("uploadId"), upload_id);
}

fn not_empty(state: &mut ModelState, path: &FieldPath, value: &str) {
    if value.trim().is_empty() {
        state.add(path, format!("{} must not be empty.", path.label()));
    }
}

/// A name a person typed (or a recorder picked): 1-255 characters after
/// trimming, with no control characters (which XML cannot carry and no
/// list can show).
fn name(state: &mut ModelState, path: &FieldPath, value: &str) {
    let label = path.label();
    let chars = value.trim().chars().count();
    if chars == 0 {
        state
            .add(path, format!("{label} must be 1-{MAX_NAME_CHARS} characters after trimming; it is empty."));
    } else if chars > MAX_NAME_CHARS {
        state.add(
            path,
            format!("{label} must be 1-{MAX_NAME_CHARS} characters after trimming; it has {chars}."),
        );
    }
    if value.chars().any(char::is_control) {
        state.add(path, format!("{label} must not contain control characters such as line breaks or tabs."));
    }
}

/// Whether `n` is a valid part number; records the problem if not.
fn part_number(state: &mut ModelState, path: &FieldPath, n: u32) -> bool {
    let valid = (1..=MAX_PARTS).contains(&n);
    if !valid {
        state.add(path, range_message(path.label(), 1, MAX_PARTS.into(), n.into()));
    }
    valid
}

/// Whether an ETag is empty; quotes around an ETag are not significant.
fn etag_is_empty(etag: &str) -> bool {
    etag.trim().trim_matches('"').trim().is_empty()
}

fn duplicate_message(n: u32) -> String {
    format!("Part number {n} appears more than once.")
}

/// The message for part numbers that do not run 1..N, N being the highest.
fn gap_message(numbers: &BTreeSet<u32>) -> Option<String> {
    let highest = *numbers.last()?;
    let missing = usize::try_from(highest).ok()? - numbers.len();
    if missing == 0 {
        return None;
    }
    let named: Vec<String> =
        (1..highest).filter(|n| !numbers.contains(n)).take(GAPS_NAMED).map(|n| n.to_string()).collect();
    let which = match (named.as_slice(), missing) {
        ([one], 1) => format!("part {one} is missing"),
        (names, m) if m == names.len() => {
            let (last, rest) = names.split_last()?;
            format!("parts {} and {last} are missing", rest.join(", "))
        }
        (names, m) => format!("parts {} and {} more are missing", names.join(", "), m - names.len()),
    };
    Some(format!("Part numbers must run 1..N without gaps; {which}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(numbers: &[u32]) -> Option<String> {
        gap_message(&numbers.iter().copied().collect())
    }

    #[test]
    fn gap_messages_name_the_missing_parts() {
        assert_eq!(gaps(&[1, 2, 3]), None);
        assert_eq!(gaps(&[3, 1, 2]), None);
        assert_eq!(gaps(&[]), None);
        assert_eq!(
            gaps(&[1, 2, 4]).as_deref(),
            Some("Part numbers must run 1..N without gaps; part 3 is missing.")
        );
        assert_eq!(
            gaps(&[2, 5]).as_deref(),
            Some("Part numbers must run 1..N without gaps; parts 1, 3 and 4 are missing.")
        );
        assert_eq!(
            gaps(&[1, 10_000]).as_deref(),
            Some("Part numbers must run 1..N without gaps; parts 2, 3, 4, 5, 6 and 9993 more are missing.")
        );
    }

    #[test]
    fn etags_in_quotes_count_as_their_content() {
        assert!(etag_is_empty(""));
        assert!(etag_is_empty("  "));
        assert!(etag_is_empty("\"\""));
        assert!(!etag_is_empty("\"abc\""));
    }

    #[test]
    fn names_count_characters_not_bytes() {
        let mut state = ModelState::new();
        let path = FieldPath::request().field("recordingName");
        name(&mut state, &path, &"ø".repeat(255));
        assert!(state.is_empty());
        name(&mut state, &path, &"ø".repeat(256));
        assert_eq!(
            state.get("request.recordingName").unwrap(),
            ["recordingName must be 1-255 characters after trimming; it has 256."]
        );
    }
}
