//! Form bodies (`application/x-www-form-urlencoded`): reading them into a
//! [`Value`] and writing a [`Node`] as one.
//!
//! Names nest the way the LMS's Web API binds them, in jQuery form
//! (`parts[0][partNumber]=1`) or dotted form (`parts[0].partNumber=1`),
//! freely mixed. A list of scalars may also repeat its name
//! (`partNumbers=2&partNumbers=3`, or jQuery's `partNumbers[]=2`). List
//! indices must run from 0 without gaps, as the Web API's binder stops at
//! the first missing index; here a gap is an error rather than a silent
//! truncation. All values are text, coerced later to the type each field
//! expects.
//!
//! Percent-decoding is done here rather than with `form_urlencoded::parse`,
//! because that replaces invalid UTF-8 with U+FFFD silently, and a name
//! would then be stored changed instead of refused.

use std::collections::{BTreeMap, HashMap};

use crate::tree::{Node, Value};

/// How many segments one name may have; the API's deepest name has four.
const MAX_SEGMENTS: usize = 8;

/// The largest list index accepted; part lists hold at most 10,000 items.
const MAX_INDEX: usize = 100_000;

/// One step of a field name.
#[derive(Debug, PartialEq)]
enum Segment {
    /// `name`, `[name]` or `.name`.
    Name(String),
    /// `[3]`.
    Index(usize),
    /// `[]` at the end: one more item of a list of scalars.
    Append,
}

/// The fields of a form as a tree, before the shape is checked.
#[derive(Debug)]
enum FormNode {
    Values(Vec<String>),
    Fields(Group),
    Items(BTreeMap<usize, FormNode>),
}

/// A group's members in the order the form first names them, indexed by
/// name: finding a member is one lookup, so a form of n fields parses in
/// O(n) rather than the O(n²) a scan per field took (a body of 100,000
/// distinct names held an async thread for seconds).
#[derive(Debug, Default)]
struct Group {
    members: Vec<(String, FormNode)>,
    index: HashMap<String, usize>,
}

impl Group {
    /// Member `name`, added as `new()` when the form has not named it yet.
    fn member(&mut self, name: &str, new: impl FnOnce() -> FormNode) -> &mut FormNode {
        let at = match self.index.get(name) {
            Some(&at) => at,
            None => {
                self.members.push((name.to_owned(), new()));
                self.index.insert(name.to_owned(), self.members.len() - 1);
                self.members.len() - 1
            }
        };
        &mut self.members[at].1
    }
}

/// Parses a whole form body.
///
/// # Errors
/// A message naming the field that is wrong and its byte offset.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let mut root = FormNode::Fields(Group::default());
    let mut at = 0;
    for pair in text.split('&') {
        let start = at;
        at += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(raw_key, start)?;
        let value = decode_component(raw_value, start + raw_key.len() + 1)?;
        let segments =
            parse_key(&key).map_err(|why| format!("The form field name {key:?} at byte {start} {why}."))?;
        insert(&mut root, &segments, value)
            .map_err(|why| format!("The form field {key:?} at byte {start} {why}."))?;
    }
    to_value(root, "")
}

/// Percent-decodes one name or value (`+` is a space), refusing bad escapes
/// and invalid UTF-8.
fn decode_component(raw: &str, at: usize) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let digit = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
                let (Some(high), Some(low)) = (digit(i + 1), digit(i + 2)) else {
                    return Err(format!(
                        "The form body has an invalid percent-escape at byte {}; write % as %25.",
                        at + i
                    ));
                };
                // Two hex digits: at most 0xFF.
                out.push(u8::try_from(high * 16 + low).unwrap_or(u8::MAX));
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|err| {
        format!(
            "The form body is not valid UTF-8 once percent-decoded, in the name or value at byte {at} (decoded byte {}).",
            err.utf8_error().valid_up_to()
        )
    })
}

/// Splits `parts[0][etag]` or `parts[0].etag` into segments.
fn parse_key(key: &str) -> Result<Vec<Segment>, String> {
    let first_end = key.find(['[', '.']).unwrap_or(key.len());
    let (first, mut rest) = key.split_at(first_end);
    if first.is_empty() {
        return Err("does not start with a name".to_owned());
    }
    let mut segments = vec![Segment::Name(first.to_owned())];
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or("has a '[' without its ']'")?;
            let inside = &after[..close];
            if inside.contains('[') {
                return Err("has a '[' inside brackets".to_owned());
            }
            segments.push(if inside.is_empty() {
                Segment::Append
            } else if inside.bytes().all(|b| b.is_ascii_digit()) {
                let index = inside.parse::<usize>().ok().filter(|&i| i <= MAX_INDEX).ok_or_else(|| {
                    format!("has the index {inside}, above the largest allowed ({MAX_INDEX})")
                })?;
                Segment::Index(index)
            } else {
                Segment::Name(inside.to_owned())
            });
            rest = &after[close + 1..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['[', '.']).unwrap_or(after.len());
            if end == 0 {
                return Err("has an empty name after a '.'".to_owned());
            }
            segments.push(Segment::Name(after[..end].to_owned()));
            rest = &after[end..];
        } else {
            return Err("has text after a ']'; use [name] or .name".to_owned());
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("nests more than {MAX_SEGMENTS} levels"));
        }
    }
    if let Some(append) = segments.iter().position(|s| *s == Segment::Append)
        && append != segments.len() - 1
    {
        return Err("has [] before its end; number the items of a list of objects: parts[0][etag]".to_owned());
    }
    Ok(segments)
}

fn new_node(next: Option<&Segment>) -> FormNode {
    match next {
        None | Some(Segment::Append) => FormNode::Values(Vec::new()),
        Some(Segment::Name(_)) => FormNode::Fields(Group::default()),
        Some(Segment::Index(_)) => FormNode::Items(BTreeMap::new()),
    }
}

const CONFLICT: &str = "uses a name that another field uses differently (as a value, a group or a list)";

fn insert(node: &mut FormNode, segments: &[Segment], value: String) -> Result<(), String> {
    match (segments.split_first(), node) {
        (None | Some((Segment::Append, _)), FormNode::Values(values)) => {
            values.push(value);
            Ok(())
        }
        (Some((Segment::Name(name), rest)), FormNode::Fields(group)) => {
            insert(group.member(name, || new_node(rest.first())), rest, value)
        }
        (Some((Segment::Index(index), rest)), FormNode::Items(items)) => {
            let child = items.entry(*index).or_insert_with(|| new_node(rest.first()));
            insert(child, rest, value)
        }
        _ => Err(CONFLICT.to_owned()),
    }
}

fn to_value(node: FormNode, name: &str) -> Result<Value, String> {
    match node {
        // A repeated scalar inside a group is expanded by the group below;
        // here (in a list item) it would be two values for one slot.
        FormNode::Values(mut values) => match values.len() {
            1 => Ok(Value::Text(values.remove(0))),
            n => Err(format!("The form gives {name} {n} times; give it once.")),
        },
        FormNode::Fields(group) => {
            let mut entries = Vec::with_capacity(group.members.len());
            for (field, child) in group.members {
                let path = if name.is_empty() { field.clone() } else { format!("{name}.{field}") };
                match child {
                    FormNode::Values(values) => {
                        entries.extend(values.into_iter().map(|v| (field.clone(), Value::Text(v))));
                    }
                    other => entries.push((field, to_value(other, &path)?)),
                }
            }
            Ok(Value::Object(entries))
        }
        FormNode::Items(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (expected, (index, child)) in items.into_iter().enumerate() {
                if index != expected {
                    return Err(format!(
                        "The form gives {name}[{index}] but not {name}[{expected}]; number list items from 0 without gaps."
                    ));
                }
                list.push(to_value(child, &format!("{name}[{index}]"))?);
            }
            Ok(Value::Array(list))
        }
    }
}

/// Writes `node` as a form in jQuery form: `parts[0][partNumber]=1`.
///
/// Nulls are left out, so an empty list cannot be written; the API's
/// requests never need one.
pub(crate) fn write(node: &Node) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    write_node(&mut out, "", node);
    out.finish()
}

fn write_node(out: &mut form_urlencoded::Serializer<'_, String>, name: &str, node: &Node) {
    let nested = |inner: &str| {
        if name.is_empty() { inner.to_owned() } else { format!("{name}[{inner}]") }
    };
    match node {
        Node::Null => {}
        Node::Text(text) => {
            out.append_pair(name, text);
        }
        Node::Struct(members) => {
            for (member, value) in members {
                write_node(out, &nested(member), value);
            }
        }
        Node::List(_, items) => {
            for (i, value) in items.iter().enumerate() {
                write_node(out, &nested(&i.to_string()), value);
            }
        }
        Node::Map(pairs) => {
            for (key, value) in pairs {
                out.append_pair(&nested(key), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::ItemName;

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn part(n: &str, etag: &str) -> Value {
        Value::Object(vec![("partNumber".into(), text(n)), ("etag".into(), text(etag))])
    }

    #[test]
    fn jquery_and_dotted_names_give_the_same_tree() {
        let jquery = parse(
            "parts%5B0%5D%5BpartNumber%5D=1&parts[0][etag]=e1&parts[1][partNumber]=2&parts[1][etag]=e+2",
        )
        .unwrap();
        let dotted =
            parse("parts[0].partNumber=1&parts[0].etag=e1&parts[1].partNumber=2&parts[1].etag=e%202")
                .unwrap();
        let expected =
            Value::Object(vec![("parts".into(), Value::Array(vec![part("1", "e1"), part("2", "e 2")]))]);
        assert_eq!(jquery, expected);
        assert_eq!(dotted, expected);
    }

    #[test]
    fn scalar_lists_repeat_append_or_index() {
        let repeated = parse("partNumbers=2&partNumbers=3").unwrap();
        assert_eq!(
            repeated,
            Value::Object(vec![("partNumbers".into(), text("2")), ("partNumbers".into(), text("3"))])
        );
        assert_eq!(parse("partNumbers[]=2&partNumbers[]=3").unwrap(), repeated);
        assert_eq!(
            parse("partNumbers[0]=2&partNumbers[1]=3").unwrap(),
            Value::Object(vec![("partNumbers".into(), Value::Array(vec![text("2"), text("3")]))])
        );
    }

    #[test]
    fn malformed_forms_are_refused_with_the_field_and_offset() {
        for (body, expected) in [
            ("a=%zz", "invalid percent-escape at byte 2"),
            ("a=%4", "invalid percent-escape"),
            ("a=%+1", "invalid percent-escape"),
            ("a=%FF", "not valid UTF-8"),
            ("parts[0=1", "without its ']'"),
            ("[0]=1", "does not start with a name"),
            ("parts..etag=1", "empty name after a '.'"),
            ("parts[0]x=1", "text after a ']'"),
            ("parts[][etag]=1", "has [] before its end"),
            ("parts=1&parts[0][etag]=e", "at byte 8 uses a name"),
            ("parts[0][etag]=e&parts[0]=1", "uses a name"),
            ("parts[1][etag]=e", "gives parts[1] but not parts[0]"),
            ("parts[0][etag]=e&parts[2][etag]=e", "gives parts[2] but not parts[1]"),
            ("parts[999999999999999999999][etag]=e", "above the largest allowed"),
            ("partNumbers[0]=1&partNumbers[0]=2", "gives partNumbers[0] 2 times"),
            ("a[b][c][d][e][f][g][h][i]=1", "more than 8 levels"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    /// The least of a few runs: the time it takes when nothing else is running.
    fn fastest_parse(body: &str) -> std::time::Duration {
        (0..3)
            .map(|_| {
                let started = std::time::Instant::now();
                parse(body).unwrap();
                started.elapsed()
            })
            .min()
            .unwrap()
    }

    #[test]
    fn parsing_grows_linearly_with_the_number_of_fields() {
        // Distinct names in one group: the worst case for a scan per field,
        // which takes ~100 times as long for 10 times the fields.
        let form = |n: usize| (0..n).map(|i| format!("field{i}=v{i}")).collect::<Vec<_>>().join("&");
        let (small, large) = (form(10_000), form(100_000));
        let parsed = parse(&large).unwrap();
        let Value::Object(members) = &parsed else { panic!("{parsed:?}") };
        assert_eq!(members.len(), 100_000);
        assert_eq!(members[99_999], ("field99999".to_owned(), text("v99999")));
        let (small_took, large_took) = (fastest_parse(&small), fastest_parse(&large));
        eprintln!("form of 10,000 fields: {small_took:?}; of 100,000: {large_took:?}");
        assert!(
            large_took < small_took * 30,
            "10 times the fields took {:.1} times as long ({small_took:?} → {large_took:?})",
            large_took.as_secs_f64() / small_took.as_secs_f64()
        );
        // The same inside a group and under list items.
        let nested = (0..100_000).map(|i| format!("a[f{i}]=1")).collect::<Vec<_>>().join("&");
        let nested_took = fastest_parse(&nested);
        assert!(nested_took < small_took * 60, "nested: {small_took:?} → {nested_took:?}");
    }

    #[test]
    fn empty_pairs_and_bare_names_are_tolerated() {
        assert_eq!(
            parse("&a=1&&b&").unwrap(),
            Value::Object(vec![("a".into(), text("1")), ("b".into(), text(""))])
        );
    }

    #[test]
    fn writes_jquery_names_and_skips_nulls() {
        let node = Node::Struct(vec![
            ("recordingId", Node::Text("r 1&".into())),
            ("missing", Node::Null),
            ("partNumbers", Node::List(ItemName::array("int"), vec![Node::Text("2".into())])),
        ]);
        let form = write(&node);
        assert_eq!(form, "recordingId=r+1%26&partNumbers%5B0%5D=2");
        assert_eq!(
            parse(&form).unwrap(),
            Value::Object(vec![
                ("recordingId".into(), text("r 1&")),
                ("partNumbers".into(), Value::Array(vec![text("2")]))
            ])
        );
    }
}
