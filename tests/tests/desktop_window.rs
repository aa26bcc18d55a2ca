//! The window's size and place are remembered (`tauri-plugin-window-state`):
//! the window is moved and resized on the X server as a window manager does,
//! the app is closed the way a teacher closes it (not recording: at once),
//! and the next launch, with the same data and XDG folders, opens the window
//! at the same place with the same size.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use opptak_tests::desktop::{Desktop, WAIT, WindowManager, poll, testid};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConfigureWindowAux, ConnectionExt as _};

/// How far the read-back place and size may be off, in pixels.
const TOLERANCE: i64 = 4;

/// Where the test puts the window and how big it makes it: x, y, width,
/// height. Inside Xvfb's 1280×800, above the window's minimum size
/// (720×520) and unlike its first size (1100×720).
const WANTED: (i32, i32, u32, u32) = (130, 70, 860, 600);

fn near(found: (i32, i32, u32, u32), wanted: (i32, i32, u32, u32)) -> bool {
    let differences = [
        i64::from(found.0) - i64::from(wanted.0),
        i64::from(found.1) - i64::from(wanted.1),
        i64::from(found.2) - i64::from(wanted.2),
        i64::from(found.3) - i64::from(wanted.3),
    ];
    differences.iter().all(|difference| difference.abs() <= TOLERANCE)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_windows_size_and_place_are_the_same_after_closing_and_opening_again() {
    let Some(mut desktop) = Desktop::with().session_bus().exit_status().open().await else { return };
    let window_manager = WindowManager::connect(desktop.xvfb.display()).unwrap();

    let result = async {
        let client = &desktop.client;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        let app = desktop.app_pid()?;
        let window = window_manager.window_of(app)?;
        let first = window_manager.geometry(window)?;
        eprintln!("first launch: the window is at {first:?}");
        anyhow::ensure!(!near(first, WANTED), "the window must start elsewhere than {WANTED:?}");

        // Moved and resized as a window manager does it: the app hears a
        // ConfigureNotify, as it would from a teacher's drag.
        let (x, y, width, height) = WANTED;
        let (connection, _) = x11rb::connect(Some(desktop.xvfb.display()))?;
        let change = ConfigureWindowAux::new().x(x).y(y).width(width).height(height);
        connection.configure_window(window, &change)?;
        connection.flush()?;
        poll("the window takes its new place and size", WAIT, || async {
            Ok(near(window_manager.geometry(window)?, WANTED))
        })
        .await?;
        // The app's own idea of its window (what the plugin saves) follows
        // the X server's; ask the page until it agrees.
        poll("the app sees its new size", WAIT, || async {
            let size = client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await?;
            let (width, height) = (size[0].as_i64().unwrap_or(0), size[1].as_i64().unwrap_or(0));
            Ok((width - i64::from(WANTED.2)).abs() <= TOLERANCE
                && (height - i64::from(WANTED.3)).abs() <= TOLERANCE)
        })
        .await?;

        // Closed while not recording: it closes at once and the app exits cleanly.
        window_manager.ask_to_close(app)?;
        let status = desktop.exit.as_ref().expect("asked for").wait(WAIT).await?;
        anyhow::ensure!(status == 0, "the app exits with 0, not {status}");
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
    let saved = desktop.data_dir().join(".xdg/config/no.opptak.desktop/.window-state.json");
    let state = std::fs::read_to_string(&saved).unwrap_or_else(|err| panic!("{}: {err}", saved.display()));
    eprintln!("saved window state: {state}");

    // The next launch, with the same folders.
    desktop.relaunch().await;
    let result = async {
        let client = &desktop.client;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        let app = desktop.app_pid()?;
        let started = Instant::now();
        let mut found = None;
        let restored =
            poll("the window opens where it was, as big as it was", Duration::from_secs(10), || {
                let geometry =
                    window_manager.window_of(app).and_then(|window| window_manager.geometry(window));
                if let Ok(geometry) = geometry {
                    found = Some(geometry);
                }
                async move { Ok(geometry.is_ok_and(|geometry| near(geometry, WANTED))) }
            })
            .await;
        eprintln!("second launch: the window is at {found:?} after {:?}", started.elapsed());
        restored.map_err(|err| anyhow::anyhow!("{err}: at {found:?}, not {WANTED:?}"))
    }
    .await;
    desktop.end_session(result).await;
}
