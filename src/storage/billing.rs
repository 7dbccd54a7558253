//! Invoices, their lines, and payment outcomes. Amounts are stored as integer cents.

use super::bulk::Insert;
use chrono::{DateTime, Utc};
use entity::{invoice, invoice_line, payment};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
};

use super::{Error, Result};
use crate::domain::price::{Line, LineKind};
pub use crate::domain::record::{Invoice, InvoiceKind, InvoiceStatus, NewPayment};

/// An invoice's settlement status.
#[derive(Clone, Debug)]
pub struct NewInvoice<'a> {
    pub org_id: &'a str,
    pub key: String,
    pub period: String,
    pub kind: InvoiceKind,
    pub currency: &'a str,
    pub lines: Vec<Line>,
    pub issued_at: DateTime<Utc>,
}

/// An amount (already rounded to cents) as integer cents, checked: an amount that does
/// not fit fails the write instead of storing a different total than the plan reports.
fn cents(amount: Decimal) -> Result<i64> {
    amount
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|c| c.trunc().to_i64())
        .ok_or_else(|| super::Error::OutOfRange {
            field: "amount",
            value: amount.to_string(),
        })
}

fn from_cents(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

fn line_kind(s: &str) -> Option<LineKind> {
    [
        LineKind::Base,
        LineKind::Addon,
        LineKind::MauOverage,
        LineKind::AddonOverage,
        LineKind::Proration,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

impl NewInvoice<'_> {
    /// The invoice this becomes under the id reserved for it ([`reserve_ids`]), open.
    pub fn into_invoice(self, id: i64) -> Invoice {
        Invoice {
            id,
            org_id: self.org_id.to_owned(),
            total: self.lines.iter().map(|l| l.amount).sum(),
            key: self.key,
            period: self.period,
            kind: self.kind,
            currency: self.currency.to_owned(),
            lines: self.lines,
            status: InvoiceStatus::Open,
            issued_at: self.issued_at,
            paid_at: None,
        }
    }
}

/// Reserves at least `n` new invoice ids, in increasing order, for [`insert_many`].
///
/// On `SQLite` the caller holds the write lock (see [`super::begin_write`]), so the ids
/// are those after the highest ever used (the table is `AUTOINCREMENT`). On `PostgreSQL` they come from the id
/// sequence, so concurrent writers never collide; an unused one is a gap, as any rolled
/// back insert leaves.
///
/// # Errors
/// A database error.
pub async fn reserve_ids(conn: &impl ConnectionTrait, n: usize) -> Result<Vec<i64>> {
    let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                "SELECT nextval(pg_get_serial_sequence('invoices', 'id')) AS id \
                 FROM generate_series(1, $1) ORDER BY 1",
                [n.into()],
            ))
            .await?;
        return rows
            .iter()
            .map(|row| Ok(row.try_get::<i64>("", "id")?))
            .collect();
    }
    let row = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT MAX(m) AS m FROM (SELECT COALESCE(MAX(id), 0) AS m FROM invoices \
             UNION ALL SELECT seq AS m FROM sqlite_sequence WHERE name = 'invoices')",
        ))
        .await?;
    let stored = match row {
        Some(row) => row.try_get::<Option<i64>>("", "m")?.unwrap_or(0),
        None => 0,
    };
    let first = stored + 1;
    Ok((first..first + n).collect())
}

/// The `n` invoice ids [`reserve_ids`] would give now, without reserving them (for a
/// preview, whose transaction rolls back): on `PostgreSQL` the ids after the sequence's
/// last value, on `SQLite` the same read as [`reserve_ids`].
///
/// # Errors
/// A database error.
pub async fn next_ids(conn: &impl ConnectionTrait, n: usize) -> Result<Vec<i64>> {
    let backend = conn.get_database_backend();
    if backend != DbBackend::Postgres {
        return reserve_ids(conn, n).await;
    }
    let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
    let row = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('invoices', 'id')::regclass), 0) AS id",
        ))
        .await?;
    let last = match row {
        Some(row) => row.try_get::<i64>("", "id")?,
        None => 0,
    };
    Ok((last + 1..=last + n).collect())
}

/// Inserts invoices with their lines, under ids from [`reserve_ids`] (a multi-row insert
/// per 1,000 rows). The `(org, key)`
/// unique index refuses a duplicate.
///
/// # Errors
/// A database error, including a duplicate key.
pub async fn insert_many<C: ConnectionTrait>(conn: &C, invoices: &[Invoice]) -> Result<()> {
    use invoice::Column as I;
    use invoice_line::Column as L;
    const INVOICE: [I; 10] = [
        I::Id,
        I::OrgId,
        I::Key,
        I::Period,
        I::Kind,
        I::Currency,
        I::TotalCents,
        I::Status,
        I::IssuedAt,
        I::PaidAt,
    ];
    const LINE: [L; 5] = [
        L::InvoiceId,
        L::Position,
        L::Kind,
        L::Description,
        L::AmountCents,
    ];
    let backend = conn.get_database_backend();
    for chunk in invoices.chunks(1_000) {
        let mut insert = Insert::new::<invoice::Entity>(backend, &INVOICE, chunk.len());
        for i in chunk {
            insert.row([
                i.id.into(),
                i.org_id.clone().into(),
                i.key.clone().into(),
                i.period.clone().into(),
                i.kind.as_str().into(),
                i.currency.clone().into(),
                cents(i.total)?.into(),
                i.status.as_str().into(),
                i.issued_at.into(),
                i.paid_at.into(),
            ]);
        }
        super::execute(conn, insert.build("")).await?;
    }
    let mut lines: Vec<(i64, i32, &Line)> = Vec::new();
    for i in invoices {
        for (position, l) in i.lines.iter().enumerate() {
            lines.push((i.id, i32::try_from(position).unwrap_or(i32::MAX), l));
        }
    }
    for chunk in lines.chunks(1_000) {
        let mut insert = Insert::new::<invoice_line::Entity>(backend, &LINE, chunk.len());
        for &(invoice_id, position, l) in chunk {
            insert.row([
                invoice_id.into(),
                position.into(),
                l.kind.as_str().into(),
                l.description.clone().into(),
                cents(l.amount)?.into(),
            ]);
        }
        super::execute(conn, insert.build("")).await?;
    }
    Ok(())
}

async fn with_lines(conn: &impl ConnectionTrait, m: invoice::Model) -> Result<Invoice> {
    let rows = invoice_line::Entity::find()
        .filter(invoice_line::Column::InvoiceId.eq(m.id))
        .order_by_asc(invoice_line::Column::Position)
        .all(conn)
        .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        lines.push(Line {
            kind: line_kind(&r.kind).ok_or_else(|| Error::Corrupt {
                org: m.org_id.clone(),
                field: "line kind",
                value: r.kind.clone(),
            })?,
            description: r.description,
            amount: from_cents(r.amount_cents),
        });
    }
    decode(m, lines)
}

/// A stored invoice with these lines.
fn decode(m: invoice::Model, lines: Vec<Line>) -> Result<Invoice> {
    let corrupt = |field: &'static str, value: &str| Error::Corrupt {
        org: m.org_id.clone(),
        field,
        value: value.to_owned(),
    };
    let kind = InvoiceKind::parse(&m.kind).ok_or_else(|| corrupt("invoice kind", &m.kind))?;
    let status =
        InvoiceStatus::parse(&m.status).ok_or_else(|| corrupt("invoice status", &m.status))?;
    Ok(Invoice {
        id: m.id,
        org_id: m.org_id,
        key: m.key,
        period: m.period,
        kind,
        currency: m.currency,
        lines,
        total: from_cents(m.total_cents),
        status,
        issued_at: m.issued_at,
        paid_at: m.paid_at,
    })
}

/// The invoices of these orgs, without their lines, that a plan from `from` on may
/// touch: those issued at or after `from`, those with one of `keys`, the failed ones, and
/// the open prorations and conversions (a pending plan change or trial conversion, which
/// a newer one voids).
///
/// # Errors
/// A database error or a corrupt row.
pub async fn window_of(
    conn: &impl ConnectionTrait,
    org_ids: &[&str],
    from: DateTime<Utc>,
    keys: &[String],
) -> Result<Vec<Invoice>> {
    use sea_orm::Condition;
    let mut found = Vec::new();
    for chunk in org_ids.chunks(1_000) {
        let rows = invoice::Entity::find()
            .filter(invoice::Column::OrgId.is_in(chunk.iter().copied()))
            .filter(
                Condition::any()
                    .add(invoice::Column::IssuedAt.gte(from))
                    .add(invoice::Column::Key.is_in(keys.iter().cloned()))
                    .add(invoice::Column::Status.eq(InvoiceStatus::Failed.as_str()))
                    .add(
                        Condition::all()
                            .add(invoice::Column::Kind.is_in([
                                InvoiceKind::Proration.as_str(),
                                InvoiceKind::Conversion.as_str(),
                            ]))
                            .add(invoice::Column::Status.eq(InvoiceStatus::Open.as_str())),
                    ),
            )
            .all(conn)
            .await?;
        for m in rows {
            found.push(decode(m, Vec::new())?);
        }
    }
    Ok(found)
}

/// One invoice by id.
///
/// # Errors
/// A database error or a corrupt row.
pub async fn find(conn: &impl ConnectionTrait, id: i64) -> Result<Option<Invoice>> {
    match invoice::Entity::find_by_id(id).one(conn).await? {
        Some(m) => Ok(Some(with_lines(conn, m).await?)),
        None => Ok(None),
    }
}

/// An org's invoices, oldest first.
///
/// # Errors
/// A database error or a corrupt row.
pub async fn list(conn: &impl ConnectionTrait, org_id: &str) -> Result<Vec<Invoice>> {
    let rows = invoice::Entity::find()
        .filter(invoice::Column::OrgId.eq(org_id))
        .order_by_asc(invoice::Column::Id)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for m in rows {
        out.push(with_lines(conn, m).await?);
    }
    Ok(out)
}

/// Sets an invoice's status (and `paid_at` when paid).
///
/// # Errors
/// A database error.
pub async fn set_status(
    conn: &impl ConnectionTrait,
    id: i64,
    status: InvoiceStatus,
    at: DateTime<Utc>,
) -> Result<()> {
    let paid_at = (status == InvoiceStatus::Paid).then_some(at);
    invoice::Entity::update_many()
        .col_expr(invoice::Column::Status, status.as_str().into())
        .col_expr(invoice::Column::PaidAt, paid_at.into())
        .filter(invoice::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records payment outcomes (a multi-row insert per 1,000).
///
/// # Errors
/// A database error.
pub async fn record_payments<C: ConnectionTrait>(conn: &C, payments: &[NewPayment]) -> Result<()> {
    use payment::Column as P;
    const COLUMNS: [P; 6] = [
        P::InvoiceId,
        P::OrgId,
        P::Outcome,
        P::Source,
        P::At,
        P::RecordedAt,
    ];
    let backend = conn.get_database_backend();
    for chunk in payments.chunks(1_000) {
        let mut insert = Insert::new::<payment::Entity>(backend, &COLUMNS, chunk.len());
        for p in chunk {
            insert.row([
                p.invoice_id.into(),
                p.org_id.clone().into(),
                if p.succeeded { "succeeded" } else { "failed" }.into(),
                p.source.clone().into(),
                p.at.into(),
                p.recorded_at.into(),
            ]);
        }
        super::execute(conn, insert.build("")).await?;
    }
    Ok(())
}

/// An org's payment outcomes, oldest first (`idx_payments_org`).
///
/// # Errors
/// A database error.
pub async fn payments_of(conn: &impl ConnectionTrait, org_id: &str) -> Result<Vec<NewPayment>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::OrgId.eq(org_id))
        .order_by_asc(payment::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(|p| NewPayment {
            invoice_id: p.invoice_id,
            org_id: p.org_id,
            succeeded: p.outcome == "succeeded",
            source: p.source,
            at: p.at,
            recorded_at: p.recorded_at,
        })
        .collect())
}
