//! What every module's statements share: parameter lists, reading a row's
//! columns, and the text form of the time stamps kept for display.

use sqlx::any::AnyRow;

/// `$from, $from+1, …` for `count` parameters.
pub(super) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// Rows of `width` parameters each: `($1, $2), ($3, $4), …`.
pub(super) fn value_rows(width: usize, rows: usize) -> String {
    (0..rows).map(|row| format!("({})", placeholders(1 + row * width, width))).collect::<Vec<_>>().join(", ")
}

pub(super) fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    sqlx::Row::try_get::<String, _>(row, column)
}

pub(super) fn int(row: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    sqlx::Row::try_get::<i64, _>(row, column)
}

pub(super) fn now_rfc3339() -> String {
    // Display-only times; RFC 3339 text in UTC sorts correctly in both dialects.
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
