//! Plain sea-orm entities for acctd's tables. No logic lives here: `acctd::storage` is the
//! only module that imports this crate, and it converts these models to domain types.

pub mod invoice;
pub mod invoice_line;
pub mod job_run;
pub mod org;
pub mod outbox;
pub mod payment;
pub mod test_clock;
pub mod transition;
pub mod usage_alert;
pub mod usage_report;
pub mod usage_total;
