//! The API's limits, shared by the server that enforces them and the client
//! that plans within them.

/// At most this many parts per upload (S3's limit).
pub const MAX_PARTS: u32 = 10_000;

/// The smallest part size `start` may hand out (S3's minimum for every part
/// but the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// The largest part S3 accepts: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The largest upload the API can describe, [`MAX_PARTS`] parts of
/// [`MAX_PART_SIZE`]; the upper bound of `expectedSizeBytes`.
pub const MAX_UPLOAD_BYTES: u64 = MAX_PARTS as u64 * MAX_PART_SIZE;

/// A request body longer than this answers 413: 2 MiB.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// At most this many part numbers in one `parts` (presign) request.
pub const MAX_PRESIGN_BATCH: usize = 100;

/// The most characters `recordingName` and `recorderType` may have, after trimming.
pub const MAX_NAME_CHARS: usize = 255;
