//! The API's own request and response types. Domain types are not `Serialize`: the wire
//! format is decided here, once, and stays stable when the domain changes. Names and
//! values are `snake_case` (SPEC section 3); times RFC 3339 UTC; money strings with two
//! decimals.
//!
//! What clients send is in `requests`, what the API answers in `responses`; both are
//! re-exported here, so every type is `dto::Name`.

mod requests;
mod responses;

pub use requests::{
    AddonRequest, AdminRequest, AdvanceRequest, CancelRequest, CreateClockRequest, ForecastQuery,
    LimitQuery, ListQuery, PaymentOutcome, PaymentRequest, PlanRequest, ReasonBody, SignupRequest,
    UsageItem, UsageRequest,
};
pub use responses::{
    facts, AdvanceResponse, Assumptions, ClockDto, CommandResponse, Deadlines, DeletedClock,
    EntitlementsDto, EntitlementsResponse, FactDto, FactLine, ForecastResponse, Health, InvoiceDto,
    InvoiceList, ItemStatus, LineDto, OrgDto, OrgList, OrgSummary, StatsResponse, TransitionDto,
    TransitionList, UsageDto, UsageResponse, UsageResult,
};
