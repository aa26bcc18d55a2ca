//! [`ModelState`]: every problem found in a request, keyed by the field it
//! concerns, the way ASP.NET Web API reports them.
//!
//! Keys are paths from the request root, e.g. `request.recordingName`,
//! `request.parts[1].partNumber`; `request` alone is for problems with the
//! body as a whole. Keys keep the order in which they were first added, so
//! a report lists problems in the order the fields were read.

use std::collections::HashMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most keys one [`ModelState`] holds; further problems are summarised
/// under `request`.
///
/// Like ASP.NET Core's `MaxModelValidationErrors`, this keeps an error body
/// readable (and small) when a request repeats one mistake thousands of
/// times; fixing the listed problems and sending again reveals the rest.
pub const MAX_MODEL_STATE_KEYS: usize = 200;

const TRUNCATED: &str =
    "There are more problems than the ones listed; fix these and send the request again to see the rest.";

/// Where in a request a problem is: `request`, `request.parts[1].etag`, ...
///
/// Build one with [`FieldPath::request`] and [`field`](FieldPath::field) /
/// [`index`](FieldPath::index), so a server's own checks use exactly the
/// keys this crate's validation uses:
///
/// ```
/// use opptak_api::FieldPath;
/// let key = FieldPath::request().field("parts").index(2).field("etag");
/// assert_eq!(key.as_str(), "request.parts[2].etag");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The root of a request body; the key for problems with the body as a whole.
    pub fn request() -> Self {
        Self::root("request")
    }

    /// A root other than `request` (used when decoding a response).
    pub(crate) fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// The path of member `name` of this one.
    #[must_use]
    pub fn field(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    /// The path of list item `index` of this one.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path as a model-state key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How a message names the field: its own name with any indices after
    /// it (`partNumber` for `request.parts[1].partNumber`, `partNumbers[0]`),
    /// since the key beside the message already says where it is.
    pub(crate) fn label(&self) -> &str {
        self.0.rfind('.').map_or(self.0.as_str(), |at| &self.0[at + 1..])
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> Self {
        path.0
    }
}

impl From<&FieldPath> for String {
    fn from(path: &FieldPath) -> Self {
        path.0.clone()
    }
}

/// Problems found in a request, each under the key of the field it concerns.
///
/// Serialises as a JSON object `{"request.parts[1].partNumber": ["..."]}`, the
/// `modelState` of the spec's 400 body. A server adds its own findings (an
/// `uploadId` that is not the one `start` issued, a part missing from
/// storage) with [`add`](Self::add) before answering, so one answer lists
/// everything.
#[derive(Clone, Default)]
pub struct ModelState {
    entries: Vec<(String, Vec<String>)>,
    // Key -> position in `entries`; a request with thousands of bad parts
    // must not make every insertion a linear scan.
    index: HashMap<String, usize>,
    truncated: bool,
}

impl ModelState {
    /// An empty model state: no problems.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` under `key`.
    ///
    /// A key that already has messages gets one more. Past
    /// [`MAX_MODEL_STATE_KEYS`] keys, new keys are dropped and a note under
    /// `request` says that there is more.
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        if let Some(&at) = self.index.get(&key) {
            self.entries[at].1.push(message.into());
            return;
        }
        if self.entries.len() >= MAX_MODEL_STATE_KEYS && key != "request" {
            if !self.truncated {
                self.truncated = true;
                self.add("request", TRUNCATED);
            }
            return;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, vec![message.into()]));
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many keys have problems.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The messages recorded under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.index.get(key).map(|&at| self.entries[at].1.as_slice())
    }

    /// Whether `key` has a problem.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The keys, in the order they were first added.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(key, _)| key.as_str())
    }

    /// Every key with its messages, in the order the keys were first added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(key, messages)| (key.as_str(), messages.as_slice()))
    }

    /// Adds every problem of `other`.
    pub fn extend(&mut self, other: ModelState) {
        for (key, messages) in other.entries {
            for message in messages {
                self.add(key.clone(), message);
            }
        }
    }

    /// `Ok(value)` when there is no problem, otherwise
    /// [`Error::Invalid`](crate::Error::Invalid) with these problems.
    pub fn into_result<T>(self, value: T) -> crate::Result<T> {
        if self.is_empty() { Ok(value) } else { Err(crate::Error::Invalid(self)) }
    }

    /// Adds the rule problems of `rules` that do not judge a placeholder.
    ///
    /// When a field could not be read (missing, wrong type), decoding puts a
    /// placeholder in its place and carries on so that every other field is
    /// still checked. A rule problem about that field or about something
    /// inside it would judge the placeholder, so it is left out.
    ///
    /// A rule about a list around an unreadable item still stands: the
    /// placeholder keeps every item at its index, so a list of 10,001
    /// parts is too long whatever its items hold. The one rule that would
    /// judge an item's placeholder, a gap in part numbers, is not checked
    /// when a part number is out of range, which a placeholder (0) is.
    pub(crate) fn extend_unless_judging_placeholders(&mut self, rules: ModelState) {
        let unreadable: Vec<String> = self.entries.iter().map(|(k, _)| k.clone()).collect();
        for (key, messages) in rules.entries {
            // A note under the root (too many problems) judges no field.
            let judges_placeholder = key != "request" && unreadable.iter().any(|bad| is_within(&key, bad));
            if !judges_placeholder {
                for message in messages {
                    self.add(key.clone(), message);
                }
            }
        }
    }
}

/// Whether `path` is `outer` or a path inside it.
fn is_within(path: &str, outer: &str) -> bool {
    path.strip_prefix(outer).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

impl PartialEq for ModelState {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for ModelState {}

impl fmt::Debug for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl fmt::Display for ModelState {
    /// One line per problem: `request.parts[1].partNumber: Part number 1 appears more than once.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (key, messages) in self.iter() {
            for message in messages {
                if !first {
                    f.write_str("\n")?;
                }
                first = false;
                write!(f, "{key}: {message}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for ModelState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, messages) in &self.entries {
            map.serialize_entry(key, messages)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ModelState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModelStateVisitor;

        impl<'de> Visitor<'de> for ModelStateVisitor {
            type Value = ModelState;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of field keys to lists of messages")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelState, A::Error> {
                let mut state = ModelState::new();
                while let Some((key, messages)) = map.next_entry::<String, Vec<String>>()? {
                    for message in messages {
                        state.add(key.clone(), message);
                    }
                }
                Ok(state)
            }
        }

        deserializer.deserialize_map(ModelStateVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_build_web_api_keys_and_labels() {
        let root = FieldPath::request();
        assert_eq!(root.label(), "request");
        let etag = root.field("parts").index(1).field("etag");
        assert_eq!(etag.as_str(), "request.parts[1].etag");
        assert_eq!(etag.label(), "etag");
        assert_eq!(root.field("partNumbers").index(0).label(), "partNumbers[0]");
    }

    #[test]
    fn keys_keep_insertion_order_and_gather_messages() {
        let mut state = ModelState::new();
        state.add("request.b", "one");
        state.add("request.a", "two");
        state.add("request.b", "three");
        assert_eq!(state.keys().collect::<Vec<_>>(), ["request.b", "request.a"]);
        assert_eq!(state.get("request.b"), Some(&["one".to_owned(), "three".to_owned()][..]));
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, r#"{"request.b":["one","three"],"request.a":["two"]}"#);
        let back: ModelState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn too_many_keys_are_summarised_under_request() {
        let mut state = ModelState::new();
        for i in 0..MAX_MODEL_STATE_KEYS + 50 {
            state.add(format!("request.parts[{i}].etag"), "etag must not be empty.");
        }
        assert_eq!(state.len(), MAX_MODEL_STATE_KEYS + 1);
        assert_eq!(state.get("request").map(<[String]>::len), Some(1));
        assert!(state.contains_key("request.parts[0].etag"));
        assert!(!state.contains_key(&format!("request.parts[{MAX_MODEL_STATE_KEYS}].etag")));
    }

    #[test]
    fn rule_problems_about_placeholders_are_left_out() {
        let mut unreadable = ModelState::new();
        unreadable.add("request.parts[1].partNumber", "partNumber must be a whole number; got \"x\".");
        unreadable.add("request.uploadId", "uploadId is required.");
        let mut rules = ModelState::new();
        // About the list around the unreadable item, not the item: it stands.
        rules.add("request.parts", "parts must list 1-10000 parts; it lists 10001.");
        rules.add("request.parts[1].partNumber", "partNumber must be between 1 and 10000; got 0.");
        rules.add("request.uploadId", "uploadId must not be empty.");
        rules.add("request.parts[2].etag", "etag must not be empty.");
        rules.add("request.uploadIdentity", "a different field that merely shares a prefix");
        unreadable.extend_unless_judging_placeholders(rules);
        assert_eq!(
            unreadable.keys().collect::<Vec<_>>(),
            [
                "request.parts[1].partNumber",
                "request.uploadId",
                "request.parts",
                "request.parts[2].etag",
                "request.uploadIdentity"
            ]
        );
        assert_eq!(unreadable.get("request.uploadId").map(<[String]>::len), Some(1));
    }
}
