//! Destinations: servers that recordings are uploaded to.
//!
//! A destination is identified by its base URL and token together: the
//! same pair always gets the same id, so sessions and recordings keep
//! pointing at it when its name changes. Opptak stores a *reference* to
//! the token in the `token` column (`sha256:<hex>` of it; the token itself
//! is in the operating system's credential store, which `opptak-core`
//! manages), so the journal holds no secret; journals written before that
//! hold the token itself until `opptak-core` moves it
//! ([`Journal::set_destination_token`]). The column is never printed by
//! `Debug`.

use std::fmt;

use rusqlite::{OptionalExtension, Row, params};

use crate::{Error, Journal, Result};

/// A server that recordings are uploaded to.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// The local id.
    pub id: i64,
    /// The API's base URL, as given.
    pub base_url: String,
    /// The token's reference (`sha256:<hex>`), or, in a journal an older
    /// Opptak wrote, the bearer token itself.
    pub token: String,
    /// The name shown to the teacher ("This computer", "School server").
    pub name: String,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("id", &self.id)
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("name", &self.name)
            .finish()
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Destination> {
    Ok(Destination { id: row.get(0)?, base_url: row.get(1)?, token: row.get(2)?, name: row.get(3)? })
}

pub(crate) fn ensure_exists(conn: &rusqlite::Connection, id: i64) -> Result<()> {
    let found: Option<i64> =
        conn.query_row("SELECT id FROM destinations WHERE id = ?1", [id], |row| row.get(0)).optional()?;
    found.map(|_| ()).ok_or(Error::UnknownDestination(id))
}

impl Journal {
    /// Adds a destination, or renames the one with the same URL and token;
    /// returns its id (the same id for the same URL and token).
    pub fn upsert_destination(&self, base_url: &str, token: &str, name: &str) -> Result<i64> {
        if base_url.trim().is_empty() {
            return Err(Error::Invalid("a destination needs a base URL".into()));
        }
        self.write(|tx| {
            Ok(tx.query_row(
                "INSERT INTO destinations (base_url, token, name) VALUES (?1, ?2, ?3)
                 ON CONFLICT (base_url, token) DO UPDATE SET name = excluded.name
                 RETURNING id",
                params![base_url, token, name],
                |row| row.get(0),
            )?)
        })
    }

    /// Replaces destination `id`'s token column (with the token's
    /// reference, once the token is kept elsewhere), and leaves no copy of
    /// the old value in the file: SQLite's `secure_delete` zeroes the space
    /// it freed, and a `TRUNCATE` checkpoint writes the page home and
    /// empties the WAL (when another process reads the journal just then,
    /// the old page is overwritten at a later checkpoint). Fails when
    /// another destination already has the same URL and value.
    pub fn set_destination_token(&self, id: i64, token: &str) -> Result<()> {
        // A connection of its own: these pragmas must not linger on the
        // shared one, and a checkpoint cannot run inside its transactions.
        let conn = rusqlite::Connection::open(self.path())?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        ensure_exists(&conn, id)?;
        conn.execute("UPDATE destinations SET token = ?2 WHERE id = ?1", params![id, token])?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// The destination with this id.
    pub fn destination(&self, id: i64) -> Result<Option<Destination>> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT id, base_url, token, name FROM destinations WHERE id = ?1", [id], from_row)
                .optional()?)
        })
    }

    /// Every destination, in the order they were added.
    pub fn destinations(&self) -> Result<Vec<Destination>> {
        self.read(|conn| {
            let mut statement =
                conn.prepare("SELECT id, base_url, token, name FROM destinations ORDER BY id")?;
            let rows = statement.query_map([], from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::journal;

    #[test]
    fn the_same_url_and_token_is_the_same_destination() {
        let (_temp, journal) = journal();
        let local = journal.upsert_destination("http://127.0.0.1:8080", "secret", "This computer").unwrap();
        let again =
            journal.upsert_destination("http://127.0.0.1:8080", "secret", "Denne datamaskinen").unwrap();
        assert_eq!(local, again);
        let other_token =
            journal.upsert_destination("http://127.0.0.1:8080", "other", "This computer").unwrap();
        let school = journal.upsert_destination("https://school.example", "secret", "School server").unwrap();
        assert_ne!(local, other_token);
        assert_ne!(local, school);

        let read = journal.destination(local).unwrap().unwrap();
        assert_eq!(
            (read.id, read.base_url.as_str(), read.token.as_str(), read.name.as_str()),
            (local, "http://127.0.0.1:8080", "secret", "Denne datamaskinen")
        );
        let names: Vec<String> = journal.destinations().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["Denne datamaskinen", "This computer", "School server"]);
        assert_eq!(journal.destination(school + 100).unwrap(), None);
        assert!(journal.upsert_destination(" ", "t", "x").is_err());
    }

    #[test]
    fn a_token_is_replaced_by_its_reference_in_place() {
        let (_temp, journal) = journal();
        let id = journal.upsert_destination("http://x", "raw-token", "x").unwrap();
        let taken = journal.upsert_destination("http://x", "sha256:taken", "x").unwrap();
        journal.set_destination_token(id, "sha256:abc").unwrap();
        assert_eq!(journal.destination(id).unwrap().unwrap().token, "sha256:abc");
        assert_eq!(journal.upsert_destination("http://x", "sha256:abc", "x").unwrap(), id, "same identity");
        assert!(journal.set_destination_token(id, "sha256:taken").is_err(), "{taken} has it");
        assert!(matches!(
            journal.set_destination_token(id + 100, "t"),
            Err(crate::Error::UnknownDestination(_))
        ));
        for name in ["journal.sqlite3", "journal.sqlite3-wal"] {
            let bytes = std::fs::read(journal.path().with_file_name(name)).unwrap_or_default();
            assert!(!bytes.windows(9).any(|window| window == b"raw-token"), "{name} keeps the old token");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let (_temp, journal) = journal();
        let id = journal.upsert_destination("http://x", "hunter2-token", "x").unwrap();
        let debug = format!("{:?}", journal.destination(id).unwrap().unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("http://x"), "{debug}");
    }
}
