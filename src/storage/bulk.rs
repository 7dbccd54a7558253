//! Multi-row `INSERT` statements built straight into SQL text and values, for the bulk
//! writes of a transaction: the same statement sea-query's `InsertStatement` renders,
//! column for column and value for value, without its expression tree per value (which
//! a sweep pays for measurably: ARCHITECTURE.md, "Performance tricks").

use sea_orm::{DbBackend, EntityTrait, IdenStatic, Statement, Value};

/// `INSERT INTO table (columns) VALUES (…), …` being built, one row at a time.
pub(crate) struct Insert {
    backend: DbBackend,
    sql: String,
    values: Vec<Value>,
    width: usize,
    rows: usize,
}

impl Insert {
    /// An insert into `E`'s table of these columns, with room for `rows` rows.
    pub(crate) fn new<E: EntityTrait>(
        backend: DbBackend,
        columns: &[E::Column],
        rows: usize,
    ) -> Self {
        let mut sql = String::with_capacity(64 + rows * columns.len() * 6);
        sql.push_str("INSERT INTO \"");
        sql.push_str(E::default().table_name());
        sql.push_str("\" (");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('"');
            sql.push_str(column.as_str());
            sql.push('"');
        }
        sql.push_str(") VALUES ");
        Self {
            backend,
            sql,
            values: Vec::with_capacity(rows * columns.len()),
            width: columns.len(),
            rows: 0,
        }
    }

    /// Appends a row: one value per column, in the columns' order.
    pub(crate) fn row<const N: usize>(&mut self, values: [Value; N]) {
        assert_eq!(N, self.width, "one value per column");
        if self.rows > 0 {
            self.sql.push_str(", ");
        }
        self.sql.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.values.push(value);
            placeholder(&mut self.sql, self.backend, self.values.len());
        }
        self.sql.push(')');
        self.rows += 1;
    }

    /// The statement, with `tail` (an `ON CONFLICT` clause, or nothing) after the rows.
    pub(crate) fn build(mut self, tail: &str) -> Statement {
        self.sql.push_str(tail);
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

/// Appends the `n`th (from 1) bind placeholder of `backend` to `sql`.
pub(crate) fn placeholder(sql: &mut String, backend: DbBackend, n: usize) {
    use std::fmt::Write;
    match backend {
        DbBackend::Postgres => {
            let _ = write!(sql, "${n}");
        }
        _ => sql.push('?'),
    }
}
