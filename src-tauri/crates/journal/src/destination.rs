//! Destinations: servers that recordings are uploaded to.
//!
//! A destination is identified by its base URL and token together: the
//! same pair always gets the same id, so sessions and recordings keep
//! pointing at it when its name changes. The token is stored as given (the
//! journal lives in the user's own data directory) and is never printed by
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
    /// The bearer token.
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
    fn debug_never_shows_the_token() {
        let (_temp, journal) = journal();
        let id = journal.upsert_destination("http://x", "hunter2-token", "x").unwrap();
        let debug = format!("{:?}", journal.destination(id).unwrap().unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("http://x"), "{debug}");
    }
}
