//! Notifications the teacher sees outside the window: a recording is safe
//! on the server, an upload needs the teacher, the microphone has been
//! silent while recording.
//!
//! Which change gives which notification is decided by [`Transitions`] and
//! [`SilenceWatch`], plain state machines over the Library's rows and the
//! microphone's events, so it is tested without a notification daemon. Only
//! [`Follower`], [`follow_silence`] and [`show`] touch the app.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opptak_core::{AppEngine, CaptureEvent, LibraryEntry, LibraryStatus, SessionEvent};
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::{broadcast, watch};

use crate::i18n::Language;

/// How long the microphone is silent, while recording, before the teacher
/// is told.
pub const MICROPHONE_SILENT_FOR: Duration = Duration::from_secs(30);

/// How long the recorder waits in silence before it reports
/// `SilenceStarted` (`opptak_capture`'s default `silence_after`): the
/// silence began that long before the event.
pub const SILENCE_REPORTED_AFTER: Duration = Duration::from_secs(10);

/// Something the teacher is told in a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The recording `name` is safe on its server.
    Safe {
        /// The recording's name in the Library.
        name: String,
    },
    /// The upload of `name` failed and only the teacher can move it on.
    NeedsTeacher {
        /// The recording's name in the Library.
        name: String,
        /// What happened and what to do, from the engine.
        message: String,
    },
    /// The microphone has recorded only silence for [`MICROPHONE_SILENT_FOR`].
    MicrophoneSilent,
    /// Opptak was quit while recordings were still being sent.
    UploadContinuesNextStart,
}

impl Notice {
    /// The notification's title and body in `language`.
    pub fn text(&self, language: Language) -> (String, String) {
        let pick = |en: &str, nb: &str, nn: &str| -> String {
            match language {
                Language::English => en,
                Language::Bokmal => nb,
                Language::Nynorsk => nn,
            }
            .to_owned()
        };
        match self {
            Self::Safe { name } => (
                pick("Safe on the server", "Trygt lagret på serveren", "Trygt lagra på tenaren"),
                match language {
                    Language::English => format!("\"{name}\" is safe on the server. Nothing more to do."),
                    Language::Bokmal => {
                        format!("«{name}» er trygt lagret på serveren. Du trenger ikke gjøre mer.")
                    }
                    Language::Nynorsk => {
                        format!("«{name}» er trygt lagra på tenaren. Du treng ikkje gjere meir.")
                    }
                },
            ),
            Self::NeedsTeacher { name, message } => (
                pick("Upload needs you", "Opplastingen trenger deg", "Opplastinga treng deg"),
                match language {
                    Language::English => {
                        format!("\"{name}\" was not uploaded. {message} Then choose Retry in the Library.")
                    }
                    // The engine's reason is English: the Library says it in
                    // the teacher's language instead.
                    Language::Bokmal => format!(
                        "«{name}» ble ikke lastet opp. Åpne Biblioteket for å se hvorfor, og velg så Prøv igjen."
                    ),
                    Language::Nynorsk => format!(
                        "«{name}» vart ikkje lasta opp. Opne Biblioteket for å sjå kvifor, og vel så Prøv igjen."
                    ),
                },
            ),
            Self::MicrophoneSilent => (
                pick("The microphone is silent", "Mikrofonen er stille", "Mikrofonen er stille"),
                pick(
                    "Nothing has been heard for 30 seconds while recording. Check that the microphone is on and not muted.",
                    "Ingenting er hørt på 30 sekunder mens opptaket går. Sjekk at mikrofonen er på og ikke dempet.",
                    "Ingenting er høyrt på 30 sekund medan opptaket går. Sjekk at mikrofonen er på og ikkje dempa.",
                ),
            ),
            Self::UploadContinuesNextStart => (
                pick("Opptak has closed", "Opptak er avsluttet", "Opptak er avslutta"),
                pick(
                    "Not every recording is on the server yet. The upload goes on by itself the next time Opptak starts.",
                    "Ikke alle opptakene er på serveren ennå. Opplastingen fortsetter av seg selv neste gang Opptak starter.",
                    "Ikkje alle opptaka er på tenaren enno. Opplastinga held fram av seg sjølv neste gong Opptak startar.",
                ),
            ),
        }
    }
}

/// Where a recording was, as far as notifications care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Anything before "safe" or "needs the teacher".
    OnItsWay,
    /// Safe on the server.
    Safe,
    /// Failed in a way only the teacher can fix.
    NeedsTeacher,
}

impl Seen {
    fn of(status: &LibraryStatus) -> Self {
        match status {
            LibraryStatus::Safe => Self::Safe,
            LibraryStatus::Failed { needs_teacher: true, .. } => Self::NeedsTeacher,
            _ => Self::OnItsWay,
        }
    }
}

/// Turns successive Library lists into notifications: one per transition
/// into "safe" or "needs the teacher", none for what was already so in the
/// first list (the app's start), none for progress.
#[derive(Debug, Default)]
pub struct Transitions {
    /// Each recording's last state; `None` before the first list.
    seen: Option<HashMap<i64, Seen>>,
}

impl Transitions {
    /// The notifications that `library`, the newest list, gives.
    pub fn next(&mut self, library: &[LibraryEntry]) -> Vec<Notice> {
        let now: HashMap<i64, Seen> =
            library.iter().map(|entry| (entry.id, Seen::of(&entry.status))).collect();
        let Some(before) = self.seen.replace(now) else { return Vec::new() };
        library
            .iter()
            .filter_map(|entry| {
                let state = Seen::of(&entry.status);
                // A recording first listed after the start is new: reaching
                // "safe" before the Library was read again still counts.
                if before.get(&entry.id) == Some(&state) {
                    return None;
                }
                match (&entry.status, state) {
                    (_, Seen::Safe) => Some(Notice::Safe { name: entry.name.clone() }),
                    (LibraryStatus::Failed { message, .. }, Seen::NeedsTeacher) => {
                        Some(Notice::NeedsTeacher { name: entry.name.clone(), message: message.clone() })
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

/// Follows the microphone's silence while recording: told once per silence
/// that lasts `silent_for` ([`MICROPHONE_SILENT_FOR`] in the app).
#[derive(Debug)]
pub struct SilenceWatch {
    silent_for: Duration,
    /// When the running silence began, and whether the teacher was told.
    silent_since: Option<(Instant, bool)>,
}

impl Default for SilenceWatch {
    fn default() -> Self {
        Self::new(MICROPHONE_SILENT_FOR)
    }
}

impl SilenceWatch {
    /// Tells of a silence once it has lasted `silent_for`.
    pub fn new(silent_for: Duration) -> Self {
        Self { silent_for, silent_since: None }
    }

    /// The recorder reported silence at `at` (it began
    /// [`SILENCE_REPORTED_AFTER`] earlier).
    pub fn silence_started(&mut self, at: Instant) {
        if self.silent_since.is_none() {
            let began = at.checked_sub(SILENCE_REPORTED_AFTER).unwrap_or(at);
            self.silent_since = Some((began, false));
        }
    }

    /// Sound is back, or the recording paused or stopped: a later silence
    /// is a new one.
    pub fn silence_ended(&mut self) {
        self.silent_since = None;
    }

    /// When to look again with [`SilenceWatch::due`]; `None`: nothing to wait for.
    pub fn deadline(&self) -> Option<Instant> {
        match self.silent_since {
            Some((began, false)) => Some(began + self.silent_for),
            _ => None,
        }
    }

    /// The notification due at `now`, at most once per silence.
    pub fn due(&mut self, now: Instant) -> Option<Notice> {
        let (began, told) = self.silent_since.as_mut()?;
        if *told || now < *began + self.silent_for {
            return None;
        }
        *told = true;
        Some(Notice::MicrophoneSilent)
    }
}

/// Shows notices: the notification plugin in the app, a list in tests.
pub type Show = Arc<dyn Fn(Notice) + Send + Sync>;

/// Shows `notice` as a desktop notification from `app`, in `language`.
pub fn show<R: Runtime>(app: &AppHandle<R>, notice: &Notice, language: Language) {
    let (title, body) = notice.text(language);
    if let Err(err) = app.notification().builder().title(&title).body(&body).show() {
        tracing::warn!(error = %err, title, "the notification could not be shown");
    } else {
        tracing::info!(title, body, "notification shown");
    }
}

/// Follows the Library from the moment it was made: what is already safe or
/// needs the teacher then is not told again.
#[derive(Debug)]
pub struct Follower {
    library: watch::Receiver<Vec<LibraryEntry>>,
    transitions: Transitions,
}

impl Follower {
    /// Reads the Library now, as the starting point.
    pub async fn start(engine: &AppEngine) -> Result<Self, opptak_core::Error> {
        let mut library = engine.library().watch().await?;
        let mut transitions = Transitions::default();
        transitions.next(&library.borrow_and_update());
        Ok(Self { library, transitions })
    }

    /// Notifies each transition through `show` until the Library stops
    /// (the app is closing).
    pub async fn run(mut self, show: Show) {
        while self.library.changed().await.is_ok() {
            let entries = self.library.borrow_and_update().clone();
            for notice in self.transitions.next(&entries) {
                show(notice);
            }
        }
    }
}

/// Tells the teacher through `show` when the running recording's
/// microphone has been silent for `silent_for`, whoever started the
/// recording (window, tray or shortcut), until the app closes.
pub async fn follow_silence(engine: Arc<AppEngine>, show: Show, silent_for: Duration) {
    let mut library = match engine.library().watch().await {
        Ok(library) => library,
        Err(err) => {
            tracing::error!(error = %err, "the silence notification cannot follow the recordings");
            return;
        }
    };
    loop {
        // A recording starting changes the Library: look for one each time.
        if let Some(mut events) = engine.recorder_events().await {
            let mut watch = SilenceWatch::new(silent_for);
            loop {
                let deadline = watch.deadline();
                let due = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    event = events.recv() => match event {
                        Ok(SessionEvent::Capture(CaptureEvent::SilenceStarted { .. })) => {
                            watch.silence_started(Instant::now());
                        }
                        Ok(SessionEvent::Capture(
                            CaptureEvent::SilenceEnded | CaptureEvent::Paused | CaptureEvent::DeviceLost { .. },
                        )) => watch.silence_ended(),
                        Ok(SessionEvent::Capture(CaptureEvent::Stopped { .. }))
                        | Err(broadcast::error::RecvError::Closed) => break,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    },
                    () = due => {
                        if let Some(notice) = watch.due(Instant::now()) {
                            show(notice);
                        }
                    }
                }
            }
        }
        if library.changed().await.is_err() {
            return;
        }
    }
}

/// Starts the app's notifications (called once the app runs).
pub fn setup<R: Runtime>(app: &AppHandle<R>, engine: Arc<AppEngine>) {
    let app = app.clone();
    // Each notice speaks the language chosen when it is shown.
    let show: Show = Arc::new(move |notice| {
        let language = app.state::<crate::controls::Desktop>().language();
        show(&app, &notice, language);
    });
    tauri::async_runtime::spawn(follow_silence(engine.clone(), show.clone(), MICROPHONE_SILENT_FOR));
    tauri::async_runtime::spawn(async move {
        match Follower::start(&engine).await {
            Ok(follower) => follower.run(show).await,
            Err(err) => tracing::error!(error = %err, "notifications cannot follow the recordings"),
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn entry(id: i64, name: &str, status: LibraryStatus) -> LibraryEntry {
        LibraryEntry {
            id,
            name: name.to_owned(),
            created_at: 0,
            length_seconds: None,
            size_bytes: 0,
            destination: None,
            path: String::new(),
            content_type: "audio/wav".to_owned(),
            has_local_file: true,
            link: None,
            status,
        }
    }

    fn uploading(sent: u64) -> LibraryStatus {
        LibraryStatus::Uploading {
            sent_bytes: sent,
            total_bytes: 100,
            bytes_per_second: None,
            seconds_left: None,
        }
    }

    fn failed(needs_teacher: bool) -> LibraryStatus {
        LibraryStatus::Failed {
            code: "token_refused".into(),
            message: "The server refused the key.".into(),
            needs_teacher,
        }
    }

    #[test]
    fn what_was_already_so_at_the_start_is_not_notified() {
        let mut transitions = Transitions::default();
        let start = [entry(1, "Old safe", LibraryStatus::Safe), entry(2, "Old failed", failed(true))];
        assert_eq!(transitions.next(&start), []);
        assert_eq!(transitions.next(&start), [], "nothing changed");
    }

    #[test]
    fn one_safe_notification_per_recording_not_per_progress_tick() {
        let mut transitions = Transitions::default();
        assert_eq!(transitions.next(&[entry(3, "Lesson 7B", LibraryStatus::Recording)]), []);
        for sent in [10, 50, 90] {
            assert_eq!(transitions.next(&[entry(3, "Lesson 7B", uploading(sent))]), [], "{sent}");
        }
        assert_eq!(transitions.next(&[entry(3, "Lesson 7B", LibraryStatus::Checking)]), []);
        let safe = [entry(3, "Lesson 7B", LibraryStatus::Safe)];
        assert_eq!(transitions.next(&safe), [Notice::Safe { name: "Lesson 7B".into() }]);
        assert_eq!(transitions.next(&safe), [], "told once");
        let renamed = [entry(3, "Chemistry", LibraryStatus::Safe)];
        assert_eq!(transitions.next(&renamed), [], "a rename is no new transition");
    }

    #[test]
    fn a_recording_new_since_the_start_and_already_safe_is_notified() {
        let mut transitions = Transitions::default();
        assert_eq!(transitions.next(&[]), []);
        let listed = [entry(4, "Uploaded file", LibraryStatus::Safe)];
        assert_eq!(transitions.next(&listed), [Notice::Safe { name: "Uploaded file".into() }]);
    }

    #[test]
    fn only_failures_that_need_the_teacher_are_notified_each_time_they_happen() {
        let mut transitions = Transitions::default();
        assert_eq!(transitions.next(&[entry(5, "Lesson", uploading(10))]), []);
        assert_eq!(transitions.next(&[entry(5, "Lesson", failed(false))]), [], "retried by itself");
        let needs = vec![Notice::NeedsTeacher {
            name: "Lesson".into(),
            message: "The server refused the key.".into(),
        }];
        assert_eq!(transitions.next(&[entry(5, "Lesson", failed(true))]), needs);
        assert_eq!(transitions.next(&[entry(5, "Lesson", failed(true))]), []);
        // The teacher retries; it fails the same way again: a new transition.
        assert_eq!(transitions.next(&[entry(5, "Lesson", uploading(0))]), []);
        assert_eq!(transitions.next(&[entry(5, "Lesson", failed(true))]), needs);
        assert_eq!(
            transitions.next(&[entry(5, "Lesson", LibraryStatus::Safe)]),
            [Notice::Safe { name: "Lesson".into() }]
        );
    }

    #[test]
    fn silence_is_told_once_thirty_seconds_after_it_began() {
        let start = Instant::now();
        let mut watch = SilenceWatch::default();
        assert_eq!((watch.deadline(), watch.due(start + Duration::from_secs(60))), (None, None));
        // Reported 10 s into the silence.
        watch.silence_started(start + SILENCE_REPORTED_AFTER);
        assert_eq!(watch.deadline(), Some(start + MICROPHONE_SILENT_FOR));
        assert_eq!(watch.due(start + Duration::from_secs(29)), None);
        assert_eq!(watch.due(start + Duration::from_secs(30)), Some(Notice::MicrophoneSilent));
        assert_eq!(watch.due(start + Duration::from_secs(90)), None, "once per silence");
        assert_eq!(watch.deadline(), None);
        watch.silence_ended();
        watch.silence_started(start + Duration::from_secs(100));
        assert_eq!(watch.due(start + Duration::from_secs(115)), None);
        watch.silence_ended();
        assert_eq!(watch.due(start + Duration::from_secs(200)), None, "sound came back in time");
        watch.silence_started(start + Duration::from_secs(210));
        assert_eq!(watch.due(start + Duration::from_secs(230)), Some(Notice::MicrophoneSilent));
    }

    /// A real recording of a silent (virtual) microphone, started as the
    /// tray starts one: the teacher is told once, `silent_for` after the
    /// silence began, and not again while it lasts.
    #[test]
    fn a_silent_microphone_is_told_once_while_recording() {
        if crate::test_support::ran_in_a_child(
            "notify::tests::a_silent_microphone_is_told_once_while_recording",
        ) {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let engine = Arc::new(
            tauri::async_runtime::block_on(AppEngine::open(&opptak_core::DataDir::at(temp.path()))).unwrap(),
        );
        let shown: Arc<Mutex<Vec<(Notice, Instant)>>> = Arc::default();
        let sink = shown.clone();
        let show: Show = Arc::new(move |notice| sink.lock().unwrap().push((notice, Instant::now())));
        // Reported 10 s into the silence, told 1 s later.
        let silent_for = SILENCE_REPORTED_AFTER + Duration::from_secs(1);
        tauri::async_runtime::spawn(follow_silence(engine.clone(), show, silent_for));

        let started = Instant::now();
        tauri::async_runtime::block_on(crate::controls::start(&engine)).unwrap();
        let deadline = started + Duration::from_secs(25);
        while shown.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no notification in 25 s of silence");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(2));
        tauri::async_runtime::block_on(engine.stop()).unwrap();
        let shown = shown.lock().unwrap();
        let (notice, at) = shown.first().unwrap();
        let after = at.duration_since(started);
        eprintln!("told of the silence {after:.1?} after the recording started");
        assert_eq!((shown.len(), notice), (1, &Notice::MicrophoneSilent), "{shown:?}");
        // The recorder counts the silence in samples, which the sound
        // server may hand over a buffer ahead of the wall clock.
        let early = Duration::from_millis(500);
        assert!(after + early >= silent_for && after < silent_for + Duration::from_secs(5), "{after:?}");
    }

    #[test]
    fn every_notice_has_its_text_in_each_language() {
        let notices = [
            Notice::Safe { name: "Lesson 7B".into() },
            Notice::NeedsTeacher { name: "Lesson 7B".into(), message: "The server refused the key.".into() },
            Notice::MicrophoneSilent,
            Notice::UploadContinuesNextStart,
        ];
        for notice in &notices {
            let texts: Vec<_> = Language::ALL.into_iter().map(|language| notice.text(language)).collect();
            for (title, body) in &texts {
                assert!(!title.is_empty() && body.ends_with('.'), "{title}: {body}");
                if !matches!(notice, Notice::MicrophoneSilent | Notice::UploadContinuesNextStart) {
                    assert!(body.contains("Lesson 7B"), "{body}");
                }
            }
            assert_ne!(texts[0].1, texts[1].1, "bokmål and nynorsk differ: {notice:?}");
            assert_ne!(texts[0].1, texts[2].1, "Norwegian and English differ: {notice:?}");
        }
        assert_eq!(notices[0].text(Language::English).0, "Safe on the server");
    }

    /// A real recording file uploaded to the server inside the app, through
    /// the app's command, gives exactly one "safe" notification.
    #[test]
    fn a_recording_uploaded_to_the_embedded_server_is_notified_safe_once() {
        let temp = tempfile::tempdir().unwrap();
        // An older recording already safe at the start must not be told.
        let data = temp.path().join("data");
        let old = temp.path().join("old.wav");
        write_wav(&old);
        let engine =
            tauri::async_runtime::block_on(AppEngine::open(&opptak_core::DataDir::at(&data))).unwrap();
        let engine = Arc::new(engine);
        let old_id = tauri::async_runtime::block_on(engine.upload_file(&old)).unwrap();
        wait_until_safe(&engine, old_id);

        let (_app, webview) = crate::test_support::mock_window(&data, Ok(engine.clone()));
        let shown: Arc<Mutex<Vec<Notice>>> = Arc::default();
        let sink = shown.clone();
        let show: Show = Arc::new(move |notice| sink.lock().unwrap().push(notice));
        let follower = tauri::async_runtime::block_on(Follower::start(&engine)).unwrap();
        tauri::async_runtime::spawn(follower.run(show));

        let file = temp.path().join("Lesson 7B.wav");
        write_wav(&file);
        let args = serde_json::json!({"path": file.display().to_string()});
        let id = crate::test_support::call(&webview, "upload_file", args).unwrap().as_i64().unwrap();
        wait_until_safe(&engine, id);
        let deadline = Instant::now() + Duration::from_secs(10);
        while shown.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no notification");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Later Library changes (a rename) bring no second notification.
        crate::test_support::call(
            &webview,
            "rename_recording",
            serde_json::json!({"id": id, "name": "Renamed"}),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(*shown.lock().unwrap(), [Notice::Safe { name: "Lesson 7B".into() }]);
    }

    /// A one-second 8 kHz mono PCM WAV file.
    fn write_wav(path: &std::path::Path) {
        let data: Vec<u8> = (0..16_000u32).map(|n| (n % 97) as u8).collect();
        let mut file = Vec::new();
        file.extend_from_slice(b"RIFF");
        file.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        file.extend_from_slice(b"WAVEfmt ");
        for field in [16u32.to_le_bytes().as_slice(), &1u16.to_le_bytes(), &1u16.to_le_bytes()] {
            file.extend_from_slice(field);
        }
        for field in [8000u32.to_le_bytes(), 16_000u32.to_le_bytes()] {
            file.extend_from_slice(&field);
        }
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&16u16.to_le_bytes());
        file.extend_from_slice(b"data");
        file.extend_from_slice(&(data.len() as u32).to_le_bytes());
        file.extend_from_slice(&data);
        std::fs::write(path, file).unwrap();
    }

    fn wait_until_safe(engine: &AppEngine, id: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = tauri::async_runtime::block_on(engine.library().refresh()).unwrap();
            if list.iter().any(|entry| entry.id == id && entry.status == LibraryStatus::Safe) {
                return;
            }
            assert!(Instant::now() < deadline, "not safe: {list:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
