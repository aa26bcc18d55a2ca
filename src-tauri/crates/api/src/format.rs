//! Which format a body is in: [`BodyFormat`] from a request's
//! `Content-Type`, [`ResponseFormat`] from its `Accept`.

use crate::error::{Error, Result};

/// The format of a request body, chosen by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyFormat {
    /// `application/json` or `text/json`: camelCase members.
    Json,
    /// `application/xml` or `text/xml`: the DataContract form.
    Xml,
    /// `application/x-www-form-urlencoded`: jQuery or dotted nested names.
    Form,
}

impl BodyFormat {
    /// The format a `Content-Type` header value names.
    ///
    /// Media types are compared without regard to ASCII case; parameters
    /// are allowed, but a `charset` other than UTF-8 is not, since every
    /// body is read as UTF-8.
    ///
    /// # Errors
    /// [`Error::UnsupportedMediaType`] (answer 415) for any other type,
    /// including an empty header.
    pub fn from_content_type(header: &str) -> Result<Self> {
        let unsupported = || Error::UnsupportedMediaType { content_type: header.to_owned() };
        let (essence, params) = split_media_type(header);
        let format = match essence.as_str() {
            "application/json" | "text/json" => Self::Json,
            "application/xml" | "text/xml" => Self::Xml,
            "application/x-www-form-urlencoded" => Self::Form,
            _ => return Err(unsupported()),
        };
        for (name, value) in params {
            if name.eq_ignore_ascii_case("charset")
                && !(value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8"))
            {
                return Err(unsupported());
            }
        }
        Ok(format)
    }

    /// The `Content-Type` a client sends with a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json; charset=utf-8",
            Self::Xml => "application/xml; charset=utf-8",
            Self::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// The format of a response body, chosen by the request's `Accept`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResponseFormat {
    /// JSON, the default.
    #[default]
    Json,
    /// The DataContract XML form.
    Xml,
}

impl ResponseFormat {
    /// XML when `accept` prefers `application/xml` or `text/xml` to JSON,
    /// otherwise JSON.
    ///
    /// Each candidate type takes the q-value of the most specific range
    /// that matches it (`application/xml` over `application/*` over
    /// `*/*`); XML wins only with a strictly higher q-value than JSON, so
    /// `*/*`, an empty header or a tie give JSON.
    pub fn from_accept(accept: &str) -> Self {
        let ranges: Vec<(String, f32)> = accept
            .split(',')
            .filter_map(|range| {
                let (essence, params) = split_media_type(range);
                let mut q = 1.0;
                for (name, value) in params {
                    if name.eq_ignore_ascii_case("q") {
                        q = value.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?;
                    }
                }
                (!essence.is_empty()).then_some((essence, q))
            })
            .collect();
        let quality = |candidate: &str| -> f32 {
            let (kind, _) = candidate.split_once('/').unwrap_or((candidate, ""));
            let mut best: Option<(u8, f32)> = None;
            for (range, q) in &ranges {
                let specificity = if range == candidate {
                    3
                } else if range.strip_suffix("/*") == Some(kind) {
                    2
                } else if range == "*/*" {
                    1
                } else {
                    continue;
                };
                match best {
                    Some((s, best_q)) if s > specificity || (s == specificity && best_q >= *q) => {}
                    _ => best = Some((specificity, *q)),
                }
            }
            best.map_or(0.0, |(_, q)| q)
        };
        let json = quality("application/json").max(quality("text/json"));
        let xml = quality("application/xml").max(quality("text/xml"));
        if xml > json { Self::Xml } else { Self::Json }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json; charset=utf-8",
            Self::Xml => "application/xml; charset=utf-8",
        }
    }
}

/// `type/subtype` in lower case, and the parameters as written (value unquoted).
fn split_media_type(value: &str) -> (String, Vec<(&str, &str)>) {
    let mut pieces = value.split(';');
    let essence = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = pieces
        .filter_map(|param| {
            let (name, value) = param.split_once('=')?;
            Some((name.trim(), value.trim().trim_matches('"')))
        })
        .collect();
    (essence, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_select_a_format() {
        for (header, format) in [
            ("application/json", BodyFormat::Json),
            ("text/json", BodyFormat::Json),
            ("Application/JSON; charset=UTF-8", BodyFormat::Json),
            ("application/xml", BodyFormat::Xml),
            ("text/xml; charset=\"utf-8\"", BodyFormat::Xml),
            ("application/x-www-form-urlencoded; charset=utf-8", BodyFormat::Form),
            (" application/x-www-form-urlencoded ", BodyFormat::Form),
        ] {
            assert_eq!(BodyFormat::from_content_type(header).unwrap(), format, "{header}");
        }
    }

    #[test]
    fn other_content_types_are_unsupported() {
        for header in [
            "",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json-patch+json",
            "application/jsonx",
            "application/xml; charset=iso-8859-1",
            "application/json; charset=utf-16",
            "json",
        ] {
            let err = BodyFormat::from_content_type(header).unwrap_err();
            assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{header}: {err}");
            assert_eq!(err.status(), 415);
        }
    }

    #[test]
    fn accept_prefers_xml_only_when_asked() {
        for (accept, format) in [
            ("", ResponseFormat::Json),
            ("*/*", ResponseFormat::Json),
            ("application/json", ResponseFormat::Json),
            ("application/xml", ResponseFormat::Xml),
            ("text/xml", ResponseFormat::Xml),
            ("TEXT/XML; charset=utf-8", ResponseFormat::Xml),
            ("application/xml, application/json", ResponseFormat::Json),
            ("application/xml;q=0.9, application/json;q=0.8", ResponseFormat::Xml),
            ("application/xml;q=0.5, application/json", ResponseFormat::Json),
            ("application/xml, */*;q=0.1", ResponseFormat::Xml),
            ("application/xml;q=0", ResponseFormat::Json),
            ("application/*", ResponseFormat::Json),
            ("text/*", ResponseFormat::Json),
            ("application/xml;q=0.5, application/*", ResponseFormat::Json),
            ("application/*;q=0.2, application/xml", ResponseFormat::Xml),
            ("text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", ResponseFormat::Xml),
            ("application/xml;q=banana", ResponseFormat::Json),
        ] {
            assert_eq!(ResponseFormat::from_accept(accept), format, "{accept:?}");
        }
    }
}
