//! The few SQL shapes the store uses, over either database: parameters and cells of four
//! types (integer, text, each maybe NULL), statements written once with `?1` placeholders
//! (rewritten to PostgreSQL's `$1`), and a second text only where the dialects differ.

use super::StoreError;

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum P<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
    OptInt(Option<i64>),
}

/// One cell of a result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// A result row, read by position.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Cell>);

impl Row {
    pub fn int(&self, i: usize) -> i64 {
        match &self.0[i] {
            Cell::Int(n) => *n,
            other => panic!("column {i} is {other:?}, not an integer"),
        }
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match &self.0[i] {
            Cell::Null => None,
            _ => Some(self.int(i)),
        }
    }

    pub fn text(&self, i: usize) -> String {
        match &self.0[i] {
            Cell::Text(s) => s.clone(),
            other => panic!("column {i} is {other:?}, not text"),
        }
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match &self.0[i] {
            Cell::Null => None,
            _ => Some(self.text(i)),
        }
    }
}

/// A statement: the same text for both databases, or one each.
#[derive(Debug, Clone, Copy)]
pub struct Stmt {
    pub sqlite: &'static str,
    pub pg: Option<&'static str>,
}

/// A statement both databases read alike (`?N` placeholders).
pub const fn both(sql: &'static str) -> Stmt {
    Stmt {
        sqlite: sql,
        pg: None,
    }
}

/// A statement whose PostgreSQL text differs (`$N` placeholders in `pg`).
pub const fn each(sqlite: &'static str, pg: &'static str) -> Stmt {
    Stmt {
        sqlite,
        pg: Some(pg),
    }
}

impl Stmt {
    /// The PostgreSQL text: its own, or the common one with `?N` written `$N`.
    pub fn pg_text(&self) -> std::borrow::Cow<'static, str> {
        match self.pg {
            Some(t) => t.into(),
            None => self.sqlite.replace('?', "$").into(),
        }
    }
}

/// Something statements run on: a connection or a transaction of either database.
pub enum On<'c> {
    Lite(&'c rusqlite::Connection),
    Pg(&'c dyn PgRun),
}

/// Statement parameters as the PostgreSQL driver takes them.
pub type PgParams<'p> = [&'p (dyn postgres::types::ToSql + Sync)];

/// A PostgreSQL transaction that statements run in through a shared reference
/// ([`super::pg::PgTx`]).
pub trait PgRun {
    fn execute(&self, sql: &str, params: &PgParams<'_>) -> Result<u64, postgres::Error>;
    fn query(
        &self,
        sql: &str,
        params: &PgParams<'_>,
    ) -> Result<Vec<postgres::Row>, postgres::Error>;
}

impl On<'_> {
    /// Runs a statement; returns how many rows it changed.
    pub fn exec(&self, st: Stmt, params: &[P<'_>]) -> Result<usize, StoreError> {
        match self {
            On::Lite(c) => Ok(c
                .prepare_cached(st.sqlite)?
                .execute(rusqlite::params_from_iter(params.iter().map(lite)))?),
            On::Pg(t) => {
                let owned = pg_params(params);
                let refs = pg_refs(&owned);
                let n = t.execute(st.pg_text().as_ref(), &refs)?;
                Ok(n as usize)
            }
        }
    }

    /// Runs a query; returns its rows.
    pub fn query(&self, st: Stmt, params: &[P<'_>]) -> Result<Vec<Row>, StoreError> {
        match self {
            On::Lite(c) => {
                let mut s = c.prepare_cached(st.sqlite)?;
                let n = s.column_count();
                let rows =
                    s.query_map(rusqlite::params_from_iter(params.iter().map(lite)), |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => Cell::Null,
                                    rusqlite::types::ValueRef::Integer(n) => Cell::Int(n),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                    other => Cell::Text(format!("{other:?}")),
                                })
                            })
                            .collect::<Result<Vec<_>, rusqlite::Error>>()
                            .map(Row)
                    })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            On::Pg(t) => {
                let owned = pg_params(params);
                let refs = pg_refs(&owned);
                let rows = t.query(st.pg_text().as_ref(), &refs)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, st: Stmt, params: &[P<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(st, params)?.into_iter().next())
    }
}

fn lite(p: &P<'_>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match *p {
        P::Int(n) | P::OptInt(Some(n)) => Value::Integer(n),
        P::Text(t) | P::OptText(Some(t)) => Value::Text(t.to_owned()),
        P::OptText(None) | P::OptInt(None) => Value::Null,
    }
}

/// A PostgreSQL parameter, owned so that a reference to it is `Sync`.
enum PgParam {
    Int(Option<i64>),
    Text(Option<String>),
}

fn pg_params(params: &[P<'_>]) -> Vec<PgParam> {
    params
        .iter()
        .map(|p| match *p {
            P::Int(n) => PgParam::Int(Some(n)),
            P::OptInt(n) => PgParam::Int(n),
            P::Text(t) => PgParam::Text(Some(t.to_owned())),
            P::OptText(t) => PgParam::Text(t.map(str::to_owned)),
        })
        .collect()
}

fn pg_refs(owned: &[PgParam]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    owned
        .iter()
        .map(|p| match p {
            PgParam::Int(n) => n as &(dyn postgres::types::ToSql + Sync),
            PgParam::Text(t) => t as &(dyn postgres::types::ToSql + Sync),
        })
        .collect()
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut cells = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let cell = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|n| Cell::Int(n.into())),
            _ => r.try_get::<_, Option<String>>(i)?.map(Cell::Text),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_text_is_rewritten_for_postgresql_and_its_own_is_kept() {
        assert_eq!(
            both("SELECT a FROM t WHERE b = ?1 AND c = ?2").pg_text(),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
        assert_eq!(each("x ?1", "y $1::text").pg_text(), "y $1::text");
    }

    #[test]
    fn cells_read_back_as_their_type_or_null() {
        let r = Row(vec![Cell::Int(4), Cell::Null, Cell::Text("t".into())]);
        assert_eq!((r.int(0), r.opt_int(1), r.text(2)), (4, None, "t".into()));
        assert_eq!((r.opt_text(1), r.opt_int(0)), (None, Some(4)));
    }
}
