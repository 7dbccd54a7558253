//! Orgs: load, claim due, insert, update with optimistic versioning, list, count.
//!
//! The row ↔ domain conversion is in `codec`, the loads and claims of due orgs in
//! `claims`, inserts and versioned updates in `writes`, listing and counting in `list`;
//! the public items are re-exported here, so callers write `storage::org::name`.

mod claims;
mod codec;
mod list;
mod writes;

pub(super) use claims::cannot_exist;
pub use claims::{
    claim_due, claim_due_by_rowid, claim_due_statement, drop_due_index, ensure_due_index, get,
    load, load_many,
};
pub(super) use codec::to_domain;
pub use list::{
    counts, list, list_statement, oldest_due, page, ClockFilter, Counts, Filter, Selection,
};
pub use writes::{insert, insert_many, update, update_many, Written};
