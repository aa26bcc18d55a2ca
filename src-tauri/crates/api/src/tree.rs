//! The two small trees the three wire formats meet at.
//!
//! Decoding parses a body into a [`Value`] (JSON, XML and form each have a
//! parser) and then reads typed fields out of it with the
//! [`Extractor`](crate::extract::Extractor); encoding turns a typed value
//! into a [`Node`], which the XML and form writers print. JSON is written
//! by serde directly.

/// A parsed body, before it is given a type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null`, or an XML element with `i:nil="true"`.
    Null,
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
    /// A JSON string.
    String(String),
    /// XML or form text, untyped: coerced to whatever the field expects
    /// (`"true"` to a boolean, `"12"` to a number, `""` to an empty list).
    Text(String),
    /// A JSON array, or a form list (`parts[0]`, `parts[1]`).
    Array(Vec<Value>),
    /// A JSON object, a form group, or an XML element with child elements
    /// (which may be a list: its children are then the items). Names may
    /// repeat: a repeated name is reported, except for form lists
    /// written as `partNumbers=2&partNumbers=3`.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// How a message describes this kind of value: "got a number".
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "true or false",
            Value::Number(_) => "a number",
            Value::String(_) | Value::Text(_) => "text",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

/// A typed value on its way out, with what the XML writer needs to know.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// Written as `i:nil="true"` in XML, left out of a form.
    Null,
    /// A scalar, already in its wire text (`true`, `12`, an RFC 3339 time).
    Text(String),
    /// Members by name. XML writes them in ordinal order of their names, as
    /// DataContractSerializer does; a form writes them in this order.
    Struct(Vec<(&'static str, Node)>),
    /// A list whose XML items are elements named `item`.
    List(ItemName, Vec<Node>),
    /// A string-to-string map: `KeyValueOfstringstring` items in XML.
    Map(Vec<(String, String)>),
}

/// The element name of a list's items in XML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemName {
    /// The local name, e.g. `MediaRecorderController.NativeUploadPart` or `int`.
    pub(crate) local: &'static str,
    /// The item's namespace when it is not the DataContract one, e.g.
    /// [`ARRAYS_NAMESPACE`](crate::ARRAYS_NAMESPACE) for `int` and `string`.
    pub(crate) namespace: Option<&'static str>,
}

impl ItemName {
    /// An item in the DataContract namespace.
    pub(crate) const fn contract(local: &'static str) -> Self {
        Self { local, namespace: None }
    }

    /// An item of a primitive list, in the serialization Arrays namespace.
    pub(crate) const fn array(local: &'static str) -> Self {
        Self { local, namespace: Some(crate::ARRAYS_NAMESPACE) }
    }
}

/// Converts a typed value to the [`Node`] the XML and form writers print.
pub trait ToNode {
    fn to_node(&self) -> Node;
}

impl ToNode for String {
    fn to_node(&self) -> Node {
        Node::Text(self.clone())
    }
}

impl ToNode for bool {
    fn to_node(&self) -> Node {
        Node::Text(self.to_string())
    }
}

macro_rules! display_node {
    ($($type:ty),*) => {$(
        impl ToNode for $type {
            fn to_node(&self) -> Node {
                Node::Text(self.to_string())
            }
        }
    )*};
}

display_node!(u32, u64, f64, crate::ContentType, crate::RecordingStatus, crate::ContentMd5, crate::Timestamp);

impl<T: ToNode> ToNode for Option<T> {
    fn to_node(&self) -> Node {
        self.as_ref().map_or(Node::Null, ToNode::to_node)
    }
}

impl<T: ToNode + crate::extract::XmlItem> ToNode for Vec<T> {
    fn to_node(&self) -> Node {
        Node::List(T::ITEM, self.iter().map(ToNode::to_node).collect())
    }
}

impl ToNode for std::collections::BTreeMap<String, String> {
    fn to_node(&self) -> Node {
        Node::Map(self.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
