//! Usage reports and overage alerts.

use chrono::{DateTime, Utc};
use entity::{usage_alert, usage_report};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::Result;
use crate::domain::period::Period;
use crate::domain::usage::Usage;

/// The stored totals of one project in one period.
pub async fn project(
    conn: &impl ConnectionTrait,
    org_id: &str,
    period: Period,
    project: &str,
) -> Result<Option<Usage>> {
    let row =
        usage_report::Entity::find_by_id((org_id.to_owned(), period.label(), project.to_owned()))
            .one(conn)
            .await?;
    Ok(row.map(|r| Usage {
        mau: u64::try_from(r.mau).unwrap_or(0),
        data_points: u64::try_from(r.data_points).unwrap_or(0),
    }))
}

/// Replaces a project's totals for a period.
///
/// # Errors
/// A database error.
pub async fn upsert(
    conn: &impl ConnectionTrait,
    org_id: &str,
    period: Period,
    project: &str,
    usage: Usage,
    at: DateTime<Utc>,
) -> Result<()> {
    let row = usage_report::ActiveModel {
        org_id: Set(org_id.to_owned()),
        period: Set(period.label()),
        project: Set(project.to_owned()),
        mau: Set(i64::try_from(usage.mau).unwrap_or(i64::MAX)),
        data_points: Set(i64::try_from(usage.data_points).unwrap_or(i64::MAX)),
        reported_at: Set(at),
    };
    usage_report::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                usage_report::Column::OrgId,
                usage_report::Column::Period,
                usage_report::Column::Project,
            ])
            .update_columns([
                usage_report::Column::Mau,
                usage_report::Column::DataPoints,
                usage_report::Column::ReportedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The org's usage in a period, summed over its projects.
///
/// # Errors
/// A database error.
pub async fn total(conn: &impl ConnectionTrait, org_id: &str, period: Period) -> Result<Usage> {
    let rows = usage_report::Entity::find()
        .filter(usage_report::Column::OrgId.eq(org_id))
        .filter(usage_report::Column::Period.eq(period.label()))
        .all(conn)
        .await?;
    Ok(rows.iter().fold(Usage::default(), |acc, r| Usage {
        mau: acc.mau + u64::try_from(r.mau).unwrap_or(0),
        data_points: acc.data_points + u64::try_from(r.data_points).unwrap_or(0),
    }))
}

/// Records alerts for thresholds not yet recorded for (org, period); returns the
/// thresholds that are new. The unique index makes a retried report record nothing twice.
///
/// # Errors
/// A database error.
pub async fn record_alerts(
    conn: &impl ConnectionTrait,
    org_id: &str,
    period: Period,
    thresholds: &[u32],
    usage_mau: u64,
    usage_percent: &str,
    at: DateTime<Utc>,
) -> Result<Vec<u32>> {
    let mut new = Vec::new();
    for threshold in thresholds {
        let row = usage_alert::ActiveModel {
            id: NotSet,
            org_id: Set(org_id.to_owned()),
            period: Set(period.label()),
            threshold: Set(i32::try_from(*threshold).unwrap_or(i32::MAX)),
            usage_mau: Set(i64::try_from(usage_mau).unwrap_or(i64::MAX)),
            usage_percent: Set(usage_percent.to_owned()),
            at: Set(at),
        };
        let result = usage_alert::Entity::insert(row)
            .on_conflict_do_nothing_on([
                usage_alert::Column::OrgId,
                usage_alert::Column::Period,
                usage_alert::Column::Threshold,
            ])
            .exec_without_returning(conn)
            .await?;
        if matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            new.push(*threshold);
        }
    }
    Ok(new)
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

/// Whether the period is closed for the org: the monthly cycle that bills it (the next
/// period's invoice) has run.
///
/// # Errors
/// A database error.
pub async fn period_closed(
    conn: &impl ConnectionTrait,
    org_id: &str,
    period: Period,
) -> Result<bool> {
    super::billing::exists(conn, org_id, &format!("cycle:{}", period.next().label())).await
}

/// Deletes all of an org's usage (data purge on cancellation).
///
/// # Errors
/// A database error.
pub async fn purge_org(conn: &impl ConnectionTrait, org_id: &str) -> Result<u64> {
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
    Ok(usage_report::Entity::delete_many()
        .filter(usage_report::Column::Period.lt(cutoff.label()))
        .filter(usage_report::Column::OrgId.in_subquery(orgs_on_plan))
        .exec(conn)
        .await?
        .rows_affected)
}
