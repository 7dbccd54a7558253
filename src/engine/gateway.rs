//! The payment gateway boundary.

use std::collections::BTreeSet;
use std::sync::Mutex;

use rust_decimal::Decimal;

use crate::domain::{Charge, Org};

/// Charges an org for an invoice. A production gateway answers [`Charge::Pending`] and
/// reports the outcome later through [`super::Engine::payment_outcome`]; the simulator's
/// scripted card answers at once.
pub trait PaymentGateway: Send + Sync {
    fn charge(&self, org: &Org, invoice_id: i64, amount: Decimal) -> Charge;
}

/// The daemon's gateway: outcomes arrive later from the payment provider (CLI, API).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExternalGateway;

impl PaymentGateway for ExternalGateway {
    fn charge(&self, org: &Org, _invoice_id: i64, _amount: Decimal) -> Charge {
        if org.lifecycle.payment_method {
            Charge::Pending
        } else {
            Charge::NoCard
        }
    }
}

/// A scripted card per org: succeeds unless declined. Deterministic.
#[derive(Debug, Default)]
pub struct ScriptedGateway {
    declined: Mutex<BTreeSet<String>>,
}

impl ScriptedGateway {
    /// Later charges of this org fail.
    pub fn decline(&self, org: &str) {
        self.lock().insert(org.to_owned());
    }

    /// Later charges of this org succeed again.
    pub fn approve(&self, org: &str) {
        self.lock().remove(org);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.declined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PaymentGateway for ScriptedGateway {
    fn charge(&self, org: &Org, _invoice_id: i64, _amount: Decimal) -> Charge {
        if !org.lifecycle.payment_method {
            Charge::NoCard
        } else if self.lock().contains(&org.id) {
            Charge::Failed
        } else {
            Charge::Succeeded
        }
    }
}
