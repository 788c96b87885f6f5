//! A console result: named, typed columns and text rows, encoded as RowDescription, DataRows and
//! CommandComplete. Values are sent in text format with real type OIDs, so drivers that convert by
//! type (psycopg, pgx) get numbers and timestamps, and positional readers see PgBouncer's order.

use bytes::BytesMut;
use pgroute_protocol::backend;

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    /// `int8`: every counter and size.
    Int,
    /// `timestamptz`, in PostgreSQL's ISO text form.
    Timestamp,
}

impl Type {
    fn oid(self) -> u32 {
        match self {
            Type::Text => 25,
            Type::Int => 20,
            Type::Timestamp => 1184,
        }
    }
}

/// A value of a row.
pub type Cell = Option<String>;

/// Text cell.
pub fn text(v: impl Into<String>) -> Cell {
    Some(v.into())
}

/// Integer cell.
pub fn int(v: impl Into<i128>) -> Cell {
    Some(v.into().to_string())
}

/// Timestamp cell from microseconds since the Unix epoch (NULL for 0: never).
pub fn timestamp(micros: u64) -> Cell {
    if micros == 0 {
        return None;
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros);
    // `2026-11-02T10:04:05Z` → `2026-11-02 10:04:05+00`, what PostgreSQL prints with DateStyle ISO.
    let iso = humantime::format_rfc3339_seconds(t).to_string();
    Some(iso.replace('T', " ").replace('Z', "+00"))
}

/// Rows under named columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    columns: Vec<(&'static str, Type)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Type)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column (a bug otherwise, caught by the unit tests of
    /// every report).
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width");
        self.rows.push(row);
    }

    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|(name, _)| *name)
    }

    pub fn rows(&self) -> &[Vec<Cell>] {
        &self.rows
    }

    /// The value of `column` in row `row`, for tests and callers that read by name.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let at = self.columns.iter().position(|(name, _)| *name == column)?;
        self.rows.get(row)?.get(at)?.as_deref()
    }

    /// RowDescription, one DataRow per row, CommandComplete `SHOW` (PgBouncer's tag for every report).
    pub fn encode(&self, out: &mut BytesMut) {
        let columns: Vec<(&str, u32)> = self
            .columns
            .iter()
            .map(|(name, ty)| (*name, ty.oid()))
            .collect();
        backend::row_description(out, &columns);
        for row in &self.rows {
            let values: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
            backend::data_row(out, &values);
        }
        backend::command_complete(out, "SHOW");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_description_rows_and_tag() {
        let mut t = Table::new(&[("name", Type::Text), ("n", Type::Int)]);
        t.push(vec![text("a"), int(1u32)]);
        t.push(vec![None, int(-2i64)]);
        assert_eq!(t.get(1, "n"), Some("-2"));
        assert_eq!(t.get(1, "name"), None);
        let mut out = BytesMut::new();
        t.encode(&mut out);
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            frames.push((rest[0], &rest[5..1 + len]));
            rest = &rest[1 + len..];
        }
        let tags: Vec<u8> = frames.iter().map(|f| f.0).collect();
        assert_eq!(tags, b"TDDC");
        assert_eq!(
            backend::data_row_values(frames[2].1).expect("row"),
            vec![None, Some(&b"-2"[..])]
        );
        assert_eq!(frames[3].1, b"SHOW\0");
    }

    #[test]
    fn timestamps_print_like_postgresql() {
        assert_eq!(timestamp(0), None);
        assert_eq!(
            timestamp(1_700_000_000_000_000).as_deref(),
            Some("2023-11-14 22:13:20+00")
        );
    }
}
