//! Reading typed fields out of a [`Value`], collecting every problem.
//!
//! The [`Extractor`] never stops at the first problem: a field that cannot
//! be read (missing, null, the wrong type, text that is not a number) is
//! recorded in its [`ModelState`] under the field's key and replaced by a
//! placeholder ([`FromValue::placeholder`]), and reading carries on, so one
//! answer lists everything. List items that cannot be read are replaced
//! too, which keeps every later item at its index.
//!
//! The three formats differ in how much type their text carries, and the
//! extractor bridges that: JSON scalars must already be of the right type
//! (a string is not a number), while XML and form text is coerced to the
//! type the field expects. Member names match ignoring ASCII case in JSON
//! and forms, as the LMS's Web API binds them, and exactly in XML, as
//! DataContractSerializer does.

use std::collections::BTreeMap;

use crate::model_state::{FieldPath, ModelState};
use crate::tree::{ItemName, Value};
use crate::types::quote;
use crate::{ContentMd5, ContentType, MAX_PARTS, RecordingStatus, Timestamp};

/// Which parser a [`Value`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Json,
    Xml,
    Form,
}

/// Reads typed values, recording each problem under its field's key.
pub struct Extractor {
    origin: Origin,
    problems: ModelState,
}

/// The members of an object being read, and where the object is.
pub(crate) struct Fields<'v> {
    entries: &'v [(String, Value)],
    path: FieldPath,
}

/// A type that can be read from a [`Value`].
pub trait FromValue: Sized {
    /// Stands in for a value that could not be read, so that reading can
    /// go on; never seen by a caller, since decoding then fails.
    fn placeholder() -> Self;

    /// Reads `value`, found at `path`; `None` after recording a problem.
    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self>;

    /// Reads a member from the values given for its name: exactly one,
    /// not null, unless the type says otherwise (options, lists).
    fn from_member(x: &mut Extractor, found: &[&Value], path: &FieldPath) -> Option<Self> {
        match found {
            [] => x.problem(path, format!("{} is required.", path.label())),
            [Value::Null] => x.problem(path, format!("{} must not be null.", path.label())),
            [value] => return Self::from_value(x, value, path),
            many => x.repeated(path, many.len()),
        }
        None
    }
}

/// A type that can be an item of an XML list: DataContractSerializer names
/// each item element after the item's type.
pub trait XmlItem {
    /// The item element's name, e.g. `int` or `MediaRecorderController.NativeUploadPart`.
    const ITEM: ItemName;
}

impl<T: FromValue> FromValue for Option<T> {
    fn placeholder() -> Self {
        None
    }

    /// Null is `None`; so is an empty form value, which is how jQuery and
    /// HTML forms send a null.
    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            Value::Text(text) if x.origin == Origin::Form && text.is_empty() => Some(None),
            other => T::from_value(x, other, path).map(Some),
        }
    }

    /// Missing or null is `None`.
    fn from_member(x: &mut Extractor, found: &[&Value], path: &FieldPath) -> Option<Self> {
        match found {
            [] => Some(None),
            [value] => Self::from_value(x, value, path),
            _ => T::from_member(x, found, path).map(Some),
        }
    }
}

impl<T: FromValue + XmlItem> FromValue for Vec<T> {
    fn placeholder() -> Self {
        Vec::new()
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.list_of(&[value], path, T::ITEM)
    }

    /// A form may give a list as one value per item, all under its name.
    fn from_member(x: &mut Extractor, found: &[&Value], path: &FieldPath) -> Option<Self> {
        if found.is_empty() {
            x.problem(path, format!("{} is required.", path.label()));
            return None;
        }
        x.list_of(found, path, T::ITEM)
    }
}

impl Extractor {
    pub(crate) fn new(origin: Origin) -> Self {
        Self { origin, problems: ModelState::new() }
    }

    /// Every problem recorded so far.
    pub(crate) fn into_problems(self) -> ModelState {
        self.problems
    }

    pub(crate) fn problem(&mut self, path: &FieldPath, message: String) {
        self.problems.add(path, message);
    }

    /// Views `value` as an object.
    pub(crate) fn object<'v>(&mut self, value: &'v Value, path: &FieldPath) -> Option<Fields<'v>> {
        let fields = |entries| Fields { entries, path: path.clone() };
        match value {
            Value::Object(entries) => Some(fields(entries)),
            // An empty XML element, or one holding only whitespace.
            Value::Text(text) if self.origin == Origin::Xml && text.trim().is_empty() => Some(fields(&[])),
            other => {
                self.type_problem(path, "an object", other);
                None
            }
        }
    }

    /// Member `name`, read as `T`; the placeholder after a problem.
    pub(crate) fn field<T: FromValue>(&mut self, fields: &Fields<'_>, name: &str) -> T {
        let found = self.lookup(fields, name);
        let path = fields.path.field(name);
        T::from_member(self, &found, &path).unwrap_or_else(T::placeholder)
    }

    /// The values given for member `name`: none, one, or (a mistake except
    /// in a form list) several.
    fn lookup<'v>(&self, fields: &Fields<'v>, name: &str) -> Vec<&'v Value> {
        let exact = self.origin == Origin::Xml;
        fields
            .entries
            .iter()
            .filter(|(key, _)| if exact { key == name } else { key.eq_ignore_ascii_case(name) })
            .map(|(_, value)| value)
            .collect()
    }

    fn repeated(&mut self, path: &FieldPath, times: usize) {
        self.problem(path, format!("{} is given {times} times; give it once.", path.label()));
    }

    fn list_of<T: FromValue>(
        &mut self,
        found: &[&Value],
        path: &FieldPath,
        item: ItemName,
    ) -> Option<Vec<T>> {
        let read = |x: &mut Self, i: usize, value: &Value| {
            T::from_member(x, &[value], &path.index(i)).unwrap_or_else(T::placeholder)
        };
        let items = match (self.origin, found) {
            // A form repeats the name once per item: `partNumbers=2&partNumbers=3`.
            (Origin::Form, [_, _, ..]) => found.iter().enumerate().map(|(i, v)| read(self, i, v)).collect(),
            (_, [_, _, ..]) => {
                self.repeated(path, found.len());
                return None;
            }
            (_, [Value::Array(values)]) if self.origin != Origin::Xml => {
                values.iter().enumerate().map(|(i, v)| read(self, i, v)).collect()
            }
            (Origin::Form, [value @ Value::Text(_)]) => vec![read(self, 0, value)],
            (Origin::Xml, [Value::Object(children)]) => {
                let mut items = Vec::with_capacity(children.len());
                for (i, (name, value)) in children.iter().enumerate() {
                    if name == item.local {
                        items.push(read(self, i, value));
                    } else {
                        self.problem(
                            &path.index(i),
                            format!(
                                "{} must be a <{}> element; got <{name}>.",
                                path.index(i).label(),
                                item.local
                            ),
                        );
                        items.push(T::placeholder());
                    }
                }
                items
            }
            (Origin::Xml, [Value::Text(text)]) if text.trim().is_empty() => Vec::new(),
            (_, [Value::Null]) => {
                self.problem(path, format!("{} must not be null.", path.label()));
                return None;
            }
            (_, [other]) => {
                self.type_problem(path, "a list", other);
                return None;
            }
            (_, []) => Vec::new(),
        };
        Some(items)
    }

    fn type_problem(&mut self, path: &FieldPath, expected: &str, got: &Value) {
        let label = path.label();
        let message = match got {
            Value::Text(text) | Value::String(text) => {
                format!("{label} must be {expected}; got text {}.", quote(text))
            }
            Value::Number(n) => format!("{label} must be {expected}; got the number {n}."),
            other => format!("{label} must be {expected}; got {}.", other.describe()),
        };
        self.problem(path, message);
    }

    /// Reads text: a JSON string, or XML or form text.
    fn text<'v>(&mut self, value: &'v Value, path: &FieldPath) -> Option<&'v str> {
        match value {
            Value::String(text) | Value::Text(text) => Some(text),
            other => {
                let expected = if self.origin == Origin::Json { "text (in quotes)" } else { "text" };
                self.type_problem(path, expected, other);
                None
            }
        }
    }

    /// Reads a whole number: a JSON integer (or a float with no fraction),
    /// or XML or form text holding one.
    pub(crate) fn integer(&mut self, value: &Value, path: &FieldPath) -> Option<i128> {
        let label = path.label();
        match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    return Some(i.into());
                }
                if let Some(u) = n.as_u64() {
                    return Some(u.into());
                }
                match n.as_f64() {
                    // Exactly integral and well inside i128: the cast is exact.
                    Some(f) if f.fract() == 0.0 && f.abs() < 1e30 => Some(f as i128),
                    _ => {
                        self.problem(path, format!("{label} must be a whole number; got {n}."));
                        None
                    }
                }
            }
            Value::Text(text) => {
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    self.problem(path, format!("{label} must be a whole number; it is empty."));
                    return None;
                }
                let parsed = trimmed.parse::<i128>().ok();
                if parsed.is_none() {
                    self.problem(path, format!("{label} must be a whole number; got {}.", quote(text)));
                }
                parsed
            }
            Value::String(text) => {
                self.problem(
                    path,
                    format!("{label} must be a number (without quotes); got text {}.", quote(text)),
                );
                None
            }
            other => {
                self.type_problem(path, "a whole number", other);
                None
            }
        }
    }

    /// Reads a whole number from 0 to `max` (the largest `T`).
    fn unsigned<T: TryFrom<i128>>(&mut self, value: &Value, path: &FieldPath, max: i128) -> Option<T> {
        let n = self.integer(value, path)?;
        let label = path.label();
        let message = if n < 0 {
            format!("{label} must not be negative; got {n}.")
        } else if n > max {
            format!("{label} must be at most {max}; got {n}.")
        } else {
            return T::try_from(n).ok();
        };
        self.problem(path, message);
        None
    }

    /// Reads a string and parses it, with `message(label, text)` for text that does not parse.
    fn parsed<T>(
        &mut self,
        value: &Value,
        path: &FieldPath,
        parse: impl FnOnce(&str) -> Option<T>,
        message: impl FnOnce(&str, &str) -> String,
    ) -> Option<T> {
        let text = self.text(value, path)?;
        let parsed = parse(text);
        if parsed.is_none() {
            self.problem(path, message(path.label(), text));
        }
        parsed
    }
}

/// "partNumber must be between 1 and 10000; got 0."
pub(crate) fn range_message(label: &str, min: i128, max: i128, got: i128) -> String {
    format!("{label} must be between {min} and {max}; got {got}.")
}

impl FromValue for String {
    fn placeholder() -> Self {
        String::new()
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.text(value, path).map(str::to_owned)
    }
}

impl FromValue for bool {
    fn placeholder() -> Self {
        false
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        let label = path.label();
        match value {
            Value::Bool(b) => Some(*b),
            Value::Text(text) => {
                let t = text.trim();
                // xs:boolean also allows 1 and 0; the LMS's form binding ignores case.
                let parsed = if t.eq_ignore_ascii_case("true") || t == "1" {
                    Some(true)
                } else if t.eq_ignore_ascii_case("false") || t == "0" {
                    Some(false)
                } else {
                    None
                };
                if parsed.is_none() {
                    x.problem(path, format!("{label} must be true or false; got {}.", quote(text)));
                }
                parsed
            }
            Value::String(text) => {
                x.problem(
                    path,
                    format!("{label} must be true or false (without quotes); got text {}.", quote(text)),
                );
                None
            }
            other => {
                x.type_problem(path, "true or false", other);
                None
            }
        }
    }
}

impl FromValue for u32 {
    fn placeholder() -> Self {
        0
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.unsigned(value, path, u32::MAX.into())
    }
}

impl FromValue for u64 {
    fn placeholder() -> Self {
        0
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.unsigned(value, path, u64::MAX.into())
    }
}

impl FromValue for f64 {
    fn placeholder() -> Self {
        0.0
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        match value {
            Value::Number(n) => {
                let f = n.as_f64();
                if f.is_none() {
                    x.problem(path, format!("{} must be a number; got {n}.", path.label()));
                }
                f
            }
            Value::Text(_) => x.parsed(
                value,
                path,
                |t| t.trim().parse::<f64>().ok(),
                |label, t| format!("{label} must be a number; got {}.", quote(t)),
            ),
            other => {
                x.type_problem(path, "a number", other);
                None
            }
        }
    }
}

/// A part number, 1 to [`MAX_PARTS`]: read as this to check the range as it
/// is read, so that `-1` gets the same message as `0` instead of one about
/// the range of `u32`.
pub(crate) struct PartNumber(u32);

impl From<PartNumber> for u32 {
    fn from(n: PartNumber) -> u32 {
        n.0
    }
}

/// `Vec<PartNumber>` to the `Vec<u32>` a struct holds.
pub(crate) fn part_numbers(numbers: Vec<PartNumber>) -> Vec<u32> {
    numbers.into_iter().map(u32::from).collect()
}

impl XmlItem for PartNumber {
    const ITEM: ItemName = ItemName::array("int");
}

impl XmlItem for u32 {
    const ITEM: ItemName = ItemName::array("int");
}

impl XmlItem for ContentMd5 {
    const ITEM: ItemName = ItemName::array("string");
}

impl FromValue for PartNumber {
    fn placeholder() -> Self {
        Self(0)
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        let n = x.integer(value, path)?;
        let valid = u32::try_from(n).ok().filter(|n| (1..=MAX_PARTS).contains(n));
        if valid.is_none() {
            x.problem(path, range_message(path.label(), 1, MAX_PARTS.into(), n));
        }
        valid.map(Self)
    }
}

impl FromValue for ContentType {
    fn placeholder() -> Self {
        ContentType::Wav
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.parsed(value, path, |t| t.parse().ok(), ContentType::unknown_message)
    }
}

impl FromValue for RecordingStatus {
    fn placeholder() -> Self {
        RecordingStatus::Failed
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.parsed(
            value,
            path,
            |t| t.parse().ok(),
            |label, t| format!("{label} must be processing, ready or failed; got {}.", quote(t)),
        )
    }
}

impl FromValue for ContentMd5 {
    fn placeholder() -> Self {
        ContentMd5::from_digest([0; 16])
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.parsed(value, path, |t| t.parse().ok(), ContentMd5::invalid_message)
    }
}

impl FromValue for Timestamp {
    fn placeholder() -> Self {
        Timestamp::from_unix_timestamp(0).unwrap_or_else(Timestamp::now)
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        x.parsed(
            value,
            path,
            |t| t.parse().ok(),
            |label, t| {
                format!(
                    "{label} must be an RFC 3339 timestamp like \"2025-03-01T12:00:00Z\"; got {}.",
                    quote(t)
                )
            },
        )
    }
}

impl FromValue for BTreeMap<String, String> {
    fn placeholder() -> Self {
        BTreeMap::new()
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        if x.origin != Origin::Xml {
            let fields = x.object(value, path)?;
            let mut map = BTreeMap::new();
            for (key, value) in fields.entries {
                let text = String::from_value(x, value, &path.field(key))?;
                map.insert(key.clone(), text);
            }
            return Some(map);
        }
        let pairs: Vec<KeyValue> = Vec::from_value(x, value, path)?;
        Some(pairs.into_iter().map(|kv| (kv.key, kv.value)).collect())
    }
}

/// One `KeyValueOfstringstring` of an XML map.
struct KeyValue {
    key: String,
    value: String,
}

impl XmlItem for KeyValue {
    const ITEM: ItemName = ItemName::array("KeyValueOfstringstring");
}

impl FromValue for KeyValue {
    fn placeholder() -> Self {
        Self { key: String::new(), value: String::new() }
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        let fields = x.object(value, path)?;
        Some(Self { key: x.field(&fields, "Key"), value: x.field(&fields, "Value") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn read<T: FromValue>(origin: Origin, value: &Value) -> (Option<T>, ModelState) {
        let mut x = Extractor::new(origin);
        let got = T::from_value(&mut x, value, &FieldPath::request().field("n"));
        (got, x.into_problems())
    }

    #[test]
    fn json_scalars_must_have_the_right_type() {
        let (got, problems) = read::<u32>(Origin::Json, &Value::String("12".into()));
        assert_eq!(got, None);
        assert_eq!(
            problems.get("request.n").unwrap(),
            ["n must be a number (without quotes); got text \"12\"."]
        );
        let (got, problems) = read::<bool>(Origin::Json, &Value::String("true".into()));
        assert_eq!(got, None);
        assert!(problems.get("request.n").unwrap()[0].contains("without quotes"));
        let (got, problems) = read::<String>(Origin::Json, &Value::Number(5.into()));
        assert_eq!(got, None);
        assert_eq!(problems.get("request.n").unwrap(), ["n must be text (in quotes); got the number 5."]);
    }

    #[test]
    fn text_is_coerced_to_the_expected_type() {
        assert_eq!(read::<u32>(Origin::Xml, &text(" 12 ")).0, Some(12));
        assert_eq!(read::<bool>(Origin::Form, &text("true")).0, Some(true));
        assert_eq!(read::<bool>(Origin::Xml, &text("0")).0, Some(false));
        assert_eq!(read::<f64>(Origin::Xml, &text("1.5")).0, Some(1.5));
        let (got, problems) = read::<u32>(Origin::Form, &text("twelve"));
        assert_eq!(got, None);
        assert_eq!(problems.get("request.n").unwrap(), ["n must be a whole number; got \"twelve\"."]);
        let (_, problems) = read::<u32>(Origin::Form, &text("-1"));
        assert_eq!(problems.get("request.n").unwrap(), ["n must not be negative; got -1."]);
        let (_, problems) = read::<u32>(Origin::Form, &text("4294967296"));
        assert_eq!(problems.get("request.n").unwrap(), ["n must be at most 4294967295; got 4294967296."]);
    }

    #[test]
    fn json_floats_must_be_whole() {
        let one = Value::Number(serde_json::Number::from_f64(1.0).unwrap());
        assert_eq!(read::<u32>(Origin::Json, &one).0, Some(1));
        let half = Value::Number(serde_json::Number::from_f64(1.5).unwrap());
        let (got, problems) = read::<u32>(Origin::Json, &half);
        assert_eq!(got, None);
        assert_eq!(problems.get("request.n").unwrap(), ["n must be a whole number; got 1.5."]);
    }

    #[test]
    fn part_numbers_are_checked_for_range_as_they_are_read() {
        let (got, problems) = read::<PartNumber>(Origin::Json, &Value::Number((-3).into()));
        assert!(got.is_none());
        assert_eq!(problems.get("request.n").unwrap(), ["n must be between 1 and 10000; got -3."]);
    }
}
