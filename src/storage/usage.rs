//! Usage reports and overage alerts.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{usage_alert, usage_report, usage_total};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::bulk::Insert;
use super::Result;
use crate::domain::period::Period;
use crate::domain::usage::Usage;

/// Usage as stored (non-negative `BIGINT`s).
fn usage_of(mau: i64, data_points: i64) -> Usage {
    Usage {
        mau: u64::try_from(mau).unwrap_or(0),
        data_points: u64::try_from(data_points).unwrap_or(0),
    }
}

/// The org's usage in a period, summed over its projects.
///
/// # Errors
/// A database error.
pub async fn total(conn: &impl ConnectionTrait, org_id: &str, period: Period) -> Result<Usage> {
    let row = usage_total::Entity::find_by_id((org_id.to_owned(), period.label()))
        .one(conn)
        .await?;
    Ok(row.map_or_else(Usage::default, |r| usage_of(r.mau, r.data_points)))
}

/// The usage totals of these orgs in these periods, keyed by (org, period). Unlisted
/// pairs have no usage.
///
/// # Errors
/// A database error.
pub async fn totals_of(
    conn: &impl ConnectionTrait,
    org_ids: &[&str],
    periods: &[Period],
) -> Result<BTreeMap<(String, Period), Usage>> {
    let labels: Vec<String> = periods.iter().map(|p| p.label()).collect();
    let mut found = BTreeMap::new();
    for chunk in org_ids.chunks(1_000) {
        let rows = usage_total::Entity::find()
            .filter(usage_total::Column::OrgId.is_in(chunk.iter().copied()))
            .filter(usage_total::Column::Period.is_in(labels.iter().cloned()))
            .all(conn)
            .await?;
        for r in rows {
            let Some(period) = Period::parse(&r.period) else {
                continue;
            };
            let usage = usage_of(r.mau, r.data_points);
            found.insert((r.org_id, period), usage);
        }
    }
    Ok(found)
}

/// The stored totals of these (org, period, project) keys, keyed by (org, period) and
/// then project: one primary-key lookup per key, however many other projects the orgs
/// have. Keys without a row are left out.
///
/// # Errors
/// A database error.
pub async fn projects_of(
    conn: &impl ConnectionTrait,
    keys: &[(&str, Period, &str)],
) -> Result<BTreeMap<(String, Period), BTreeMap<String, Usage>>> {
    let mut found: BTreeMap<(String, Period), BTreeMap<String, Usage>> = BTreeMap::new();
    if keys.is_empty() {
        return Ok(found);
    }
    // The keys as one JSON parameter, so the statement's text is the same for any number
    // of keys. (PostgreSQL's placeholder is `$1`, as `?` is one of its JSON operators.)
    let keyed = match conn.get_database_backend() {
        DbBackend::Postgres => {
            r#"("org_id", "period", "project") IN (SELECT k->>0, k->>1, k->>2 FROM json_array_elements($1::json) AS k)"#
        }
        _ => {
            r#"("org_id", "period", "project") IN (SELECT json_extract("value", '$[0]'), json_extract("value", '$[1]'), json_extract("value", '$[2]') FROM json_each(?))"#
        }
    };
    // PostgreSQL plans the lookup for the table as it is now: a generic plan cached while
    // `usage_reports` was small scans every row of the org for each chunk, so an import
    // grew quadratic wherever `ANALYZE` lags behind (autovacuum off, or a table growing
    // faster than it runs). Only this statement: planning the bulk upserts each time
    // costs more than it saves.
    let postgres = conn.get_database_backend() == DbBackend::Postgres;
    if postgres {
        conn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
    }
    for chunk in keys.chunks(2_000) {
        let json: Vec<(&str, String, &str)> = chunk
            .iter()
            .map(|(org, period, project)| (*org, period.label(), *project))
            .collect();
        let json = serde_json::to_string(&json).unwrap_or_else(|_| "[]".to_owned());
        let rows = usage_report::Entity::find()
            .filter(Expr::cust_with_values(keyed, [json]))
            .all(conn)
            .await?;
        for r in rows {
            let Some(period) = Period::parse(&r.period) else {
                continue;
            };
            let usage = usage_of(r.mau, r.data_points);
            found
                .entry((r.org_id, period))
                .or_default()
                .insert(r.project, usage);
        }
    }
    if postgres {
        conn.execute_unprepared("SET LOCAL plan_cache_mode = auto")
            .await?;
    }
    Ok(found)
}

/// Replaces orgs' usage totals per period (a multi-row upsert per 1,000 rows).
///
/// # Errors
/// A database error.
pub async fn upsert_totals<C: ConnectionTrait>(
    conn: &C,
    rows: &BTreeMap<(String, Period), Usage>,
) -> Result<()> {
    use usage_total::Column as T;
    const COLUMNS: [T; 4] = [T::OrgId, T::Period, T::Mau, T::DataPoints];
    let backend = conn.get_database_backend();
    let rows: Vec<_> = rows.iter().collect();
    for chunk in rows.chunks(1_000) {
        let mut insert = Insert::new::<usage_total::Entity>(backend, &COLUMNS, chunk.len());
        for ((org_id, period), usage) in chunk {
            insert.row([
                org_id.clone().into(),
                period.label().into(),
                super::fit("mau", usage.mau)?.into(),
                super::fit("data_points", usage.data_points)?.into(),
            ]);
        }
        let upsert = " ON CONFLICT (\"org_id\", \"period\") DO UPDATE SET \
                      \"mau\" = \"excluded\".\"mau\", \
                      \"data_points\" = \"excluded\".\"data_points\"";
        super::execute(conn, insert.build(upsert)).await?;
    }
    Ok(())
}

pub use crate::domain::plan::{NewAlert, ProjectTotals};

/// Replaces many projects' totals at once (a multi-row upsert per 1,000 rows).
///
/// # Errors
/// A database error.
pub async fn upsert_many<C: ConnectionTrait>(
    conn: &C,
    rows: &[ProjectTotals],
    at: DateTime<Utc>,
) -> Result<()> {
    use usage_report::Column as U;
    const COLUMNS: [U; 6] = [
        U::OrgId,
        U::Period,
        U::Project,
        U::Mau,
        U::DataPoints,
        U::ReportedAt,
    ];
    let backend = conn.get_database_backend();
    for chunk in rows.chunks(1_000) {
        let mut insert = Insert::new::<usage_report::Entity>(backend, &COLUMNS, chunk.len());
        for r in chunk {
            insert.row([
                r.org_id.clone().into(),
                r.period.label().into(),
                r.project.clone().into(),
                super::fit("mau", r.usage.mau)?.into(),
                super::fit("data_points", r.usage.data_points)?.into(),
                at.into(),
            ]);
        }
        let upsert = " ON CONFLICT (\"org_id\", \"period\", \"project\") DO UPDATE SET \
                      \"mau\" = \"excluded\".\"mau\", \
                      \"data_points\" = \"excluded\".\"data_points\", \
                      \"reported_at\" = \"excluded\".\"reported_at\"";
        super::execute(conn, insert.build(upsert)).await?;
    }
    Ok(())
}

/// The (org, period, threshold) alerts already recorded for these orgs in these periods.
///
/// # Errors
/// A database error.
pub async fn alerted_of(
    conn: &impl ConnectionTrait,
    org_ids: &[&str],
    periods: &[Period],
) -> Result<HashSet<(String, Period, u32)>> {
    let labels: Vec<String> = periods.iter().map(|p| p.label()).collect();
    let mut found = HashSet::new();
    for chunk in org_ids.chunks(1_000) {
        let rows: Vec<(String, String, i32)> = usage_alert::Entity::find()
            .select_only()
            .column(usage_alert::Column::OrgId)
            .column(usage_alert::Column::Period)
            .column(usage_alert::Column::Threshold)
            .filter(usage_alert::Column::OrgId.is_in(chunk.iter().copied()))
            .filter(usage_alert::Column::Period.is_in(labels.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await?;
        found.extend(
            rows.into_iter()
                .filter_map(|(o, p, t)| Some((o, Period::parse(&p)?, u32::try_from(t).ok()?))),
        );
    }
    Ok(found)
}

/// Appends alerts in bulk; one already recorded for its (org, period, threshold) is
/// skipped (the unique index).
///
/// # Errors
/// A database error.
pub async fn insert_alerts<C: ConnectionTrait>(conn: &C, alerts: &[NewAlert]) -> Result<()> {
    use usage_alert::Column as A;
    const COLUMNS: [A; 6] = [
        A::OrgId,
        A::Period,
        A::Threshold,
        A::UsageMau,
        A::UsagePercent,
        A::At,
    ];
    let backend = conn.get_database_backend();
    for chunk in alerts.chunks(1_000) {
        let mut insert = Insert::new::<usage_alert::Entity>(backend, &COLUMNS, chunk.len());
        for a in chunk {
            insert.row([
                a.org_id.clone().into(),
                a.period.label().into(),
                i32::try_from(a.threshold).unwrap_or(i32::MAX).into(),
                super::fit("usage_mau", a.usage_mau)?.into(),
                a.usage_percent.clone().into(),
                a.at.into(),
            ]);
        }
        let statement =
            insert.build(" ON CONFLICT (\"org_id\", \"period\", \"threshold\") DO NOTHING");
        super::execute(conn, statement).await?;
    }
    Ok(())
}

/// The thresholds already alerted for (org, period), ascending.
///
/// # Errors
/// A database error.
pub async fn alerted(
    conn: &impl ConnectionTrait,
    org_id: &str,
    period: Period,
) -> Result<Vec<u32>> {
    let rows = usage_alert::Entity::find()
        .filter(usage_alert::Column::OrgId.eq(org_id))
        .filter(usage_alert::Column::Period.eq(period.label()))
        .order_by_asc(usage_alert::Column::Threshold)
        .all(conn)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| u32::try_from(r.threshold).ok())
        .collect())
}

/// Deletes all of an org's usage (data purge on cancellation).
///
/// # Errors
/// A database error.
pub async fn purge_org(conn: &impl ConnectionTrait, org_id: &str) -> Result<u64> {
    usage_total::Entity::delete_many()
        .filter(usage_total::Column::OrgId.eq(org_id))
        .exec(conn)
        .await?;
    Ok(usage_report::Entity::delete_many()
        .filter(usage_report::Column::OrgId.eq(org_id))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Deletes usage reports of periods that ended before `cutoff` for orgs on `plan`
/// (retention, SPEC section 7). Returns how many rows went.
///
/// # Errors
/// A database error.
pub async fn purge_before(conn: &impl ConnectionTrait, plan: &str, cutoff: Period) -> Result<u64> {
    use entity::org;
    use sea_orm::sea_query::Query;
    let orgs_on_plan = Query::select()
        .column(org::Column::Id)
        .from(org::Entity)
        .and_where(org::Column::Plan.eq(plan))
        .to_owned();
    usage_total::Entity::delete_many()
        .filter(usage_total::Column::Period.lt(cutoff.label()))
        .filter(usage_total::Column::OrgId.in_subquery(orgs_on_plan.clone()))
        .exec(conn)
        .await?;
    Ok(usage_report::Entity::delete_many()
        .filter(usage_report::Column::Period.lt(cutoff.label()))
        .filter(usage_report::Column::OrgId.in_subquery(orgs_on_plan))
        .exec(conn)
        .await?
        .rows_affected)
}
