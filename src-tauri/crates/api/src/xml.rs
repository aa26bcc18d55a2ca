//! XML bodies in the DataContract form: reading them safely into a
//! [`Value`], writing a [`Node`] as DataContractSerializer would, and the
//! XML error body.
//!
//! Reading is a small pull parser over quick-xml's namespace-aware reader
//! with these rules, checked as events arrive so a hostile document is
//! refused at its first bad token:
//! - a `<!DOCTYPE>` is refused outright, so no DTD, entity declaration or
//!   external entity is ever seen, let alone expanded (billion laughs and
//!   XXE stop at the DOCTYPE, in constant time);
//! - an entity reference other than the five predefined ones and
//!   character references is refused (quick-xml never expands them);
//! - the document must be UTF-8 (it arrives as `&str`), so an `encoding`
//!   declaration naming anything else is refused;
//! - nesting deeper than [`MAX_DEPTH`] is refused; the API's deepest body
//!   is five levels.
//!
//! Member elements may come in any order and are matched by local name;
//! list items must be named after their type.

use std::fmt::Write as _;

use quick_xml::NsReader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::error::{ErrorBody, ErrorCode};
use crate::model_state::ModelState;
use crate::tree::{Node, Value};

/// The namespace of every DataContract element of the API.
pub const CONTRACT_NAMESPACE: &str =
    "http://schemas.datacontract.org/2004/07/Itsolutions.Itslearning.Web.RestApi.Personal";

/// The namespace of primitive list items (`int`, `string`) and of
/// `KeyValueOfstringstring` map items.
pub const ARRAYS_NAMESPACE: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";

/// The XML Schema instance namespace, for `i:nil="true"`.
pub const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// How deep elements may nest.
pub(crate) const MAX_DEPTH: usize = 16;

/// One parsed element.
#[derive(Debug)]
pub(crate) struct Element {
    /// The local name, without prefix.
    name: String,
    namespace: Option<String>,
    /// Attributes other than namespace declarations and `i:nil`, by local name.
    attributes: Vec<(String, String)>,
    nil: bool,
    text: String,
    children: Vec<Element>,
    /// Byte offset of the start tag, for messages.
    offset: usize,
}

impl Element {
    /// The element as an untyped value: nil is null, an element with
    /// children is an object (or list) of them, any other is its text.
    fn into_value(self) -> Value {
        if self.nil {
            Value::Null
        } else if self.children.is_empty() {
            Value::Text(self.text)
        } else {
            Value::Object(
                self.children.into_iter().map(|child| (child.name.clone(), child.into_value())).collect(),
            )
        }
    }

    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Parses a DataContract body whose root must be `root` in
/// [`CONTRACT_NAMESPACE`].
///
/// # Errors
/// A message saying what is wrong and where (line and column).
pub(crate) fn parse_contract(text: &str, root: &str) -> Result<Value, String> {
    let element = parse(text)?;
    if element.name != root || element.namespace.as_deref() != Some(CONTRACT_NAMESPACE) {
        let namespace = element
            .namespace
            .as_deref()
            .map_or_else(|| "no namespace".to_owned(), |ns| format!("namespace \"{ns}\""));
        return Err(format!(
            "The XML root element must be <{root}> in namespace \"{CONTRACT_NAMESPACE}\"; got <{}> in {namespace}.",
            element.name
        ));
    }
    Ok(element.into_value())
}

/// Parses a whole document into its root element, refusing DTDs and entities.
pub(crate) fn parse(text: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let at = offset(reader.buffer_position());
        let (namespace, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (owned_namespace(ns, text, at)?, event),
            Err(err) => {
                return Err(format!(
                    "The body is not well-formed XML: {err} ({}).",
                    position(text, offset(reader.error_position()))
                ));
            }
        };
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(format!("The XML body has more than one root element ({}).", position(text, at)));
            }
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(format!(
                        "The XML body nests elements more than {MAX_DEPTH} deep ({}).",
                        position(text, at)
                    ));
                }
                open.push(element(&reader, &start, namespace, text, at)?);
            }
            Event::Empty(start) => {
                let el = element(&reader, &start, namespace, text, at)?;
                attach(el, &mut open, &mut root);
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches.
                let Some(el) = open.pop() else {
                    return Err(format!("Unexpected end tag ({}).", position(text, at)));
                };
                if !el.children.is_empty() && !el.text.trim().is_empty() {
                    return Err(format!(
                        "Element <{}> mixes text with child elements ({}).",
                        el.name,
                        position(text, el.offset)
                    ));
                }
                attach(el, &mut open, &mut root);
            }
            Event::Text(t) => {
                let content = t.xml10_content().map_err(|e| malformed(&e, text, at))?;
                push_text(&mut open, &content, text, at)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content().map_err(|e| malformed(&e, text, at))?;
                push_text(&mut open, &content, text, at)?;
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|e| malformed(&e, text, at))?;
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match resolve_predefined_entity(&name) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(format!(
                                "The XML body refers to the entity &{name}; ({}); only &amp; &lt; &gt; &quot; &apos; and character references are allowed.",
                                position(text, at)
                            ));
                        }
                    },
                    Err(err) => return Err(malformed(&err, text, at)),
                };
                push_text(&mut open, &resolved, text, at)?;
            }
            Event::DocType(_) => {
                return Err(format!(
                    "The XML body has a DOCTYPE ({}); DTDs and entity declarations are refused, never expanded. Send the document without it.",
                    position(text, at)
                ));
            }
            Event::Decl(decl) => {
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| malformed(&e, text, at))?;
                    if !encoding.eq_ignore_ascii_case(b"utf-8") && !encoding.eq_ignore_ascii_case(b"utf8") {
                        return Err(format!(
                            "The XML declaration names encoding \"{}\"; send UTF-8 ({}).",
                            String::from_utf8_lossy(&encoding),
                            position(text, at)
                        ));
                    }
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(format!(
            "The XML body ends before <{}> is closed ({}).",
            unclosed.name,
            position(text, unclosed.offset)
        ));
    }
    root.ok_or_else(|| "The XML body has no root element.".to_owned())
}

fn offset(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

fn malformed(err: &dyn std::fmt::Display, text: &str, at: usize) -> String {
    format!("The body is not well-formed XML: {err} ({}).", position(text, at))
}

/// "line 3, column 5" for a byte offset (columns count characters, from 1).
pub(crate) fn position(text: &str, offset: usize) -> String {
    let mut cut = offset.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn owned_namespace(ns: ResolveResult<'_>, text: &str, at: usize) -> Result<Option<String>, String> {
    match ns {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(format!(
            "The XML body uses the undeclared namespace prefix \"{}\" ({}).",
            String::from_utf8_lossy(&prefix),
            position(text, at)
        )),
    }
}

fn element(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    namespace: Option<String>,
    text: &str,
    at: usize,
) -> Result<Element, String> {
    let mut el = Element {
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        namespace,
        attributes: Vec::new(),
        nil: false,
        text: String::new(),
        children: Vec::new(),
        offset: at,
    };
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| malformed(&e, text, at))?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let value =
            attribute.decode_and_unescape_value(reader.decoder()).map_err(|e| malformed(&e, text, at))?;
        let (ns, local) = reader.resolve_attribute(attribute.key);
        let local = String::from_utf8_lossy(local.as_ref()).into_owned();
        match ns {
            ResolveResult::Bound(ns) if ns.as_ref() == XSI_NAMESPACE.as_bytes() && local == "nil" => {
                el.nil = matches!(value.trim(), "true" | "1");
            }
            ResolveResult::Unknown(prefix) => {
                return Err(format!(
                    "The XML body uses the undeclared namespace prefix \"{}\" ({}).",
                    String::from_utf8_lossy(&prefix),
                    position(text, at)
                ));
            }
            _ => el.attributes.push((local, value.into_owned())),
        }
    }
    Ok(el)
}

fn attach(el: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn push_text(open: &mut [Element], content: &str, text: &str, at: usize) -> Result<(), String> {
    match open.last_mut() {
        Some(el) => el.text.push_str(content),
        None if content.trim().is_empty() => {}
        None => {
            return Err(format!("The XML body has text outside its root element ({}).", position(text, at)));
        }
    }
    Ok(())
}

/// Writes `node` as a DataContract document whose root element is `root`.
pub(crate) fn write_contract(root: &str, node: &Node) -> String {
    let mut out = String::new();
    let namespaces = format!(" xmlns:i=\"{XSI_NAMESPACE}\" xmlns=\"{CONTRACT_NAMESPACE}\"");
    write_node(&mut out, root, &namespaces, node);
    out
}

fn write_node(out: &mut String, name: &str, attributes: &str, node: &Node) {
    // Writing to a String cannot fail, so `write!` results are ignored below.
    match node {
        Node::Null => {
            let _ = write!(out, "<{name}{attributes} i:nil=\"true\"/>");
            return;
        }
        Node::Text(text) => {
            let _ = write!(out, "<{name}{attributes}>{}</{name}>", escape(text.as_str()));
            return;
        }
        _ => {}
    }
    let _ = write!(out, "<{name}{attributes}>");
    match node {
        Node::Struct(members) => {
            // DataContractSerializer writes members in ordinal order of their names.
            let mut members: Vec<&(&str, Node)> = members.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            for (member, value) in members {
                write_node(out, member, "", value);
            }
        }
        Node::List(item, items) => {
            let attributes = item.namespace.map(|ns| format!(" xmlns=\"{ns}\"")).unwrap_or_default();
            for value in items {
                write_node(out, item.local, &attributes, value);
            }
        }
        Node::Map(pairs) => {
            for (key, value) in pairs {
                let _ = write!(
                    out,
                    "<KeyValueOfstringstring xmlns=\"{}\"><Key>{}</Key><Value>{}</Value></KeyValueOfstringstring>",
                    crate::ARRAYS_NAMESPACE,
                    escape(key.as_str()),
                    escape(value.as_str())
                );
            }
        }
        Node::Null | Node::Text(_) => {}
    }
    let _ = write!(out, "</{name}>");
}

/// `<Error><Code>…</Code><Message>…</Message><ModelState><Field name="…"><Message>…</Message></Field></ModelState></Error>`
pub(crate) fn write_error(body: &ErrorBody) -> String {
    let mut out = format!(
        "<Error><Code>{}</Code><Message>{}</Message>",
        body.code.as_str(),
        escape(body.message.as_str())
    );
    if !body.model_state.is_empty() {
        out.push_str("<ModelState>");
        for (key, messages) in body.model_state.iter() {
            let _ = write!(out, "<Field name=\"{}\">", escape(key));
            for message in messages {
                let _ = write!(out, "<Message>{}</Message>", escape(message.as_str()));
            }
            out.push_str("</Field>");
        }
        out.push_str("</ModelState>");
    }
    out.push_str("</Error>");
    out
}

/// Reads an error body written by [`write_error`].
pub(crate) fn read_error(text: &str) -> Result<ErrorBody, String> {
    let root = parse(text)?;
    if root.name != "Error" {
        return Err(format!("expected an <Error> element; got <{}>", root.name));
    }
    let message =
        root.child("Message").map(|m| m.text.clone()).ok_or("the <Error> element has no <Message>")?;
    let code = root.child("Code").map_or(ErrorCode::Unknown, |code| ErrorCode::from_wire(code.text.trim()));
    let mut model_state = ModelState::new();
    for field in root.child("ModelState").map_or(&[][..], |m| &m.children) {
        let key = field
            .attributes
            .iter()
            .find(|(name, _)| name == "name")
            .map(|(_, value)| value.clone())
            .ok_or("a <Field> has no name attribute")?;
        for message in field.children.iter().filter(|c| c.name == "Message") {
            model_state.add(key.clone(), message.text.clone());
        }
    }
    Ok(ErrorBody { code, message, model_state })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::tree::ItemName;

    const ROOT: &str = "MediaRecorderController.NativeUploadAbortRequest";

    fn doc(body: &str) -> String {
        format!("<{ROOT} xmlns:i=\"{XSI_NAMESPACE}\" xmlns=\"{CONTRACT_NAMESPACE}\">{body}</{ROOT}>")
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    #[test]
    fn reads_members_nils_and_items() {
        let value = parse_contract(
            &doc(&format!(
                "<b i:nil=\"true\"/><a>x &amp; y&#33;</a><l><int xmlns=\"{ARRAYS_NAMESPACE}\">2</int><int xmlns=\"{ARRAYS_NAMESPACE}\">3</int></l><e/>"
            )),
            ROOT,
        )
        .unwrap();
        assert_eq!(
            value,
            Value::Object(vec![
                ("b".into(), Value::Null),
                ("a".into(), text("x & y!")),
                ("l".into(), Value::Object(vec![("int".into(), text("2")), ("int".into(), text("3"))])),
                ("e".into(), text("")),
            ])
        );
    }

    #[test]
    fn the_root_must_be_the_endpoints_type_in_the_contract_namespace() {
        let wrong_name = doc("").replace(ROOT, "MediaRecorderController.NativeUploadStartRequest");
        let err = parse_contract(&wrong_name, ROOT).unwrap_err();
        assert!(err.contains(&format!("must be <{ROOT}>")), "{err}");
        assert!(err.contains("got <MediaRecorderController.NativeUploadStartRequest>"), "{err}");

        let no_namespace = format!("<{ROOT}></{ROOT}>");
        let err = parse_contract(&no_namespace, ROOT).unwrap_err();
        assert!(err.contains("in no namespace"), "{err}");
    }

    #[test]
    fn doctype_is_refused() {
        let body = format!("<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ELEMENT x ANY>]>\n{}", doc(""));
        let err = parse_contract(&body, ROOT).unwrap_err();
        assert!(err.contains("DOCTYPE (line 2, column 1)"), "{err}");
    }

    #[test]
    fn internal_entity_is_refused_not_expanded() {
        let body =
            format!("<!DOCTYPE r [<!ENTITY name \"SECRET\">]>{}", doc("<recordingId>&name;</recordingId>"));
        let err = parse_contract(&body, ROOT).unwrap_err();
        assert!(err.contains("DOCTYPE"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn external_entity_is_refused_not_fetched() {
        let body = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}",
            doc("<recordingId>&xxe;</recordingId>")
        );
        let err = parse_contract(&body, ROOT).unwrap_err();
        assert!(err.contains("DOCTYPE"), "{err}");
        assert!(!err.contains("root:"), "{err}");
    }

    #[test]
    fn undeclared_entity_without_a_doctype_is_refused() {
        let err = parse_contract(&doc("<recordingId>&xxe;</recordingId>"), ROOT).unwrap_err();
        assert!(err.contains("entity &xxe;"), "{err}");
        let err = parse_contract(&doc("<recordingId a=\"&xxe;\">x</recordingId>"), ROOT).unwrap_err();
        assert!(err.contains("not well-formed"), "{err}");
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        for i in 1..=9 {
            let prev = if i == 1 { "lol".to_owned() } else { format!("lol{}", i - 1) };
            let refs = format!("&{prev};").repeat(10);
            let _ = write!(dtd, "<!ENTITY lol{i} \"{refs}\">");
        }
        dtd.push_str("]>");
        let body = format!("{dtd}{}", doc("<recordingId>&lol9;</recordingId>"));
        let started = Instant::now();
        let err = parse_contract(&body, ROOT).unwrap_err();
        assert!(err.contains("DOCTYPE"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn malformed_xml_says_where() {
        let err =
            parse_contract(&format!("<{ROOT} xmlns=\"{CONTRACT_NAMESPACE}\">\n  <a>x</b>\n</{ROOT}>"), ROOT)
                .unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = parse_contract(&format!("<{ROOT} xmlns=\"{CONTRACT_NAMESPACE}\">\n<a>"), ROOT).unwrap_err();
        assert!(err.contains("ends before"), "{err}");
        let err = parse_contract("", ROOT).unwrap_err();
        assert!(err.contains("no root element"), "{err}");
        let err = parse_contract(&format!("{}<x/>", doc("")), ROOT).unwrap_err();
        assert!(err.contains("more than one root"), "{err}");
        let err = parse_contract(&doc("<a>text<b/></a>"), ROOT).unwrap_err();
        assert!(err.contains("mixes text"), "{err}");
        let err = parse_contract(&doc("<p:a>x</p:a>"), ROOT).unwrap_err();
        assert!(err.contains("undeclared namespace prefix \"p\""), "{err}");
        let err = parse_contract(&format!("<?xml version=\"1.0\" encoding=\"utf-16\"?>{}", doc("")), ROOT)
            .unwrap_err();
        assert!(err.contains("send UTF-8"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        let err = parse(&deep).unwrap_err();
        assert!(err.contains("more than 16 deep"), "{err}");
    }

    #[test]
    fn writes_members_sorted_with_nils_items_and_maps() {
        let node = Node::Struct(vec![
            ("zeta", Node::Text("a<b".into())),
            ("alpha", Node::Null),
            ("list", Node::List(ItemName::array("int"), vec![Node::Text("2".into())])),
            ("map", Node::Map(vec![("k".into(), "v".into())])),
        ]);
        let xml = write_contract("Root", &node);
        assert_eq!(
            xml,
            format!(
                "<Root xmlns:i=\"{XSI_NAMESPACE}\" xmlns=\"{CONTRACT_NAMESPACE}\"><alpha i:nil=\"true\"/>\
                 <list><int xmlns=\"{ARRAYS_NAMESPACE}\">2</int></list>\
                 <map><KeyValueOfstringstring xmlns=\"{ARRAYS_NAMESPACE}\"><Key>k</Key><Value>v</Value></KeyValueOfstringstring></map>\
                 <zeta>a&lt;b</zeta></Root>"
            )
        );
    }

    #[test]
    fn error_body_round_trips() {
        let mut state = ModelState::new();
        state.add("request.parts[1].partNumber", "Part number 1 appears more than once.");
        state.add("request.parts[1].partNumber", "a second <message> & more");
        state.add("request.uploadId", "uploadId must not be empty.");
        let body = ErrorBody::invalid(state);
        let xml = write_error(&body);
        assert!(xml.starts_with(
            "<Error><Code>invalid_request</Code><Message>The request is invalid.</Message><ModelState><Field name=\"request.parts[1].partNumber\"><Message>Part number 1 appears more than once.</Message>"
        ), "{xml}");
        assert_eq!(read_error(&xml).unwrap(), body);
        let plain = ErrorBody::new(ErrorCode::NotFound, "Not found.");
        assert_eq!(write_error(&plain), "<Error><Code>not_found</Code><Message>Not found.</Message></Error>");
        assert_eq!(read_error(&write_error(&plain)).unwrap(), plain);
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(position("ab\ncø\nx", 6), "line 2, column 3");
        assert_eq!(position("abc", 0), "line 1, column 1");
        assert_eq!(position("abc", 99), "line 1, column 4");
    }
}
