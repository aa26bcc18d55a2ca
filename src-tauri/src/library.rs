//! The Library's commands: the recordings and where each one is, live over
//! a `Channel`, and what the teacher can do with one. Each calls the
//! engine's [`opptak_core::Library`].

use opptak_core::LibraryEntry;
use tauri::State;
use tauri::ipc::Channel;

use crate::{AppState, CommandError};

/// Engine errors with the codes the Library screen branches on.
fn library_error(err: opptak_core::Error) -> CommandError {
    use opptak_core::Error as Engine;
    let code = match &err {
        Engine::UnknownRecording(_) => "unknown_recording",
        Engine::OnlyCopy { .. } => "only_copy",
        Engine::NotRetryable { .. } => "not_retryable",
        Engine::StillRecording { .. } => "still_recording",
        Engine::BlankName => "blank_name",
        Engine::Delete { .. } => "delete_failed",
        Engine::File { .. } | Engine::UnknownKind { .. } => "not_a_recording_file",
        _ => return err.into(),
    };
    CommandError::new(code, err.to_string())
}

/// Every recording, newest first, with where it is.
#[tauri::command]
#[specta::specta]
pub async fn list_recordings(state: State<'_, AppState>) -> Result<Vec<LibraryEntry>, CommandError> {
    state.engine()?.library().refresh().await.map_err(library_error)
}

/// Sends the Library on `on_change` now and again each time it changes,
/// until the window is gone. A slow window skips to the newest state.
#[tauri::command]
#[specta::specta]
pub async fn watch_library(
    state: State<'_, AppState>,
    on_change: Channel<Vec<LibraryEntry>>,
) -> Result<(), CommandError> {
    let mut library = state.engine()?.library().watch().await.map_err(library_error)?;
    // The current list goes out before the command returns, so a screen that
    // subscribes never renders an empty Library while the list is on its way.
    let current = library.borrow_and_update().clone();
    if on_change.send(current).is_err() {
        return Ok(()); // the window that asked is gone
    }
    tauri::async_runtime::spawn(async move {
        while library.changed().await.is_ok() {
            let entries = library.borrow_and_update().clone();
            if on_change.send(entries).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Gives a recording a new name (the file keeps its own).
#[tauri::command]
#[specta::specta]
pub async fn rename_recording(state: State<'_, AppState>, id: i64, name: String) -> Result<(), CommandError> {
    state.engine()?.library().rename(id, &name).await.map_err(library_error)
}

/// Deletes a recording's file on this computer: at once when it is safe on
/// the server; when it is the only copy, only with `confirmed_only_copy`
/// (else the error `only_copy`).
#[tauri::command]
#[specta::specta]
pub async fn delete_local_copy(
    state: State<'_, AppState>,
    id: i64,
    confirmed_only_copy: bool,
) -> Result<(), CommandError> {
    state.engine()?.library().delete_local_copy(id, confirmed_only_copy).await.map_err(library_error)
}

/// Starts a failed recording's upload again.
#[tauri::command]
#[specta::specta]
pub async fn retry_recording(state: State<'_, AppState>, id: i64) -> Result<(), CommandError> {
    state.engine()?.library().retry(id).await.map_err(library_error)
}

/// Uploads an existing recording file, as `opptak upload` does; returns
/// its id in the Library.
#[tauri::command]
#[specta::specta]
pub async fn upload_file(state: State<'_, AppState>, path: String) -> Result<i64, CommandError> {
    state.engine()?.upload_file(std::path::Path::new(&path)).await.map_err(library_error)
}

/// The recording's link on its server, when the server has it.
#[tauri::command]
#[specta::specta]
pub async fn recording_link(state: State<'_, AppState>, id: i64) -> Result<Option<String>, CommandError> {
    state.engine()?.library().link(id).await.map_err(library_error)
}

/// How the folder of a file is shown: set by the real app
/// ([`use_the_file_manager`]); the mock-runtime tests leave it unset, so
/// they exercise everything up to the file manager without opening one.
static FILE_MANAGER: std::sync::OnceLock<ShowInFolder> = std::sync::OnceLock::new();

/// Shows a file in its folder, or says why it could not.
type ShowInFolder = fn(&std::path::Path) -> Result<(), String>;

/// Makes `reveal_recording` open the computer's file manager.
pub fn use_the_file_manager() {
    let _ =
        FILE_MANAGER.set(|path| tauri_plugin_opener::reveal_item_in_dir(path).map_err(|err| err.to_string()));
}

/// Recording `id`'s Library entry; refused, saying `so`, when its file is
/// not on this computer any more.
async fn local_entry(state: &AppState, id: i64, so: &str) -> Result<opptak_core::LibraryEntry, CommandError> {
    let entries = state.engine()?.library().refresh().await.map_err(library_error)?;
    let entry = entries
        .into_iter()
        .find(|entry| entry.id == id)
        .ok_or_else(|| library_error(opptak_core::Error::UnknownRecording(id)))?;
    if !entry.has_local_file {
        return Err(CommandError::new(
            "no_local_file",
            format!("The file of \"{}\" is not on this computer any more, so {so}.", entry.name),
        ));
    }
    Ok(entry)
}

/// Where the window plays recording `id` from: a loopback address that
/// streams the file in the pieces the player asks for.
#[tauri::command]
#[specta::specta]
pub async fn play_recording(state: State<'_, AppState>, id: i64) -> Result<String, CommandError> {
    local_entry(&state, id, "it cannot be played here").await?;
    Ok(state.engine()?.playback().await?.recording_url(id))
}

/// Opens the folder that holds the recording's file, with the file selected.
#[tauri::command]
#[specta::specta]
pub async fn reveal_recording(state: State<'_, AppState>, id: i64) -> Result<(), CommandError> {
    let entry = local_entry(&state, id, "there is no folder to open").await?;
    let path = std::path::PathBuf::from(&entry.path);
    let Some(show) = FILE_MANAGER.get() else { return Ok(()) };
    show(&path).map_err(|err| {
        CommandError::new(
            "open_folder_failed",
            format!("The folder could not be opened ({err}). The file is at {}.", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use opptak_core::{AppEngine, DataDir};
    use serde_json::{Value, json};
    use tauri::Manager;
    use tauri::ipc::InvokeResponseBody;
    use tauri::test::MockRuntime;

    use super::*;

    struct Window {
        app: tauri::App<MockRuntime>,
        webview: tauri::WebviewWindow<MockRuntime>,
    }

    impl Window {
        /// The app over `data_dir`, uploading to the server inside it when
        /// `with_server`, else nowhere.
        fn open(data_dir: &Path, with_server: bool) -> Self {
            let dir = DataDir::at(data_dir);
            let engine = if with_server {
                tauri::async_runtime::block_on(AppEngine::open(&dir)).map_err(CommandError::from)
            } else {
                opptak_core::Opptak::open(&dir)
                    .map(|opptak| AppEngine::with_destination(opptak, None, "nowhere (test)".into()))
                    .map_err(CommandError::from)
            };
            let (app, webview) = crate::test_support::mock_window(data_dir, engine.map(Arc::new));
            Self { app, webview }
        }

        fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
            crate::test_support::call(&self.webview, cmd, args)
        }

        fn code(&self, cmd: &str, args: Value) -> String {
            let err = self.call(cmd, args).expect_err(cmd);
            let message = err["message"].as_str().unwrap();
            assert!(message.ends_with('.') && !message.contains("--"), "{cmd}: {message}");
            err["code"].as_str().unwrap().to_owned()
        }

        fn entry(&self, id: i64) -> Option<Value> {
            let list = self.call("list_recordings", json!({})).unwrap();
            list.as_array().unwrap().iter().find(|entry| entry["id"] == id).cloned()
        }

        /// Polls the list (at most 20 s) until recording `id` is in `state`.
        fn wait_for_state(&self, id: i64, state: &str) -> Value {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let entry = self.entry(id).expect("listed");
                if entry["status"]["state"] == state {
                    return entry;
                }
                assert!(Instant::now() < deadline, "not {state}: {entry}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn wav(path: &Path) {
        // A 44-byte PCM header (8 kHz mono 16-bit) and one second of samples.
        let data: Vec<u8> = (0..16_000u32).map(|n| (n % 97) as u8).collect();
        let mut file = Vec::new();
        file.extend_from_slice(b"RIFF");
        file.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        file.extend_from_slice(b"WAVEfmt ");
        file.extend_from_slice(&16u32.to_le_bytes());
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&8000u32.to_le_bytes());
        file.extend_from_slice(&16_000u32.to_le_bytes());
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&16u16.to_le_bytes());
        file.extend_from_slice(b"data");
        file.extend_from_slice(&(data.len() as u32).to_le_bytes());
        file.extend_from_slice(&data);
        std::fs::write(path, file).unwrap();
    }

    #[test]
    fn an_uploaded_file_is_listed_watched_renamed_linked_revealed_and_its_safe_copy_deleted() {
        let temp = tempfile::tempdir().unwrap();
        let window = Window::open(&temp.path().join("data"), true);
        let file = temp.path().join("Lesson 4.wav");
        wav(&file);

        // The Library's stream: the current list first, then every change.
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = seen.clone();
        let channel = Channel::new(move |body| {
            let InvokeResponseBody::Json(json) = body else { panic!("a JSON message") };
            sink.lock().unwrap().push(serde_json::from_str(&json).unwrap());
            Ok(())
        });
        tauri::async_runtime::block_on(watch_library(window.app.state(), channel)).unwrap();
        assert_eq!(seen.lock().unwrap().first(), Some(&json!([])), "the first message is the current list");

        let id = window.call("upload_file", json!({"path": file.display().to_string()})).unwrap();
        let id = id.as_i64().unwrap();
        let entry = window.wait_for_state(id, "safe");
        assert_eq!(entry["name"], "Lesson 4");
        assert_eq!(entry["lengthSeconds"], 1.0);
        assert_eq!(entry["hasLocalFile"], true);
        assert_eq!(entry["destination"], "This computer");
        let link = window.call("recording_link", json!({"id": id})).unwrap();
        assert!(link.as_str().unwrap().starts_with("http://127.0.0.1:"), "{link}");
        assert_eq!(entry["link"], link);

        window.call("rename_recording", json!({"id": id, "name": "Chemistry 10A"})).unwrap();
        assert_eq!(window.entry(id).unwrap()["name"], "Chemistry 10A");
        window.call("reveal_recording", json!({"id": id})).unwrap();
        let play_url = window.call("play_recording", json!({"id": id})).unwrap();
        let play_url = play_url.as_str().unwrap();
        assert!(play_url.starts_with("http://127.0.0.1:"), "{play_url}");
        assert_eq!(window.call("play_recording", json!({"id": id})).unwrap(), play_url, "one server");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen.lock().unwrap().iter().any(|list| list[0]["name"] == "Chemistry 10A") {
            assert!(Instant::now() < deadline, "the rename reached the stream");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(seen.lock().unwrap().iter().any(|list| list[0]["status"]["state"] == "safe"));

        window.call("delete_local_copy", json!({"id": id, "confirmedOnlyCopy": false})).unwrap();
        assert!(!file.exists(), "a safe recording's file is deleted at once");
        let entry = window.entry(id).unwrap();
        assert_eq!((&entry["status"]["state"], &entry["hasLocalFile"]), (&json!("safe"), &json!(false)));
        assert_eq!(entry["lengthSeconds"], 1.0, "a lesson safe on the server keeps its length");
        // Also in an app started again, which never read the file's header.
        let reopened = opptak_core::Opptak::open(&DataDir::at(temp.path().join("data"))).unwrap();
        let reopened = AppEngine::with_destination(reopened, None, "nowhere (test)".into());
        let listed = tauri::async_runtime::block_on(reopened.library().refresh()).unwrap();
        let again = listed.iter().find(|entry| entry.id == id).expect("still listed");
        assert_eq!(again.length_seconds, Some(1.0), "the journal keeps the length");
        assert_eq!(window.code("reveal_recording", json!({"id": id})), "no_local_file");
        assert_eq!(window.code("play_recording", json!({"id": id})), "no_local_file");
        assert_eq!(window.code("retry_recording", json!({"id": id})), "not_retryable");
    }

    #[test]
    fn the_only_copy_is_deleted_only_when_confirmed_and_a_failed_upload_is_retried() {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let file = temp.path().join("kept.wav");
        wav(&file);
        let failed_file = temp.path().join("failed.wav");
        wav(&failed_file);
        let (kept, failed) = {
            let opptak = opptak_core::Opptak::open(&DataDir::at(&data)).unwrap();
            let add = |path: &Path, name: &str| {
                tauri::async_runtime::block_on(opptak.add_file(path, name, None)).unwrap().id
            };
            let (kept, failed) = (add(&file, "kept"), add(&failed_file, "failed"));
            opptak.journal().set_keep_local(kept, true).unwrap();
            let reason = Some(opptak_core::Problem::TokenRefused);
            let journal = opptak.journal();
            journal.set_state_because(failed, opptak_journal::RecordingState::Failed, reason, None).unwrap();
            (kept, failed)
        };
        let window = Window::open(&data, true);
        assert_eq!(window.entry(kept).unwrap()["status"]["state"], "onlyOnThisComputer");
        let failed_entry = window.entry(failed).unwrap();
        assert_eq!(failed_entry["status"]["code"], "token_refused");
        assert_eq!(failed_entry["status"]["needsTeacher"], true);

        assert_eq!(
            window.code("delete_local_copy", json!({"id": kept, "confirmedOnlyCopy": false})),
            "only_copy"
        );
        assert!(file.exists(), "kept until the teacher confirms");
        window.call("delete_local_copy", json!({"id": kept, "confirmedOnlyCopy": true})).unwrap();
        assert!(!file.exists());
        assert_eq!(window.entry(kept), None);

        window.call("retry_recording", json!({"id": failed})).unwrap();
        window.wait_for_state(failed, "safe");
    }

    #[test]
    fn an_uploaded_file_goes_to_the_default_destination_the_teacher_chose() {
        let temp = tempfile::tempdir().unwrap();
        let window = Window::open(&temp.path().join("data"), true);
        // A second Opptak's own server stands in for the school's: a real
        // upload API on 127.0.0.1 with its own token and its own storage.
        let school_dir = temp.path().join("school");
        let school = tauri::async_runtime::block_on(AppEngine::open(&DataDir::at(&school_dir))).unwrap();
        let school_url = school.this_computer().unwrap().client.base_url().to_owned();
        let token = std::fs::read_to_string(school_dir.join("server/embedded.token")).unwrap();
        let added = window
            .call("add_destination", json!({"name": "School", "url": school_url, "token": token.trim()}))
            .unwrap();
        window.call("set_default_destination", json!({"id": added["id"]})).unwrap();

        let file = temp.path().join("Lesson 5.wav");
        wav(&file);
        let id = window.call("upload_file", json!({"path": file.display().to_string()})).unwrap();
        let entry = window.wait_for_state(id.as_i64().unwrap(), "safe");
        assert_eq!(entry["destination"], school_url.as_str(), "{entry}");
        let link = entry["link"].as_str().unwrap();
        assert!(link.starts_with(&school_url), "the school server holds it: {link}");

        // The school server's storage holds the very bytes of the file.
        let sent = std::fs::read(&file).unwrap();
        let stored = files_under(&school_dir.join("server"))
            .into_iter()
            .filter(|path| path.extension().is_none_or(|ext| ext != "db" && ext != "token"))
            .any(|path| std::fs::read(&path).is_ok_and(|bytes| bytes == sent));
        assert!(stored, "the school server's storage holds the file");
    }

    fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() { pending.push(path) } else { found.push(path) }
            }
        }
        found
    }

    #[test]
    fn library_commands_answer_with_typed_errors() {
        let temp = tempfile::tempdir().unwrap();
        let window = Window::open(temp.path(), false);
        assert_eq!(window.call("list_recordings", json!({})).unwrap(), json!([]));
        for (cmd, args) in [
            ("rename_recording", json!({"id": 41, "name": "x"})),
            ("delete_local_copy", json!({"id": 41, "confirmedOnlyCopy": true})),
            ("retry_recording", json!({"id": 41})),
            ("recording_link", json!({"id": 41})),
            ("reveal_recording", json!({"id": 41})),
            ("play_recording", json!({"id": 41})),
        ] {
            assert_eq!(window.code(cmd, args), "unknown_recording", "{cmd}");
        }
        let notes = temp.path().join("notes.txt");
        std::fs::write(&notes, b"not audio").unwrap();
        let path = notes.display().to_string();
        assert_eq!(window.code("upload_file", json!({ "path": path })), "not_a_recording_file");
        let file = temp.path().join("a.wav");
        wav(&file);
        // No destination: the file cannot go anywhere, and the teacher is told so.
        assert_eq!(window.code("upload_file", json!({"path": file.display().to_string()})), "engine");

        let id = {
            let engine = window.app.state::<AppState>().engine().unwrap();
            tauri::async_runtime::block_on(engine.opptak().add_file(&file, "a", None)).unwrap().id
        };
        assert_eq!(window.code("rename_recording", json!({"id": id, "name": "  "})), "blank_name");
        assert_eq!(window.call("recording_link", json!({"id": id})).unwrap(), Value::Null);

        let blocked = temp.path().join("a.wav/data");
        let broken = Window::open(&blocked, false);
        // The engine's own words for this one still name the command-line option.
        let err = broken.call("list_recordings", json!({})).unwrap_err();
        assert_eq!(err["code"], "data_dir_unusable");
    }
}
