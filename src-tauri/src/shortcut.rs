//! The global start/stop shortcut (Ctrl+Alt+R unless the teacher chose
//! another), kept with the app's settings. Where the desktop cannot give
//! shortcuts to apps (Wayland without the GlobalShortcuts portal), Settings
//! says so and names `opptak toggle`, which a desktop's own keyboard
//! settings can bind to a key.

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime, State};
use tauri_plugin_global_shortcut::{GlobalShortcut, Shortcut, ShortcutEvent, ShortcutState};

use crate::controls::{self, Desktop};
use crate::{AppState, CommandError};

/// The shortcut when the teacher chose none.
pub const DEFAULT_SHORTCUT: &str = "Ctrl+Alt+R";

/// The start/stop shortcut and whether the desktop let Opptak have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ShortcutStatus {
    /// The keys, as Settings shows them ("Ctrl+Alt+R").
    pub keys: String,
    /// Whether pressing them anywhere starts and stops a recording.
    pub works: bool,
    /// Why not, and what to use instead; `None` when it works.
    pub problem: Option<String>,
}

impl Default for ShortcutStatus {
    fn default() -> Self {
        Self { keys: DEFAULT_SHORTCUT.to_owned(), works: false, problem: None }
    }
}

/// What Settings says when the desktop refuses the shortcut.
pub fn refused(keys: &str, why: &str) -> String {
    format!(
        "This desktop did not let Opptak use {keys} ({why}). Choose other keys, or bind the command \
         \"opptak toggle\" to a key in your desktop's keyboard settings: it starts and stops the recording the same way."
    )
}

/// The plugin's error in a teacher's words (its own text names internals).
fn reason(error: &str) -> &'static str {
    if error.contains("already registered") || error.contains("AlreadyRegistered") {
        "another program already uses these keys"
    } else {
        "it does not give shortcuts to apps"
    }
}

/// The keys in `keys`, or why they cannot be a shortcut.
pub fn parse(keys: &str) -> Result<Shortcut, CommandError> {
    keys.trim().parse::<Shortcut>().map_err(|err| {
        CommandError::new(
            "invalid_shortcut",
            format!(
                "\"{keys}\" is not a key combination Opptak understands ({err}). Write it like Ctrl+Alt+R."
            ),
        )
    })
}

/// Called by the shortcut plugin: a press toggles the recording.
pub fn on_shortcut<R: Runtime>(app: &AppHandle<R>, _shortcut: &Shortcut, event: ShortcutEvent) {
    if event.state() == ShortcutState::Pressed {
        controls::spawn(app, "shortcut", |engine| async move { controls::toggle(&engine).await.map(drop) });
    }
}

/// Makes `keys` the start/stop shortcut in place of any earlier one and
/// records whether it works. Fails only when `keys` is not a shortcut.
pub fn register<R: Runtime>(app: &AppHandle<R>, keys: &str) -> Result<ShortcutStatus, CommandError> {
    let shortcut = parse(keys)?;
    let keys = keys.trim().to_owned();
    let status = match app.try_state::<GlobalShortcut<R>>() {
        None => ShortcutStatus {
            keys,
            works: false,
            problem: Some(refused(DEFAULT_SHORTCUT, "shortcuts are off")),
        },
        Some(shortcuts) => {
            if let Err(err) = shortcuts.unregister_all() {
                tracing::warn!(error = %err, "the old shortcut could not be released");
            }
            match shortcuts.register(shortcut) {
                Ok(()) => {
                    tracing::info!(keys, "the start/stop shortcut is registered");
                    ShortcutStatus { keys, works: true, problem: None }
                }
                Err(err) => {
                    tracing::warn!(keys, error = %err, "the start/stop shortcut was refused");
                    let problem = Some(refused(&keys, reason(&err.to_string())));
                    ShortcutStatus { keys, works: false, problem }
                }
            }
        }
    };
    *app.state::<Desktop>().shortcut.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = status.clone();
    Ok(status)
}

/// Registers the saved shortcut (or the default) as the app starts.
pub fn register_saved<R: Runtime>(app: &AppHandle<R>) {
    let saved = app.state::<AppState>().engine().ok().and_then(|engine| match engine.opptak().record_shortcut() {
        Ok(saved) => saved,
        Err(err) => {
            tracing::warn!(error = %err, "the saved shortcut could not be read; using {DEFAULT_SHORTCUT}");
            None
        }
    });
    let keys = saved.unwrap_or_else(|| DEFAULT_SHORTCUT.to_owned());
    if let Err(err) = register(app, &keys) {
        tracing::warn!(keys, error = %err.message, "the saved shortcut is not valid; using {DEFAULT_SHORTCUT}");
        let _ = register(app, DEFAULT_SHORTCUT);
    }
}

/// Changes the start/stop shortcut to `keys` (blank: the default) and saves
/// it; says whether the desktop let Opptak have it.
#[tauri::command]
#[specta::specta]
pub async fn set_record_shortcut<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    keys: String,
) -> Result<ShortcutStatus, CommandError> {
    let keys = Some(keys.trim().to_owned()).filter(|keys| !keys.is_empty());
    parse(keys.as_deref().unwrap_or(DEFAULT_SHORTCUT))?;
    let engine = state.engine()?;
    let saved = keys.clone();
    tauri::async_runtime::spawn_blocking(move || engine.opptak().set_record_shortcut(saved.as_deref()))
        .await
        .map_err(|err| {
            CommandError::new(
                "internal",
                format!("Saving the shortcut stopped unexpectedly ({err}). Try again."),
            )
        })?
        .map_err(CommandError::from)?;
    register(&app, keys.as_deref().unwrap_or(DEFAULT_SHORTCUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_are_parsed_and_a_bad_one_is_explained() {
        assert!(parse(DEFAULT_SHORTCUT).is_ok());
        assert!(parse(" ctrl+shift+F9 ").is_ok());
        let err = parse("Ctrl+Banana").unwrap_err();
        assert_eq!(err.code, "invalid_shortcut");
        assert!(err.message.contains("Ctrl+Alt+R"), "{}", err.message);
        assert_eq!(
            reason("HotKey already registered: HotKey { .. }"),
            "another program already uses these keys"
        );
        let refused = refused("Ctrl+Alt+R", reason("Failed to register hotkey"));
        assert!(refused.contains("opptak toggle") && refused.ends_with('.'), "{refused}");
    }
}
