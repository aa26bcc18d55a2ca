//! Where the desktop app looks for a newer version of itself.
//!
//! A release is built with an update endpoint and the public key its
//! updates are signed with (`OPPTAK_UPDATE_ENDPOINT`, `OPPTAK_UPDATE_PUBKEY`
//! at build time). IT can point a computer at its own mirror, or switch
//! updates off, in the machine preset (`client.toml`):
//!
//! ```toml
//! [updates]
//! enabled = false                                   # off on this computer
//! endpoint = "https://updates.school.example/opptak/latest.json"
//! pubkey = "dW50cnVzdGVkIGNvbW1lbnQ6IG1pbmlzaWduIHB1YmxpYyBrZXk6..."
//! ```
//!
//! With no endpoint from either, updates are off: an app that does not know
//! where its updates come from must not ask anyone.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::destinations::read_preset_file;

/// Where updates come from, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateSource {
    /// Look for updates at `endpoint`; trust what `pubkey` signed.
    On {
        /// The update manifest (`latest.json`) or update server.
        endpoint: reqwest::Url,
        /// The minisign public key, as `tauri signer generate` writes it.
        pubkey: String,
    },
    /// Do not look.
    Off(UpdatesOff),
}

/// Why the app does not look for updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase", tag = "reason", content = "detail")]
pub enum UpdatesOff {
    /// Neither this build nor the machine preset names an update endpoint.
    NotConfigured,
    /// IT wrote `enabled = false` in the machine preset.
    SwitchedOffByIt,
    /// The preset's `[updates]` cannot be used; the text says why, for IT.
    InvalidPreset(String),
}

/// An endpoint and key the release was built with.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltIn<'a> {
    /// `OPPTAK_UPDATE_ENDPOINT` at build time.
    pub endpoint: Option<&'a str>,
    /// `OPPTAK_UPDATE_PUBKEY` at build time.
    pub pubkey: Option<&'a str>,
}

impl BuiltIn<'static> {
    /// What this build of Opptak was given.
    pub fn of_this_build() -> Self {
        Self { endpoint: option_env!("OPPTAK_UPDATE_ENDPOINT"), pubkey: option_env!("OPPTAK_UPDATE_PUBKEY") }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetUpdates {
    enabled: Option<bool>,
    endpoint: Option<String>,
    pubkey: Option<String>,
}

/// Where this computer's updates come from: the machine preset at
/// `preset_path` over what the build was given. A preset that cannot be
/// read, or whose `[updates]` is not understood, keeps updates off: it may
/// be IT switching them off with a typo.
pub fn update_source(preset_path: &Path, built_in: BuiltIn<'_>) -> UpdateSource {
    let preset = read_preset_file::<toml::Table>(preset_path).and_then(|file| {
        match file.and_then(|mut table| table.remove("updates")) {
            None => Ok(PresetUpdates::default()),
            Some(updates) => {
                updates.try_into().map_err(|err: toml::de::Error| format!("[updates] {}", err.message()))
            }
        }
    });
    let source = match preset {
        Ok(preset) => resolve(preset, built_in),
        Err(why) => UpdateSource::Off(UpdatesOff::InvalidPreset(why)),
    };
    if let UpdateSource::Off(UpdatesOff::InvalidPreset(why)) = &source {
        tracing::warn!(path = %preset_path.display(), "updates are off: the machine preset's {why}");
    }
    source
}

fn resolve(preset: PresetUpdates, built_in: BuiltIn<'_>) -> UpdateSource {
    if preset.enabled == Some(false) {
        return UpdateSource::Off(UpdatesOff::SwitchedOffByIt);
    }
    let non_empty =
        |value: Option<&str>| value.map(str::trim).filter(|value| !value.is_empty()).map(str::to_owned);
    let endpoint = non_empty(preset.endpoint.as_deref()).or_else(|| non_empty(built_in.endpoint));
    let pubkey = non_empty(preset.pubkey.as_deref()).or_else(|| non_empty(built_in.pubkey));
    let invalid = |why: String| UpdateSource::Off(UpdatesOff::InvalidPreset(why));
    match (endpoint, pubkey) {
        (None, None) => UpdateSource::Off(UpdatesOff::NotConfigured),
        (None, Some(_)) => invalid("[updates] names a pubkey but no endpoint; add endpoint = \"https://…/latest.json\"".into()),
        (Some(_), None) => invalid(
            "[updates] names an endpoint but no pubkey to check the updates' signatures with; add the pubkey the updates are signed for".into(),
        ),
        (Some(endpoint), Some(pubkey)) => match checked_endpoint(&endpoint) {
            Ok(endpoint) => UpdateSource::On { endpoint, pubkey },
            Err(why) => invalid(format!("the endpoint {endpoint} {why}")),
        },
    }
}

/// An update endpoint must be https: what it answers decides which
/// installer runs. Plain http is allowed only to this computer (a test
/// server or a local mirror).
fn checked_endpoint(endpoint: &str) -> Result<reqwest::Url, &'static str> {
    let url = reqwest::Url::parse(endpoint).map_err(|_| "is not a web address")?;
    let host = url.host_str().filter(|host| !host.is_empty()).ok_or("names no server")?;
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err("must start with https://"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dW50cnVzdGVkIGNvbW1lbnQ6IG1pbmlzaWduIHB1YmxpYyBrZXk=";

    fn source_of(preset: &str, built_in: BuiltIn<'_>) -> UpdateSource {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("client.toml");
        std::fs::write(&path, preset).unwrap();
        update_source(&path, built_in)
    }

    const BUILT_IN: BuiltIn<'static> =
        BuiltIn { endpoint: Some("https://releases.opptak.example/latest.json"), pubkey: Some(KEY) };

    #[test]
    fn with_no_endpoint_anywhere_updates_are_off() {
        assert_eq!(source_of("", BuiltIn::default()), UpdateSource::Off(UpdatesOff::NotConfigured));
        let temp = tempfile::tempdir().unwrap();
        let missing = update_source(&temp.path().join("client.toml"), BuiltIn::default());
        assert_eq!(missing, UpdateSource::Off(UpdatesOff::NotConfigured));
    }

    #[test]
    fn a_build_with_an_endpoint_and_key_looks_there() {
        let source = source_of("[server]\nurl = \"https://opptak.school.example\"\n", BUILT_IN);
        let UpdateSource::On { endpoint, pubkey } = source else { panic!("{source:?}") };
        assert_eq!(endpoint.as_str(), "https://releases.opptak.example/latest.json");
        assert_eq!(pubkey, KEY);
    }

    #[test]
    fn it_switches_updates_off_even_where_the_build_names_an_endpoint() {
        let source = source_of("[updates]\nenabled = false\n", BUILT_IN);
        assert_eq!(source, UpdateSource::Off(UpdatesOff::SwitchedOffByIt));
    }

    #[test]
    fn the_preset_points_at_the_schools_own_mirror_with_the_builds_key() {
        let preset = "[updates]\nendpoint = \"https://mirror.school.example/opptak/latest.json\"\n";
        let UpdateSource::On { endpoint, pubkey } = source_of(preset, BUILT_IN) else { panic!() };
        assert_eq!(endpoint.host_str(), Some("mirror.school.example"));
        assert_eq!(pubkey, KEY);
    }

    #[test]
    fn an_endpoint_with_no_key_to_check_it_keeps_updates_off_and_says_so() {
        let preset = "[updates]\nendpoint = \"https://mirror.school.example/latest.json\"\n";
        let UpdateSource::Off(UpdatesOff::InvalidPreset(why)) = source_of(preset, BuiltIn::default()) else {
            panic!()
        };
        assert!(why.contains("no pubkey"), "{why}");
    }

    #[test]
    fn plain_http_is_refused_except_to_this_computer() {
        let preset =
            |host: &str| format!("[updates]\nendpoint = \"http://{host}/latest.json\"\npubkey = \"{KEY}\"\n");
        let source = source_of(&preset("mirror.school.example"), BuiltIn::default());
        let UpdateSource::Off(UpdatesOff::InvalidPreset(why)) = source else { panic!("{source:?}") };
        assert!(why.contains("must start with https://"), "{why}");
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            let source = source_of(&preset(host), BuiltIn::default());
            assert!(matches!(source, UpdateSource::On { .. }), "{host}: {source:?}");
        }
    }

    #[test]
    fn a_preset_not_understood_keeps_updates_off_rather_than_on() {
        // `enable = false` is IT switching updates off with a typo.
        for broken in ["[updates]\nenable = false\n", "[updates\nenabled = false\n"] {
            let source = source_of(broken, BUILT_IN);
            assert!(
                matches!(source, UpdateSource::Off(UpdatesOff::InvalidPreset(_))),
                "{broken}: {source:?}"
            );
        }
    }
}
