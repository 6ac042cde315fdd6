//! Hand-written statements (`sql/*.sql`) that each connection prepares once.
//!
//! diesel never keeps `sql_query`, an `UPDATE` or an upsert as a prepared statement, so the
//! database parsed (and PostgreSQL planned) them on every call: the PostgreSQL parser was the
//! server's top function in the flow profile, and SQLite's parser the writer thread's. A
//! [`Statement`] is the same SQL with its binds, but diesel may cache it: its placeholders
//! (`$n` in the file) are emitted through `push_bind_param` (`$n` on PostgreSQL, `?` on
//! SQLite), so diesel keys its statement cache by the SQL text and prepares it once per
//! connection. A `*.pg.sql` file is PostgreSQL's only; a plain `*.sql` runs on both.
//!
//! A cached statement may get a generic plan after five executions: every non-key condition
//! in these files is written so that no plan can choose another index than the key's (see
//! `(...) IS TRUE` in the decision and the redemption).

use crate::error::StoreResult;
use crate::DbConnection;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::{Error, QueryResult};
use diesel::sql_types::{BigInt, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::QueryableByName;

/// `sql` without its `--` comment lines (they may name placeholders).
fn without_comments(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A statement's text split at its `$n` placeholders: `pieces[0] $params[0] pieces[1] ...`.
#[derive(Debug)]
pub(crate) struct Template {
    pieces: Vec<String>,
    /// The 1-based bind each placeholder names, in order of appearance.
    params: Vec<usize>,
    /// How many binds the statement takes (its highest `$n`).
    arity: usize,
}

impl Template {
    /// Parse `sql`: `--` comment lines dropped, placeholders `$1`..`$n` found. A `$` not
    /// followed by digits stays text.
    pub(crate) fn parse(sql: &str) -> Self {
        let text = without_comments(sql);
        let (mut pieces, mut params) = (Vec::new(), Vec::new());
        let mut piece = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find('$') {
            piece.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            match after[..digits].parse::<usize>() {
                Ok(n) if n > 0 => {
                    pieces.push(std::mem::take(&mut piece));
                    params.push(n);
                }
                _ => piece.push('$'),
            }
            rest = &after[digits..];
        }
        piece.push_str(rest);
        pieces.push(piece);
        let arity = params.iter().copied().max().unwrap_or(0);
        Self {
            pieces,
            params,
            arity,
        }
    }

    /// One statement made of `parts` joined by newlines, each numbering its own placeholders
    /// from `$1`: a part's binds follow those of the parts before it (its `$1` is the bind
    /// after their highest).
    pub(crate) fn chain(parts: &[&str]) -> Self {
        let mut out = Self {
            pieces: vec![String::new()],
            params: Vec::new(),
            arity: 0,
        };
        for (i, part) in parts.iter().enumerate() {
            let t = Self::parse(part);
            let mut pieces = t.pieces.into_iter();
            if let (Some(last), Some(first)) = (out.pieces.last_mut(), pieces.next()) {
                if i > 0 {
                    last.push('\n');
                }
                last.push_str(&first);
            }
            out.pieces.extend(pieces);
            let offset = out.arity;
            out.params.extend(t.params.iter().map(|n| n + offset));
            out.arity += t.arity;
        }
        out
    }
}

/// One bound value.
#[derive(Debug)]
enum Bind<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

/// A [`Template`] with its binds, run like any diesel query (`get_result`, `execute`).
#[derive(Debug)]
#[must_use = "a statement runs only when executed"]
pub(crate) struct Statement<'a> {
    template: &'static Template,
    binds: Vec<Bind<'a>>,
}

impl<'a> Statement<'a> {
    pub(crate) fn new(template: &'static Template) -> Self {
        Self {
            template,
            binds: Vec::with_capacity(template.arity),
        }
    }

    /// The next bind, as `text`.
    pub(crate) fn text(mut self, v: &'a str) -> Self {
        self.binds.push(Bind::Text(v));
        self
    }

    /// The next bind, as nullable `text`.
    pub(crate) fn opt_text(mut self, v: Option<&'a str>) -> Self {
        self.binds.push(Bind::OptText(v));
        self
    }

    /// The next bind, as `bigint`.
    pub(crate) fn int(mut self, v: i64) -> Self {
        self.binds.push(Bind::Int(v));
        self
    }

    /// The next bind, as nullable `bigint`.
    pub(crate) fn opt_int(mut self, v: Option<i64>) -> Self {
        self.binds.push(Bind::OptInt(v));
        self
    }
}

/// The statement's SQL and binds, for backend `$db`.
macro_rules! walk {
    ($db:ty) => {
        impl QueryFragment<$db> for Statement<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                let t = self.template;
                if self.binds.len() != t.arity {
                    return Err(Error::QueryBuilderError(
                        format!(
                            "the statement takes {} binds, {} were given",
                            t.arity,
                            self.binds.len()
                        )
                        .into(),
                    ));
                }
                for (piece, &n) in t.pieces.iter().zip(&t.params) {
                    out.push_sql(piece);
                    match &self.binds[n - 1] {
                        Bind::Text(v) => out.push_bind_param::<Text, _>(*v)?,
                        Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                        Bind::Int(v) => out.push_bind_param::<BigInt, _>(v)?,
                        Bind::OptInt(v) => out.push_bind_param::<Nullable<BigInt>, _>(v)?,
                    }
                }
                out.push_sql(t.pieces.last().map_or("", String::as_str));
                Ok(())
            }
        }
    };
}
walk!(Pg);
walk!(Sqlite);

/// Run a statement that returns no rows on either backend; how many rows it changed.
pub(crate) fn execute(conn: &mut DbConnection, s: Statement<'_>) -> StoreResult<usize> {
    Ok(match conn {
        DbConnection::Pg(c) => s.execute(c)?,
        DbConnection::Sqlite(c) => s.execute(c)?,
    })
}

/// Run a statement that returns rows (`RETURNING`) on either backend.
pub(crate) fn load<T>(conn: &mut DbConnection, s: Statement<'_>) -> StoreResult<Vec<T>>
where
    T: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
{
    Ok(match conn {
        DbConnection::Pg(c) => s.load(c)?,
        DbConnection::Sqlite(c) => s.load(c)?,
    })
}

/// Rows a statement returned as JSON (PostgreSQL's `row_to_json`, `json_agg`), if any:
/// `what` names them in the error should they not parse.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    json: Option<&str>,
    what: &str,
) -> StoreResult<Option<T>> {
    json.map(serde_json::from_str)
        .transpose()
        .map_err(|e| crate::error::StoreError::Other(format!("{what}: {e}")))
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    // Keyed by its SQL text in diesel's statement cache.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Statement<'_> {}

/// A `static` [`Template`] parsed on first use from a file under `sql/`.
/// `template!(chain "head"; "sql/a.sql", "sql/b.sql")`: one statement made of `head` (no
/// placeholders) and the files in order, each numbering its own placeholders
/// ([`Template::chain`]): a statement that wraps another file's statement, which stays the
/// one place its conditions are written, or two statements that share a part.
macro_rules! template {
    ($file:literal) => {{
        static T: std::sync::LazyLock<$crate::prepared::Template> =
            std::sync::LazyLock::new(|| $crate::prepared::Template::parse(include_str!($file)));
        &*T
    }};
    (chain $head:literal; $($file:literal),+) => {{
        static T: std::sync::LazyLock<$crate::prepared::Template> = std::sync::LazyLock::new(|| {
            $crate::prepared::Template::chain(&[$head, $(include_str!($file)),+])
        });
        &*T
    }};
}
pub(crate) use template;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_placeholders_and_drops_comments() {
        let t = Template::parse("-- $9 in a comment\nSELECT $2, $1 || '$x', $2$");
        assert_eq!(t.params, vec![2, 1, 2]);
        assert_eq!(t.arity, 2);
        assert_eq!(t.pieces, vec!["SELECT ", ", ", " || '$x', ", "$"]);
    }

    #[test]
    fn a_chain_numbers_each_part_after_the_ones_before() {
        let t = Template::chain(&[
            "WITH x AS (",
            "-- $7\nUPDATE t SET a = $2 WHERE b = $1",
            "), y AS ($1, $3)",
        ]);
        assert_eq!(t.params, vec![2, 1, 3, 5]);
        assert_eq!(t.arity, 5);
        assert_eq!(
            t.pieces,
            vec![
                "WITH x AS (\nUPDATE t SET a = ",
                " WHERE b = ",
                "\n), y AS (",
                ", ",
                ")"
            ]
        );
    }

    #[test]
    fn renders_binds_in_placeholder_order() {
        static T: std::sync::LazyLock<Template> =
            std::sync::LazyLock::new(|| Template::parse("SELECT $2, $1, $2"));
        let s = Statement::new(&T).int(1).text("a");
        let sql = diesel::debug_query::<Pg, _>(&s).to_string();
        assert!(sql.starts_with("SELECT $1, $2, $3"), "{sql}");
        assert!(sql.contains(r#"["a", 1, "a"]"#), "{sql}");
        let sql = diesel::debug_query::<Sqlite, _>(&s).to_string();
        assert!(sql.starts_with("SELECT ?, ?, ?"), "{sql}");
    }
}
