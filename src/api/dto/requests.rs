//! What clients send: request bodies and query strings, each refusing unknown fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/orgs`: a new org in trial (or an imported subscriber with `active`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub id: String,
    pub plan: String,
    pub tier: u32,
    pub admins: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_email: Option<String>,
    /// A card is on file.
    #[serde(default)]
    pub payment_method: bool,
    #[serde(default)]
    pub addons: Vec<String>,
    /// Import an existing subscriber whose current period is paid, instead of a trial.
    #[serde(default)]
    pub active: bool,
    /// Attach the org to this test clock (only with `api.test_clocks = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/orgs` query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    pub reason: Option<String>,
    /// Keyset paging: orgs with an id after this one.
    pub after: Option<String>,
    pub limit: Option<u64>,
}

/// `GET /v1/orgs/{id}/transitions` query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    pub limit: Option<u64>,
}

/// `GET /v1/orgs/{id}/forecast` query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// Horizon in days from now (default 60).
    pub days: Option<u32>,
    /// Horizon as an instant (instead of `days`).
    pub until: Option<DateTime<Utc>>,
    /// `as-last` (default), `succeed`, `fail` or `pending`.
    pub payments: Option<String>,
}

/// A body that only carries the reason stored in the audit trail (optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/orgs/{id}/plan`: upgrade if `tier` is higher, downgrade if lower.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub tier: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/orgs/{id}/addons`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddonRequest {
    pub addon: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The payment provider's outcome for an invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    Succeeded,
    Failed,
}

/// `POST /v1/invoices/{id}/payment`.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub outcome: PaymentOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/orgs/{id}/cancel`: `confirm` must be exactly `DELETE`; `reason` is required.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/orgs/{id}/admin/{op}` (SPEC section 10). `reason` is required; `days` for
/// `extend_trial`, `extend_grace` and `postpone_cancel`; `to` for `transition`;
/// `lock_reason` (default `manual`) for `unlock`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_reason: Option<String>,
}

/// One usage report: absolute totals for (org, project, period).
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageItem {
    pub org: String,
    pub project: String,
    /// `YYYY-MM`; default: the current period on the org's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    pub mau: u64,
    #[serde(default)]
    pub data_points: u64,
    /// Allows totals lower than reported before.
    #[serde(default)]
    pub correction: bool,
}

/// `POST /v1/usage`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    pub reports: Vec<UsageItem>,
}

/// `POST /v1/test-clocks`.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClockRequest {
    pub id: String,
    pub frozen_at: DateTime<Utc>,
}

/// `POST /v1/test-clocks/{id}/advance`.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceRequest {
    pub to: DateTime<Utc>,
}
