//! [`wire_struct!`]: one field list gives a struct both directions, reading
//! ([`FromValue`](crate::extract::FromValue)) and writing
//! ([`ToNode`](crate::tree::ToNode)), so the two cannot drift apart.

/// Implements `FromValue` and `ToNode` for a struct from its wire names:
///
/// ```text
/// wire_struct!(FinishPart {
///     part_number: "partNumber" as PartNumber => u32::from,
///     etag: "etag",
/// });
/// ```
///
/// A field is read as its own type unless `as Type => convert` reads it as
/// `Type` (for a stricter check) and converts. The placeholder of the
/// struct is made of its fields' placeholders.
macro_rules! wire_struct {
    ($type:ident { $($field:ident : $name:literal $(as $read:ty => $convert:expr)?),* $(,)? }) => {
        impl $crate::extract::FromValue for $type {
            fn placeholder() -> Self {
                Self {
                    $($field: $crate::extract::FromValue::placeholder(),)*
                }
            }

            fn from_value(
                x: &mut $crate::extract::Extractor,
                value: &$crate::tree::Value,
                path: &$crate::model_state::FieldPath,
            ) -> Option<Self> {
                let fields = x.object(value, path)?;
                Some(Self {
                    $($field: $crate::wire::wire_struct!(@read x, fields, $name $(, $read, $convert)?),)*
                })
            }
        }

        impl $crate::tree::ToNode for $type {
            fn to_node(&self) -> $crate::tree::Node {
                $crate::tree::Node::Struct(vec![
                    $(($name, $crate::tree::ToNode::to_node(&self.$field)),)*
                ])
            }
        }
    };
    (@read $x:ident, $fields:ident, $name:literal) => {
        $x.field(&$fields, $name)
    };
    (@read $x:ident, $fields:ident, $name:literal, $read:ty, $convert:expr) => {
        ($convert)($x.field::<$read>(&$fields, $name))
    };
}

pub(crate) use wire_struct;
