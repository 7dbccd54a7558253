//! What the settings mean to the rest of the daemon: the domain's rules, lifecycle
//! timers, price book and entitlement matrix, built from [`Settings`].

use crate::domain::{self, entitlement, price};

use super::Settings;

impl Settings {
    /// The rules the engine and its planner apply.
    pub fn rules(&self) -> domain::plan::Rules {
        domain::plan::Rules {
            timers: self.timers(),
            prices: self.price_book(),
            entitlements: self.entitlements(),
            currency: self.billing.currency.clone(),
            batch_size: u64::from(self.daemon.batch_size),
            max_batch_size: u64::from(self.daemon.max_batch_size),
            batch_target: std::time::Duration::from_millis(self.daemon.batch_target_ms),
            alert_thresholds: self.usage.alert_thresholds.clone(),
            lock_above_percent: self.usage.lock_above_percent,
            reminder_days: self.notify.reminder_days,
            max_admins: usize::try_from(self.notify.max_admins_per_org).unwrap_or(usize::MAX),
            webhooks: self
                .webhooks
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect(),
        }
    }

    /// The lifecycle timers.
    pub fn timers(&self) -> domain::Timers {
        domain::Timers {
            trial: chrono::Duration::days(i64::from(self.lifecycle.trial_days)),
            grace: chrono::Duration::days(i64::from(self.lifecycle.grace_days)),
            lock_to_cancel: chrono::Duration::days(i64::from(
                self.lifecycle.cancel_after_lock_days,
            )),
        }
    }

    /// The price book the billing code reads.
    pub fn price_book(&self) -> price::PriceBook {
        price::PriceBook {
            plans: self
                .plans
                .iter()
                .map(|(name, plan)| {
                    let tier_prices = plan
                        .tier_prices
                        .iter()
                        .filter_map(|(tier, price)| Some((tier.parse().ok()?, *price)))
                        .collect();
                    (
                        name.clone(),
                        price::PlanPrice {
                            price_per_100_mau: plan.price_per_100_mau,
                            data_points_per_mau: plan.data_points_per_mau,
                            tier_prices,
                        },
                    )
                })
                .collect(),
            addons: self
                .addons
                .iter()
                .map(|(id, addon)| {
                    (
                        id.clone(),
                        price::AddonPrice {
                            name: addon.name.clone(),
                            price_per_100_mau: addon.price_per_100_mau,
                        },
                    )
                })
                .collect(),
            tiers: self.billing.tiers.clone(),
            max_self_serve_tier: self.billing.max_self_serve_tier,
            overage_multiplier: self.billing.overage_multiplier,
        }
    }

    /// The entitlement matrix.
    pub fn entitlements(&self) -> entitlement::Matrix {
        let e = &self.entitlements;
        entitlement::Matrix {
            overage: e.overage.into(),
            payment_overdue: e.payment_overdue.into(),
            trial_expired: e.trial_expired.into(),
            manual: e.manual.into(),
        }
    }
}
