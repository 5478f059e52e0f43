//! Fixed SQL statements that each connection prepares once and keeps. diesel prepares a
//! `sql_query` anew on every call (it marks itself unsafe to cache), which on PostgreSQL means
//! the server parses and plans it again each time; a [`Statement`] has a static query id
//! instead (its marker type `Q`, one per SQL text), so diesel's statement cache keeps it.

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, BigInt, Double, HasSqlType, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;

/// A bind value of a [`Statement`]. The arrays are PostgreSQL's only.
#[derive(Debug, Clone)]
pub(crate) enum Bind<'a> {
    Int(i64),
    MaybeInt(Option<i64>),
    Float(f64),
    Text(&'a str),
    Ints(Vec<i64>),
    MaybeInts(Vec<Option<i64>>),
    Texts(Vec<&'a str>),
    MaybeTexts(Vec<Option<&'a str>>),
}

/// A fixed statement with `?` placeholders (written as `$n` on PostgreSQL) and its binds, in
/// order.
pub(crate) struct Statement<'a, Q> {
    sql: &'static str,
    binds: Vec<Bind<'a>>,
    marker: PhantomData<Q>,
}

/// The statement `sql` with `binds`; `Q` is its marker (one type per SQL text).
pub(crate) fn statement<'a, Q>(sql: &'static str, binds: Vec<Bind<'a>>) -> Statement<'a, Q> {
    Statement {
        sql,
        binds,
        marker: PhantomData,
    }
}

impl<Q: 'static> QueryId for Statement<'_, Q> {
    type QueryId = Q;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Q> QueryFragment<Pg> for Statement<'_, Q> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.walk(out, |bind, out| match bind {
            Bind::Ints(v) => out.push_bind_param::<Array<BigInt>, Vec<i64>>(v),
            Bind::MaybeInts(v) => {
                out.push_bind_param::<Array<Nullable<BigInt>>, Vec<Option<i64>>>(v)
            }
            Bind::Texts(v) => out.push_bind_param::<Array<Text>, Vec<&str>>(v),
            Bind::MaybeTexts(v) => {
                out.push_bind_param::<Array<Nullable<Text>>, Vec<Option<&str>>>(v)
            }
            Bind::Int(_) | Bind::MaybeInt(_) | Bind::Float(_) | Bind::Text(_) => Ok(()),
        })
    }
}

impl<Q> QueryFragment<Sqlite> for Statement<'_, Q> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.walk(out, |_, _| {
            Err(diesel::result::Error::QueryBuilderError(
                "array binds are PostgreSQL's".into(),
            ))
        })
    }
}

impl<Q> Statement<'_, Q> {
    /// Writes the SQL with its binds in place of the `?`s; `array` pushes an array bind.
    fn walk<'b, DB>(
        &'b self,
        mut out: AstPass<'_, 'b, DB>,
        array: impl Fn(&'b Bind<'_>, &mut AstPass<'_, 'b, DB>) -> QueryResult<()>,
    ) -> QueryResult<()>
    where
        DB: Backend + HasSqlType<BigInt> + HasSqlType<Double> + HasSqlType<Text>,
        i64: ToSql<BigInt, DB>,
        Option<i64>: ToSql<Nullable<BigInt>, DB>,
        f64: ToSql<Double, DB>,
        str: ToSql<Text, DB>,
    {
        let mut pieces = self.sql.split('?');
        out.push_sql(pieces.next().unwrap_or_default());
        for (piece, bind) in pieces.zip(&self.binds) {
            match bind {
                Bind::Int(n) => out.push_bind_param::<BigInt, i64>(n)?,
                Bind::MaybeInt(n) => out.push_bind_param::<Nullable<BigInt>, Option<i64>>(n)?,
                Bind::Float(x) => out.push_bind_param::<Double, f64>(x)?,
                Bind::Text(t) => out.push_bind_param::<Text, str>(t)?,
                arrays => array(arrays, &mut out)?,
            }
            out.push_sql(piece);
        }
        Ok(())
    }
}

impl<Q> Query for Statement<'_, Q> {
    type SqlType = Untyped;
}

impl<Q, Conn> RunQueryDsl<Conn> for Statement<'_, Q> {}
