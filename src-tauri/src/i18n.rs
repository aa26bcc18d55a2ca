//! The app's language: Norsk bokmål, nynorsk or English. The teacher's
//! choice in Settings wins; without one, the computer's language decides.
//! The window translates its own texts; the texts Rust shows itself (the
//! tray, notifications) come from [`Texts`].

use serde::{Deserialize, Serialize};

/// A language Opptak speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, specta::Type)]
pub enum Language {
    /// English.
    #[serde(rename = "en")]
    English,
    /// Norsk bokmål.
    #[serde(rename = "nb")]
    Bokmal,
    /// Norsk nynorsk.
    #[serde(rename = "nn")]
    Nynorsk,
}

impl Language {
    /// Every language, in the order Settings lists them.
    pub const ALL: [Self; 3] = [Self::Bokmal, Self::Nynorsk, Self::English];

    /// The language's tag ("en", "nb", "nn"), as the settings file and the
    /// window name it.
    pub fn tag(self) -> &'static str {
        match self {
            Self::English => "en",
            Self::Bokmal => "nb",
            Self::Nynorsk => "nn",
        }
    }

    /// The language tagged `tag` exactly ("en", "nb", "nn").
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|language| language.tag() == tag)
    }

    /// The language for an OS locale such as "nb_NO.UTF-8", "nn-NO" or
    /// "en_GB": Norwegian ones ("no", "nb", "nn") are Norwegian, with plain
    /// "no" as bokmål, the written form most use; anything else is English.
    pub fn from_locale(locale: &str) -> Self {
        let language = locale.split(['_', '-', '.', '@']).next().unwrap_or_default().to_ascii_lowercase();
        match language.as_str() {
            "nn" => Self::Nynorsk,
            "nb" | "no" => Self::Bokmal,
            _ => Self::English,
        }
    }

    /// The computer's language from the usual locale variables, read
    /// through `var` (the process environment in the app).
    pub fn from_environment(var: impl Fn(&str) -> Option<String>) -> Self {
        // LANGUAGE is a list ("nn:nb:en"); its first entry is the one meant.
        // "C" and "POSIX" name no language, so the next variable decides.
        ["LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"]
            .into_iter()
            .filter_map(&var)
            .filter_map(|value| value.split(':').next().map(str::to_owned))
            .find(|value| !value.is_empty() && value != "C" && value != "POSIX" && !value.starts_with("C."))
            .map_or(Self::English, |locale| Self::from_locale(&locale))
    }

    /// The language to speak: `saved` (the teacher's choice in Settings),
    /// else the computer's language.
    pub fn current(saved: Option<Self>) -> Self {
        saved.unwrap_or_else(|| Self::from_environment(|name| std::env::var(name).ok()))
    }
}

/// The texts Rust shows outside the window, in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Texts {
    /// The language of these texts.
    pub language: Language,
}

impl Texts {
    /// The texts in `language`.
    pub fn new(language: Language) -> Self {
        Self { language }
    }

    fn pick(self, en: &'static str, nb: &'static str, nn: &'static str) -> &'static str {
        match self.language {
            Language::English => en,
            Language::Bokmal => nb,
            Language::Nynorsk => nn,
        }
    }

    /// "Start recording".
    pub fn start_recording(self) -> &'static str {
        self.pick("Start recording", "Start opptak", "Start opptak")
    }

    /// "Stop recording".
    pub fn stop_recording(self) -> &'static str {
        self.pick("Stop recording", "Stopp opptaket", "Stopp opptaket")
    }

    /// "Pause recording".
    pub fn pause_recording(self) -> &'static str {
        self.pick("Pause recording", "Sett opptaket på pause", "Set opptaket på pause")
    }

    /// "Resume recording".
    pub fn resume_recording(self) -> &'static str {
        self.pick("Resume recording", "Fortsett opptaket", "Hald fram med opptaket")
    }

    /// The tray's progress item when nothing uploads.
    pub fn no_upload(self) -> &'static str {
        self.pick("No upload running", "Ingen opplasting pågår", "Inga opplasting held på")
    }

    /// The upload's progress, "Uploading 43 %".
    pub fn uploading(self, percent: u8) -> String {
        let text = self.pick("Uploading", "Laster opp", "Lastar opp");
        format!("{text} {percent} %")
    }

    /// "Open Opptak".
    pub fn open_app(self) -> &'static str {
        self.pick("Open Opptak", "Åpne Opptak", "Opne Opptak")
    }

    /// "Quit Opptak".
    pub fn quit_app(self) -> &'static str {
        self.pick("Quit Opptak", "Avslutt Opptak", "Avslutt Opptak")
    }

    /// The tray's tooltip when nothing records.
    pub fn tooltip_idle(self) -> &'static str {
        self.pick("Opptak — not recording", "Opptak — tar ikke opp", "Opptak — tek ikkje opp")
    }

    /// The tray's tooltip while recording.
    pub fn tooltip_recording(self) -> &'static str {
        self.pick("Opptak — recording", "Opptak — tar opp", "Opptak — tek opp")
    }

    /// The tray's tooltip while paused.
    pub fn tooltip_paused(self) -> &'static str {
        self.pick(
            "Opptak — recording paused",
            "Opptak — opptaket er på pause",
            "Opptak — opptaket er på pause",
        )
    }

    /// The tray's tooltip while uploading.
    pub fn tooltip_uploading(self, percent: u8) -> String {
        let text = self.pick("Opptak — uploading", "Opptak — laster opp", "Opptak — lastar opp");
        format!("{text} {percent} %")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norwegian_locales_are_norwegian_and_every_other_is_english() {
        for (locale, language) in [
            ("nb_NO.UTF-8", Language::Bokmal),
            ("nb-NO", Language::Bokmal),
            ("no", Language::Bokmal),
            ("no_NO", Language::Bokmal),
            ("NB", Language::Bokmal),
            ("nn-NO", Language::Nynorsk),
            ("nn_NO.UTF-8@euro", Language::Nynorsk),
            ("en_US.UTF-8", Language::English),
            ("sv_SE.UTF-8", Language::English),
            ("de", Language::English),
            ("", Language::English),
            ("C", Language::English),
            ("nonsense", Language::English),
        ] {
            assert_eq!(Language::from_locale(locale), language, "{locale}");
        }
    }

    #[test]
    fn the_first_locale_variable_that_names_a_language_decides() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
        };
        assert_eq!(Language::from_environment(env(&[])), Language::English);
        assert_eq!(Language::from_environment(env(&[("LANG", "nb_NO.UTF-8")])), Language::Bokmal);
        assert_eq!(
            Language::from_environment(env(&[("LANG", "nb_NO.UTF-8"), ("LC_ALL", "nn_NO.UTF-8")])),
            Language::Nynorsk
        );
        assert_eq!(
            Language::from_environment(env(&[("LANG", "nn_NO.UTF-8"), ("LC_MESSAGES", "en_GB.UTF-8")])),
            Language::English
        );
        assert_eq!(
            Language::from_environment(env(&[("LANGUAGE", "nn:nb:en"), ("LANG", "en_US.UTF-8")])),
            Language::Nynorsk
        );
        assert_eq!(
            Language::from_environment(env(&[("LC_ALL", "C"), ("LANG", "nb_NO.UTF-8")])),
            Language::Bokmal,
            "C names no language"
        );
        assert_eq!(Language::from_environment(env(&[("LC_ALL", "C.UTF-8")])), Language::English);
    }

    #[test]
    fn a_saved_choice_wins_over_the_computers_language() {
        for language in Language::ALL {
            assert_eq!(Language::current(Some(language)), language);
        }
    }

    #[test]
    fn languages_keep_their_tags_in_files_and_in_the_window() {
        for language in Language::ALL {
            assert_eq!(Language::from_tag(language.tag()), Some(language));
            assert_eq!(serde_json::to_value(language).unwrap(), serde_json::json!(language.tag()));
            let parsed: Language = serde_json::from_value(serde_json::json!(language.tag())).unwrap();
            assert_eq!(parsed, language);
        }
        assert_eq!(Language::from_tag("no"), None, "only the three tags are saved");
    }

    #[test]
    fn the_tray_texts_differ_between_the_languages_but_keep_the_english_names() {
        let english = Texts::new(Language::English);
        assert_eq!(english.start_recording(), "Start recording");
        assert_eq!(english.uploading(43), "Uploading 43 %");
        let bokmal = Texts::new(Language::Bokmal);
        let nynorsk = Texts::new(Language::Nynorsk);
        assert_eq!(bokmal.tooltip_idle(), "Opptak — tar ikke opp");
        assert_eq!(nynorsk.tooltip_idle(), "Opptak — tek ikkje opp");
        assert_ne!(bokmal.resume_recording(), nynorsk.resume_recording());
        assert_eq!(nynorsk.uploading(7), "Lastar opp 7 %");
    }
}
