//! Prepared-statement caching for every repository query: each SQL text is parsed and planned
//! once per pooled connection instead of on every request.
//!
//! Only for SQL whose text the code fixes, or whose text varies over a small fixed set of
//! shapes (`db::archive`: which filters are present, never their values). SQL shaped by a
//! request in ways callers can multiply (the fields of an update, free filter combinations)
//! goes through the `d*` methods: unprepared, so the cache never grows with the number of
//! combinations callers can invent (each connection's cache is never evicted).

use std::future::Future;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// `query`/`query_one`/`query_opt`/`execute` through the connection's statement cache.
pub trait Cached {
    fn q(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send;
    fn q1(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send;
    fn q01(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send;
    fn x(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, Error>> + Send;
    /// `q` for request-shaped SQL: an unnamed statement, nothing cached.
    fn dq(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send;
    /// `q1` for request-shaped SQL.
    fn dq1(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send;
    /// `q01` for request-shaped SQL.
    fn dq01(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send;
}

macro_rules! cached_for {
    ($t:ty) => {
        impl Cached for $t {
            async fn q(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error> {
                let st = self.prepare_cached(sql).await?;
                self.query(&st, params).await
            }
            async fn q1(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
                let st = self.prepare_cached(sql).await?;
                self.query_one(&st, params).await
            }
            async fn q01(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error> {
                let st = self.prepare_cached(sql).await?;
                self.query_opt(&st, params).await
            }
            async fn x(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
                let st = self.prepare_cached(sql).await?;
                self.execute(&st, params).await
            }
            async fn dq(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error> {
                self.query(sql, params).await
            }
            async fn dq1(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
                self.query_one(sql, params).await
            }
            async fn dq01(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error> {
                self.query_opt(sql, params).await
            }
        }
    };
}

cached_for!(deadpool_postgres::Transaction<'_>);
cached_for!(deadpool_postgres::Client);
