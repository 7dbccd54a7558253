//! What the API answers: orgs, entitlements, invoices, audit rows, the facts a request
//! caused (SPEC section 9's objects) and the bodies that wrap them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::PaymentOutcome;
use crate::domain::{LockReason, LockReasons, Status};
use crate::engine::{Access, Fact, View};
use crate::storage::audit::TransitionRecord;
use crate::storage::billing::Invoice;
use crate::storage::test_clock::TestClock;

fn reasons(r: LockReasons) -> Vec<&'static str> {
    r.iter().map(LockReason::as_str).collect()
}

fn money(amount: Decimal) -> String {
    format!("{amount:.2}")
}

/// The pending deadlines of an org; absent ones are `null`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Deadlines {
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub cancel_at: Option<DateTime<Utc>>,
    pub next_cycle_at: Option<DateTime<Utc>>,
}

/// What an org may use (SPEC section 3, Entitlements).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EntitlementsDto {
    pub dashboard: bool,
    pub exports: bool,
    pub ingestion: bool,
    pub campaigns: bool,
    /// Usage above 100 % of the tier in the current period.
    pub upgrade_prompt: bool,
}

/// The latest period with usage.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UsageDto {
    pub period: String,
    pub usage_mau: u64,
    /// Percent of the tier, two decimals.
    pub percent: String,
}

/// An org with its derived entitlements and legal moves.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OrgDto {
    pub id: String,
    pub state: &'static str,
    pub lock_reasons: Vec<&'static str>,
    pub plan: String,
    pub tier: u32,
    pub addons: Vec<String>,
    pub scheduled_tier: Option<u32>,
    pub scheduled_addon_removals: Vec<String>,
    pub currency: String,
    pub admins: Vec<String>,
    pub billing_email: String,
    pub payment_method: bool,
    pub subscriber: bool,
    pub signup_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub test_clock: Option<String>,
    pub deadlines: Deadlines,
    pub entitlements: EntitlementsDto,
    pub usage: Option<UsageDto>,
    pub legal_moves: Vec<String>,
    pub version: i64,
}

fn deadlines(l: &crate::domain::Lifecycle) -> Deadlines {
    Deadlines {
        trial_ends_at: l.trial_ends_at,
        grace_ends_at: l.grace_ends_at,
        cancel_at: l.cancel_at,
        next_cycle_at: l.next_cycle_at,
    }
}

fn entitlements(view: &View) -> EntitlementsDto {
    let e = view.entitlements;
    EntitlementsDto {
        dashboard: e.dashboard,
        exports: e.exports,
        ingestion: e.ingestion,
        campaigns: e.campaigns,
        upgrade_prompt: view.upgrade_prompt,
    }
}

impl From<&View> for OrgDto {
    fn from(view: &View) -> Self {
        let o = &view.org;
        let l = &o.lifecycle;
        Self {
            id: o.id.clone(),
            state: l.status.as_str(),
            lock_reasons: reasons(l.reasons),
            plan: o.plan.clone(),
            tier: o.tier,
            addons: o.addons.clone(),
            scheduled_tier: o.scheduled_tier,
            scheduled_addon_removals: o.scheduled_removals.clone(),
            currency: o.currency.clone(),
            admins: o.admins.clone(),
            billing_email: o.billing_email.clone(),
            payment_method: l.payment_method,
            subscriber: l.subscriber,
            signup_at: o.signup_at,
            canceled_at: o.canceled_at,
            test_clock: o.clock.clone(),
            deadlines: deadlines(l),
            entitlements: entitlements(view),
            usage: o.usage.map(|(period, mau)| UsageDto {
                period: period.label(),
                usage_mau: mau,
                percent: crate::domain::usage::percent(mau, o.tier).to_string(),
            }),
            legal_moves: view.legal_moves.clone(),
            version: o.version,
        }
    }
}

/// `GET /v1/orgs/{id}/entitlements`: the switches, the state and every pending deadline.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EntitlementsResponse {
    pub org: String,
    pub state: &'static str,
    pub lock_reasons: Vec<&'static str>,
    pub dashboard: bool,
    pub exports: bool,
    pub ingestion: bool,
    pub campaigns: bool,
    pub upgrade_prompt: bool,
    pub deadlines: Deadlines,
}

impl From<&Access> for EntitlementsResponse {
    fn from(access: &Access) -> Self {
        let l = &access.org.lifecycle;
        let e = access.entitlements;
        Self {
            org: access.org.id.clone(),
            state: l.status.as_str(),
            lock_reasons: reasons(l.reasons),
            dashboard: e.dashboard,
            exports: e.exports,
            ingestion: e.ingestion,
            campaigns: e.campaigns,
            upgrade_prompt: access.upgrade_prompt,
            deadlines: deadlines(l),
        }
    }
}

/// One org in a list.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OrgSummary {
    pub id: String,
    pub state: &'static str,
    pub lock_reasons: Vec<&'static str>,
    pub plan: String,
    pub tier: u32,
    pub next_due_at: Option<DateTime<Utc>>,
    pub test_clock: Option<String>,
}

impl From<&crate::domain::Org> for OrgSummary {
    fn from(o: &crate::domain::Org) -> Self {
        Self {
            id: o.id.clone(),
            state: o.lifecycle.status.as_str(),
            lock_reasons: reasons(o.lifecycle.reasons),
            plan: o.plan.clone(),
            tier: o.tier,
            next_due_at: o.lifecycle.next_due_at(),
            test_clock: o.clock.clone(),
        }
    }
}

/// `GET /v1/orgs`: a page, and the `after` value of the next page if there may be one.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OrgList {
    pub orgs: Vec<OrgSummary>,
    pub next_after: Option<String>,
}

/// One audit row.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TransitionDto {
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub from: Option<&'static str>,
    pub to: &'static str,
    pub cause: String,
    pub lock_reasons: Vec<&'static str>,
    pub actor: String,
    pub reason: Option<String>,
}

impl From<&TransitionRecord> for TransitionDto {
    fn from(t: &TransitionRecord) -> Self {
        Self {
            at: t.at,
            recorded_at: t.recorded_at,
            from: t.from.map(Status::as_str),
            to: t.to.as_str(),
            cause: t.cause.clone(),
            lock_reasons: reasons(t.reasons),
            actor: t.actor.clone(),
            reason: t.reason.clone(),
        }
    }
}

/// `GET /v1/orgs/{id}/transitions`, oldest first.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TransitionList {
    pub org: String,
    pub transitions: Vec<TransitionDto>,
}

/// An invoice line.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LineDto {
    pub kind: &'static str,
    pub description: String,
    pub amount: String,
}

/// An invoice with its lines.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceDto {
    pub id: i64,
    pub org: String,
    pub period: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub currency: String,
    pub total: String,
    pub lines: Vec<LineDto>,
    pub issued_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

impl From<&Invoice> for InvoiceDto {
    fn from(i: &Invoice) -> Self {
        Self {
            id: i.id,
            org: i.org_id.clone(),
            period: i.period.clone(),
            kind: i.kind.as_str(),
            status: i.status.as_str(),
            currency: i.currency.clone(),
            total: money(i.total),
            lines: i
                .lines
                .iter()
                .map(|l| LineDto {
                    kind: l.kind.as_str(),
                    description: l.description.clone(),
                    amount: money(l.amount),
                })
                .collect(),
            issued_at: i.issued_at,
            paid_at: i.paid_at,
        }
    }
}

/// `GET /v1/orgs/{id}/invoices`, oldest first.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceList {
    pub org: String,
    pub invoices: Vec<InvoiceDto>,
}

/// An invoice line as a fact shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FactLine {
    pub kind: &'static str,
    pub amount: String,
}

/// One thing a request caused, at its effective instant: the same objects as the
/// simulator's JSON Lines (SPEC section 9).
///
/// Not [`Fact`]'s own `Serialize`, whose output differs from the API's: it leaves out a
/// transition's `actor`, writes `type` after `at` and `org` rather than first, and cuts
/// times to whole seconds.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FactDto {
    Transition {
        at: DateTime<Utc>,
        org: String,
        from: Option<&'static str>,
        to: &'static str,
        cause: String,
        lock_reasons: Vec<&'static str>,
        actor: String,
    },
    Invoice {
        at: DateTime<Utc>,
        org: String,
        id: i64,
        period: String,
        lines: Vec<FactLine>,
        total: String,
    },
    Payment {
        at: DateTime<Utc>,
        org: String,
        invoice: i64,
        outcome: PaymentOutcome,
    },
    Email {
        at: DateTime<Utc>,
        org: String,
        template: String,
        to: Vec<String>,
    },
    Plan {
        at: DateTime<Utc>,
        org: String,
        tier: u32,
        addons: Vec<String>,
        change: String,
    },
    Alert {
        at: DateTime<Utc>,
        org: String,
        threshold: u32,
        usage_percent: String,
    },
}

impl From<&Fact> for FactDto {
    fn from(fact: &Fact) -> Self {
        match fact.clone() {
            Fact::Transition {
                at,
                org,
                from,
                to,
                cause,
                reasons: r,
                actor,
            } => FactDto::Transition {
                at,
                org,
                from: from.map(Status::as_str),
                to: to.as_str(),
                cause,
                lock_reasons: reasons(r),
                actor,
            },
            Fact::Invoice {
                at,
                org,
                id,
                period,
                lines,
                total,
            } => FactDto::Invoice {
                at,
                org,
                id,
                period,
                lines: lines
                    .iter()
                    .map(|l| FactLine {
                        kind: l.kind.as_str(),
                        amount: money(l.amount),
                    })
                    .collect(),
                total: money(total),
            },
            Fact::Payment {
                at,
                org,
                invoice,
                succeeded,
            } => FactDto::Payment {
                at,
                org,
                invoice,
                outcome: if succeeded {
                    PaymentOutcome::Succeeded
                } else {
                    PaymentOutcome::Failed
                },
            },
            Fact::Email {
                at,
                org,
                template,
                to,
            } => FactDto::Email {
                at,
                org,
                template,
                to,
            },
            Fact::Plan {
                at,
                org,
                tier,
                addons,
                change,
            } => FactDto::Plan {
                at,
                org,
                tier,
                addons,
                change,
            },
            Fact::Alert {
                at,
                org,
                threshold,
                usage_percent,
            } => FactDto::Alert {
                at,
                org,
                threshold,
                usage_percent,
            },
        }
    }
}

/// Converts a report's facts.
pub fn facts(facts: &[Fact]) -> Vec<FactDto> {
    facts.iter().map(FactDto::from).collect()
}

/// What a forecast assumes.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Assumptions {
    pub usage: &'static str,
    pub actions: &'static str,
    /// What charges do: `succeed`, `fail` or `pending` (`as-last` resolved).
    pub payments: &'static str,
}

/// `GET /v1/orgs/{id}/forecast`: the facts up to the horizon, in order, and the org then.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ForecastResponse {
    pub org: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub assumptions: Assumptions,
    /// Invoice ids are the next free ones now; the real ones may differ.
    pub facts: Vec<FactDto>,
    pub then: OrgSummary,
}

/// What a write on an org answers: the org afterwards and what the write caused.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CommandResponse {
    /// A preview (`?dry_run=true`): nothing was written; `org` is as it would be.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub org: OrgDto,
    pub facts: Vec<FactDto>,
}

/// The outcome of one usage report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Accepted,
    Refused,
}

/// One item's result, in the order of the request.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UsageResult {
    pub index: usize,
    pub org: String,
    pub project: String,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/usage`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UsageResponse {
    /// A preview (`?dry_run=true`): nothing was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub accepted: usize,
    pub refused: usize,
    pub results: Vec<UsageResult>,
    pub facts: Vec<FactDto>,
}

/// A test clock.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClockDto {
    pub id: String,
    pub now: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<&TestClock> for ClockDto {
    fn from(c: &TestClock) -> Self {
        Self {
            id: c.id.clone(),
            now: c.now,
            created_at: c.created_at,
        }
    }
}

/// `POST /v1/test-clocks/{id}/advance`: the clock afterwards and everything that happened.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdvanceResponse {
    pub clock: ClockDto,
    pub facts: Vec<FactDto>,
}

/// `DELETE /v1/test-clocks/{id}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedClock {
    pub id: String,
    pub deleted_orgs: u64,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /v1/stats` and `acctd admin stats --json`: counts by state and lock reason, and
/// the backlogs.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StatsResponse {
    pub orgs: u64,
    /// Orgs by state, in the lifecycle's order.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub by_state: serde_json::Map<String, serde_json::Value>,
    /// Locked orgs by lock reason (an org may have several).
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub by_reason: serde_json::Map<String, serde_json::Value>,
    pub transitions: u64,
    /// Orgs on the real clock with a passed, unprocessed deadline.
    pub due_backlog: u64,
    /// Notifications written but not yet delivered.
    pub outbox_backlog: u64,
}
