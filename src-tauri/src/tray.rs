//! The tray icon: what the app is doing (icon and tooltip) and a menu to
//! start, stop, pause, open the window, see the upload and quit.
//!
//! On Linux a tray click gives no event and the icon shows only where a
//! StatusNotifier host runs (most panels; not a bare X server). The menu is
//! the only way in, and where no host exists the app says so once and never
//! hides its window, so it cannot vanish into nothing.

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::watch;

use crate::controls::{self, Activity, Desktop};
use crate::i18n::{Language, Texts};

/// The tray icon's id.
const TRAY_ID: &str = "opptak";
/// The bus name of the StatusNotifier host registry that shows tray icons.
pub const STATUS_NOTIFIER_WATCHER: &str = "org.kde.StatusNotifierWatcher";

/// What a tray menu item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuAction {
    /// Start a recording, or stop the running one.
    StartOrStop,
    /// Pause the recording, or resume it.
    PauseOrResume,
    /// Bring the window to the front.
    Open,
    /// Quit Opptak (a running recording is stopped and saved first).
    Quit,
}

impl MenuAction {
    const ALL: [Self; 4] = [Self::StartOrStop, Self::PauseOrResume, Self::Open, Self::Quit];

    /// The menu item's id.
    pub fn id(self) -> &'static str {
        match self {
            Self::StartOrStop => "start-or-stop",
            Self::PauseOrResume => "pause-or-resume",
            Self::Open => "open",
            Self::Quit => "quit",
        }
    }

    /// The action of the menu item `id`.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.id() == id)
    }
}

/// What the tray shows for one [`Activity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayLook {
    /// The icon's PNG.
    pub icon: &'static [u8],
    /// The tooltip.
    pub tooltip: String,
    /// The Start/Stop item's text.
    pub start_or_stop: &'static str,
    /// The Pause/Resume item's text, and whether it can be used.
    pub pause_or_resume: (&'static str, bool),
    /// The upload's progress (a disabled item), when something uploads.
    pub upload: Option<String>,
}

/// The tray for `activity`, in the language of `texts`.
pub fn look(activity: Activity, texts: Texts) -> TrayLook {
    let (icon, tooltip, start_or_stop, pause_or_resume, upload): (&'static [u8], String, _, _, _) =
        match activity {
            Activity::Idle => (
                include_bytes!("../../icons/tray/idle.png"),
                texts.tooltip_idle().to_owned(),
                texts.start_recording(),
                (texts.pause_recording(), false),
                None,
            ),
            Activity::Recording => (
                include_bytes!("../../icons/tray/recording.png"),
                texts.tooltip_recording().to_owned(),
                texts.stop_recording(),
                (texts.pause_recording(), true),
                None,
            ),
            Activity::Paused => (
                include_bytes!("../../icons/tray/paused.png"),
                texts.tooltip_paused().to_owned(),
                texts.stop_recording(),
                (texts.resume_recording(), true),
                None,
            ),
            Activity::Uploading { percent } => (
                include_bytes!("../../icons/tray/uploading.png"),
                texts.tooltip_uploading(percent),
                texts.start_recording(),
                (texts.pause_recording(), false),
                Some(texts.uploading(percent)),
            ),
        };
    TrayLook { icon, tooltip, start_or_stop, pause_or_resume, upload }
}

/// Runs the menu item `action`: plain calls over the engine.
pub fn on_menu<R: Runtime>(app: &AppHandle<R>, action: MenuAction) {
    match action {
        MenuAction::StartOrStop => controls::spawn(app, "tray start/stop", |engine| async move {
            controls::toggle(&engine).await.map(drop)
        }),
        MenuAction::PauseOrResume => controls::spawn(app, "tray pause/resume", |engine| async move {
            controls::pause_or_resume(&engine).await
        }),
        MenuAction::Open => controls::show_window(app),
        MenuAction::Quit => crate::closing::quit(app),
    }
}

/// The menu items whose text follows the activity or the language.
struct Items<R: Runtime> {
    start_or_stop: MenuItem<R>,
    pause_or_resume: MenuItem<R>,
    upload: MenuItem<R>,
    open: MenuItem<R>,
    quit: MenuItem<R>,
}

impl<R: Runtime> Items<R> {
    fn show(&self, tray: &TrayIcon<R>, activity: Activity, texts: Texts) -> tauri::Result<()> {
        let look = look(activity, texts);
        self.start_or_stop.set_text(look.start_or_stop)?;
        self.pause_or_resume.set_text(look.pause_or_resume.0)?;
        self.pause_or_resume.set_enabled(look.pause_or_resume.1)?;
        self.upload.set_text(look.upload.as_deref().unwrap_or(texts.no_upload()))?;
        self.open.set_text(texts.open_app())?;
        self.quit.set_text(texts.quit_app())?;
        tray.set_icon(Some(Image::from_bytes(look.icon)?))?;
        tray.set_tooltip(Some(&look.tooltip))
    }
}

/// Builds the tray and keeps it following `activity` and, in its texts,
/// `language` (the teacher's choice in Settings, else the computer's).
pub fn create<R: Runtime>(
    app: &AppHandle<R>,
    mut activity: watch::Receiver<Activity>,
    mut language: watch::Receiver<Language>,
) -> tauri::Result<()> {
    let texts = Texts::new(*language.borrow_and_update());
    let first = look(*activity.borrow_and_update(), texts);
    let item = |action: MenuAction, text: &str, enabled: bool| {
        MenuItem::with_id(app, action.id(), text, enabled, None::<&str>)
    };
    let items = Items {
        start_or_stop: item(MenuAction::StartOrStop, first.start_or_stop, true)?,
        pause_or_resume: item(MenuAction::PauseOrResume, first.pause_or_resume.0, first.pause_or_resume.1)?,
        upload: MenuItem::with_id(app, "upload-progress", texts.no_upload(), false, None::<&str>)?,
        open: item(MenuAction::Open, texts.open_app(), true)?,
        quit: item(MenuAction::Quit, texts.quit_app(), true)?,
    };
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[&items.start_or_stop, &items.pause_or_resume, &items.upload, &separator, &items.open, &items.quit],
    )?;
    let tray = TrayIconBuilder::with_id(TRAY_ID)
        .icon(Image::from_bytes(first.icon)?)
        .tooltip(&first.tooltip)
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| match MenuAction::from_id(event.id().as_ref()) {
            Some(action) => on_menu(app, action),
            None => tracing::debug!(id = ?event.id(), "tray item without an action"),
        })
        .build(app)?;
    items.show(&tray, *activity.borrow(), texts)?;
    tauri::async_runtime::spawn(async move {
        loop {
            tokio::select! {
                changed = activity.changed() => if changed.is_err() { return },
                changed = language.changed() => if changed.is_err() { return },
            }
            let texts = Texts::new(*language.borrow_and_update());
            if let Err(err) = items.show(&tray, *activity.borrow_and_update(), texts) {
                tracing::warn!(error = %err, "the tray could not show the new state");
            }
        }
    });
    Ok(())
}

/// Whether a StatusNotifier host registry is on the session bus, or why
/// that cannot be known. Blocks on D-Bus: call it off the main thread.
#[cfg(target_os = "linux")]
pub fn tray_host() -> Result<bool, String> {
    let bus = zbus::blocking::Connection::session().map_err(|err| format!("no session bus ({err})"))?;
    let names = zbus::blocking::fdo::DBusProxy::new(&bus).map_err(|err| err.to_string())?;
    let watcher = zbus::names::BusName::try_from(STATUS_NOTIFIER_WATCHER).map_err(|err| err.to_string())?;
    names.name_has_owner(watcher).map_err(|err| err.to_string())
}

/// Elsewhere the system tray is always there.
#[cfg(not(target_os = "linux"))]
pub fn tray_host() -> Result<bool, String> {
    Ok(true)
}

/// Checks for a tray host, remembers the answer and, when there is none,
/// logs it once. The window reads the answer (`desktop_status`) and says
/// so in Settings and in the close dialog: an event sent now could reach
/// the page before it listens.
pub fn check_host<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    std::thread::spawn(move || {
        let shown = match tray_host() {
            Ok(shown) => shown,
            Err(why) => {
                tracing::warn!(why, "cannot tell whether a tray host runs");
                false
            }
        };
        *app.state::<Desktop>().tray_shown.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(shown);
        if !shown {
            tracing::warn!(host = STATUS_NOTIFIER_WATCHER, "no tray host: the window stays open");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tray_shows_each_state_in_its_icon_tooltip_and_menu() {
        let english = Texts::new(Language::English);
        let idle = look(Activity::Idle, english);
        assert_eq!(
            (idle.start_or_stop, idle.pause_or_resume),
            ("Start recording", ("Pause recording", false))
        );
        assert_eq!(idle.upload, None);
        let recording = look(Activity::Recording, english);
        assert_eq!(recording.start_or_stop, "Stop recording");
        assert_eq!(recording.pause_or_resume, ("Pause recording", true));
        assert_eq!(recording.tooltip, "Opptak — recording");
        let paused = look(Activity::Paused, english);
        assert_eq!(paused.pause_or_resume, ("Resume recording", true));
        let uploading = look(Activity::Uploading { percent: 43 }, english);
        assert_eq!(uploading.upload.as_deref(), Some("Uploading 43 %"));
        assert_eq!(uploading.tooltip, "Opptak — uploading 43 %");
        // Four different icons, each a PNG Tauri can load.
        let icons = [idle.icon, recording.icon, paused.icon, uploading.icon];
        for (n, icon) in icons.iter().enumerate() {
            let image = Image::from_bytes(icon).expect("a PNG");
            assert_eq!((image.width(), image.height()), (32, 32));
            assert!(icons[..n].iter().all(|other| other != icon), "icon {n} is distinct");
        }
        for action in MenuAction::ALL {
            assert_eq!(MenuAction::from_id(action.id()), Some(action));
        }
        assert_eq!(MenuAction::from_id("upload-progress"), None, "the progress item does nothing");
    }

    #[test]
    fn the_tray_speaks_nynorsk_and_bokmal() {
        let nynorsk = look(Activity::Paused, Texts::new(Language::Nynorsk));
        assert_eq!(nynorsk.tooltip, "Opptak — opptaket er på pause");
        assert_eq!(nynorsk.start_or_stop, "Stopp opptaket");
        assert_eq!(nynorsk.pause_or_resume, ("Hald fram med opptaket", true));
        let bokmal = look(Activity::Idle, Texts::new(Language::Bokmal));
        assert_eq!(bokmal.tooltip, "Opptak — tar ikke opp");
        assert_eq!(bokmal.start_or_stop, "Start opptak");
        let uploading = look(Activity::Uploading { percent: 5 }, Texts::new(Language::Bokmal));
        assert_eq!(uploading.upload.as_deref(), Some("Laster opp 5 %"));
    }
}
