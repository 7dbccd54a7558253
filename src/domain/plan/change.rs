//! Plan changes (SPEC section 5): upgrades (immediate, prorated to the second, only if
//! paid), downgrades and add-on removals (immediate in trial, otherwise at the next 1st),
//! and add-on inclusion (prorated, only if paid).

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use super::{invalid, ChargeRequest, NewInvoice, Planner, Rejection, Result, Step, Then};
use crate::domain::fact::Fact;
use crate::domain::period::Period;
use crate::domain::price::{proration_factor, round_cents, Line, LineKind};
use crate::domain::record::{Actor, InvoiceKind, InvoiceStatus};
use crate::domain::usage;
use crate::domain::{decide, Event, LockReason, Org, Refusal};

/// A change of tier or add-ons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanChange {
    Upgrade { tier: u32 },
    Downgrade { tier: u32 },
    CancelDowngrade,
    AddAddon { addon: String },
    RemoveAddon { addon: String },
    CancelAddonRemoval { addon: String },
}

impl PlanChange {
    /// Its name in the command table ([`super::KINDS`]).
    pub fn name(&self) -> &'static str {
        match self {
            PlanChange::Upgrade { .. } => "upgrade",
            PlanChange::Downgrade { .. } => "downgrade",
            PlanChange::CancelDowngrade => "cancel_downgrade",
            PlanChange::AddAddon { .. } => "add_addon",
            PlanChange::RemoveAddon { .. } => "remove_addon",
            PlanChange::CancelAddonRemoval { .. } => "cancel_addon_removal",
        }
    }
}

/// What a prorated charge pays for; encoded in the invoice key so that an outcome
/// reported later applies the change it was for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Paid {
    Upgrade(u32),
    Addon(String),
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Paid {
    fn key(&self, at: DateTime<Utc>) -> String {
        match self {
            Paid::Upgrade(tier) => format!("upgrade:{tier}:{}", stamp(at)),
            Paid::Addon(addon) => format!("addon:{addon}:{}", stamp(at)),
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        let mut parts = key.splitn(3, ':');
        match (parts.next()?, parts.next()?) {
            ("upgrade", tier) => tier.parse().ok().map(Paid::Upgrade),
            ("addon", addon) => Some(Paid::Addon(addon.to_owned())),
            _ => None,
        }
    }
}

impl Planner<'_> {
    /// Plan changes are refused where the machine refuses an upgrade: in `grace_period`,
    /// locked for `payment_overdue` or `trial_expired`, and `canceled`.
    fn check_plan_change(&self, org: &Org, change: &PlanChange, at: DateTime<Utc>) -> Result<()> {
        decide(
            &org.lifecycle,
            Event::Upgrade {
                lifts_overage: false,
            },
            at,
            self.rules.timers,
        )
        .map(|_| ())
        .map_err(|refusal| {
            Rejection::Refused(Refusal {
                command: change.name(),
                ..refusal
            })
        })
    }

    /// Applies a plan change at `at`.
    pub(super) fn change_plan(
        &mut self,
        org: &mut Org,
        change: &PlanChange,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Step> {
        let rules = self.rules;
        let prices = &rules.prices;
        let in_trial = org.lifecycle.in_trial() && !org.lifecycle.subscriber;
        match change {
            PlanChange::Upgrade { tier } => {
                prices.check_tier(*tier)?;
                if *tier <= org.tier {
                    return Err(invalid(
                        "tier",
                        format!(
                            "{tier} is not above the current tier {}; use downgrade",
                            org.tier
                        ),
                    ));
                }
                self.check_plan_change(org, change, at)?;
                if in_trial {
                    self.apply_upgrade(org, *tier, actor, at)?;
                } else {
                    self.void_pending_upgrades(org, at)?;
                    let mut lines = self.tier_difference(org, *tier, at)?;
                    lines.retain(|l| !l.amount.is_zero());
                    return self.charge_change(org, Paid::Upgrade(*tier), lines, actor, at);
                }
            }
            PlanChange::Downgrade { tier } => {
                prices.check_tier(*tier)?;
                if *tier >= org.tier {
                    return Err(invalid(
                        "tier",
                        format!(
                            "{tier} is not below the current tier {}; use upgrade",
                            org.tier
                        ),
                    ));
                }
                self.check_plan_change(org, change, at)?;
                if in_trial {
                    org.tier = *tier;
                    self.plan_fact(org, "downgrade", at);
                } else {
                    self.void_pending_upgrades(org, at)?;
                    let replaced = org.scheduled_tier.replace(*tier).is_some();
                    self.plan_fact(
                        org,
                        if replaced {
                            "downgrade_rescheduled"
                        } else {
                            "downgrade_scheduled"
                        },
                        at,
                    );
                    self.plan_email(org, "downgrade_scheduled", at);
                }
            }
            PlanChange::CancelDowngrade => {
                self.check_plan_change(org, change, at)?;
                if org.scheduled_tier.take().is_none() {
                    return Err(invalid("downgrade", "no downgrade is scheduled"));
                }
                self.plan_fact(org, "downgrade_canceled", at);
            }
            PlanChange::AddAddon { addon } => {
                let price = prices.addon_price(addon, org.tier)?;
                if org.addons.contains(addon) {
                    return Err(invalid(
                        "addon",
                        if org.scheduled_removals.contains(addon) {
                            format!("`{addon}` is included and scheduled for removal; use cancel_addon_removal")
                        } else {
                            format!("`{addon}` is already included")
                        },
                    ));
                }
                self.check_plan_change(org, change, at)?;
                if let Some(pending) = self.pending_addon_charge(org, addon) {
                    return Err(invalid(
                        "addon",
                        format!("the charge for `{addon}` is pending (invoice #{pending}); the add-on is included once it is paid"),
                    ));
                }
                if in_trial || price.is_zero() {
                    self.include_addon(org, addon, at);
                } else {
                    let period = Period::containing(at);
                    let line = Line {
                        kind: LineKind::Proration,
                        description: format!(
                            "{} add-on from {} to the end of {}",
                            prices.addon(addon)?.name,
                            stamp(at),
                            period.label()
                        ),
                        amount: round_cents(price * proration_factor(at, period)),
                    };
                    return self.charge_change(
                        org,
                        Paid::Addon(addon.clone()),
                        vec![line],
                        actor,
                        at,
                    );
                }
            }
            PlanChange::RemoveAddon { addon } => {
                if !org.addons.contains(addon) {
                    return Err(invalid("addon", format!("`{addon}` is not included")));
                }
                if org.scheduled_removals.contains(addon) {
                    return Err(invalid(
                        "addon",
                        format!("`{addon}` is already scheduled for removal"),
                    ));
                }
                self.check_plan_change(org, change, at)?;
                if in_trial {
                    org.addons.retain(|a| a != addon);
                    self.plan_fact(org, "addon_removed", at);
                    self.plan_email(org, "addon_changed", at);
                } else {
                    org.scheduled_removals.push(addon.clone());
                    self.plan_fact(org, "addon_removal_scheduled", at);
                    self.plan_email(org, "addon_changed", at);
                }
            }
            PlanChange::CancelAddonRemoval { addon } => {
                self.check_plan_change(org, change, at)?;
                if !org.scheduled_removals.contains(addon) {
                    return Err(invalid(
                        "addon",
                        format!("no removal of `{addon}` is scheduled"),
                    ));
                }
                org.scheduled_removals.retain(|a| a != addon);
                self.plan_fact(org, "addon_removal_canceled", at);
            }
        }
        Ok(Step::Done)
    }

    /// Monthly base plus paid add-ons at the new tier minus at the old one, prorated.
    fn tier_difference(&self, org: &Org, tier: u32, at: DateTime<Utc>) -> Result<Vec<Line>> {
        let rules = self.rules;
        let prices = &rules.prices;
        let period = Period::containing(at);
        let factor = proration_factor(at, period);
        let mut lines = vec![Line {
            kind: LineKind::Proration,
            description: format!(
                "{} plan, {} to {tier} MAU, from {} to the end of {}",
                org.plan,
                org.tier,
                stamp(at),
                period.label()
            ),
            amount: round_cents(
                (prices.base_price(&org.plan, tier)? - prices.base_price(&org.plan, org.tier)?)
                    * factor,
            ),
        }];
        for addon in &org.addons {
            let diff = prices.addon_price(addon, tier)? - prices.addon_price(addon, org.tier)?;
            lines.push(Line {
                kind: LineKind::Proration,
                description: format!(
                    "{} add-on, {} to {tier} MAU",
                    prices.addon(addon)?.name,
                    org.tier
                ),
                amount: round_cents(diff * factor),
            });
        }
        Ok(lines)
    }

    /// Issues a prorated invoice and asks for its charge; the change happens only once
    /// it is paid ([`Planner::charged`], or a later [`Planner::payment`]).
    fn charge_change(
        &mut self,
        org: &mut Org,
        paid: Paid,
        lines: Vec<Line>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Step> {
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        if total.is_zero() {
            self.apply_paid(org, paid, actor, at)?;
            return Ok(Step::Done);
        }
        if !org.lifecycle.payment_method {
            return Err(invalid(
                "payment_method",
                "no payment method on file: add a card to pay for the change",
            ));
        }
        let new = NewInvoice {
            key: paid.key(at),
            period: Period::containing(at),
            kind: InvoiceKind::Proration,
            lines,
            at,
        };
        let Some(invoice) = self.issue(org, new)? else {
            return Err(invalid(
                "change",
                "the same change was already requested at this instant",
            ));
        };
        Ok(Step::Charge(ChargeRequest {
            org: org.id.clone(),
            invoice: invoice.id,
            amount: invoice.total,
            at,
            then: Then::Change {
                paid,
                actor: actor.clone(),
            },
        }))
    }

    /// The org's plan-change invoices whose charge is still pending, with the change
    /// each pays for.
    fn pending_changes<'a>(&'a self, org: &'a Org) -> impl Iterator<Item = (i64, Paid)> + 'a {
        self.snapshot
            .invoices
            .values()
            .filter(move |i| {
                i.org_id == org.id
                    && i.kind == InvoiceKind::Proration
                    && i.status == InvoiceStatus::Open
            })
            .filter_map(|i| Some((i.id, Paid::from_key(&i.key)?)))
    }

    /// The open invoice charging `org` for `addon`, if its charge is still pending.
    fn pending_addon_charge(&self, org: &Org, addon: &str) -> Option<i64> {
        self.pending_changes(org)
            .find(|(_, paid)| matches!(paid, Paid::Addon(a) if a == addon))
            .map(|(id, _)| id)
    }

    /// A newer tier change supersedes an upgrade still waiting for its payment: that
    /// upgrade's invoice is voided, so a payment reported for it later is refused instead
    /// of being taken for a change that will not be made.
    fn void_pending_upgrades(&mut self, org: &Org, at: DateTime<Utc>) -> Result<()> {
        let pending: Vec<i64> = self
            .pending_changes(org)
            .filter(|(_, paid)| matches!(paid, Paid::Upgrade(_)))
            .map(|(id, _)| id)
            .collect();
        for id in pending {
            self.set_status(id, InvoiceStatus::Void, at)?;
        }
        Ok(())
    }

    /// A declined change charge voids its invoice and changes nothing else.
    pub(super) fn decline_change(
        &mut self,
        org: &Org,
        invoice: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.set_status(invoice, InvoiceStatus::Void, at)?;
        self.record_payment(org, invoice, false, "gateway", at);
        let key = self
            .snapshot
            .invoices
            .get(&invoice)
            .map(|i| i.key.clone())
            .unwrap_or_default();
        let change = match Paid::from_key(&key) {
            Some(Paid::Upgrade(_)) => "upgrade_declined",
            _ => "addon_declined",
        };
        self.plan_fact(org, change, at);
        Ok(())
    }

    pub(super) fn apply_paid(
        &mut self,
        org: &mut Org,
        paid: Paid,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        match paid {
            Paid::Upgrade(tier) => self.apply_upgrade(org, tier, actor, at),
            Paid::Addon(addon) => {
                self.include_addon(org, &addon, at);
                Ok(())
            }
        }
    }

    fn apply_upgrade(
        &mut self,
        org: &mut Org,
        tier: u32,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let lifts = self.upgrade_lifts_overage(org, tier, at);
        org.tier = tier;
        // An upgrade cancels a scheduled downgrade.
        org.scheduled_tier = None;
        self.plan_fact(org, "upgrade", at);
        if org.lifecycle.reasons.contains(LockReason::Overage) {
            self.apply(
                org,
                Event::Upgrade {
                    lifts_overage: lifts,
                },
                actor,
                at,
            )?;
        }
        Ok(())
    }

    /// SPEC section 3's lift rule for an upgrade of `org` to `new_tier` at `at`.
    pub fn upgrade_lifts_overage(&self, org: &Org, new_tier: u32, at: DateTime<Utc>) -> bool {
        let now = Period::containing(at);
        let usage_now = org
            .usage
            .filter(|(p, _)| *p == now)
            .map_or(0, |(_, mau)| mau);
        usage::upgrade_lifts_overage(
            new_tier,
            usage_now,
            org.overage_lock_mau.unwrap_or(0),
            self.rules.lock_above_percent,
        )
    }

    /// A later outcome for a plan-change invoice: apply the change when paid, void the
    /// invoice when not. No lifecycle event: a failed change charge changes no state.
    pub(super) fn plan_payment(
        &mut self,
        org: &mut Org,
        invoice: i64,
        key: &str,
        succeeded: bool,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        if !succeeded {
            return self.decline_change(org, invoice, at);
        }
        self.settle_charge(
            org,
            invoice,
            crate::domain::Charge::Succeeded,
            "gateway",
            at,
        )?;
        match Paid::from_key(key) {
            Some(Paid::Upgrade(tier)) if tier > org.tier => {
                self.apply_upgrade(org, tier, actor, at)
            }
            Some(Paid::Addon(addon)) => {
                self.include_addon(org, &addon, at);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(super) fn plan_fact(&mut self, org: &Org, change: &str, at: DateTime<Utc>) {
        self.plan.facts.push(Fact::Plan {
            at,
            org: org.id.clone(),
            tier: org.tier,
            addons: org.addons.clone(),
            change: change.to_owned(),
        });
    }

    pub(super) fn plan_email(&mut self, org: &Org, template: &str, at: DateTime<Utc>) {
        let payload = serde_json::json!({
            "org": org.id,
            "plan": org.plan,
            "tier": org.tier,
            "addons": org.addons,
            "scheduled_tier": org.scheduled_tier,
            "scheduled_removals": org.scheduled_removals,
            "effective": org.lifecycle.next_cycle_at.map(stamp),
        });
        // Deterministic per cause, so a replay never makes a second message.
        let key = format!(
            "{}:{template}:{}:{}:{}",
            org.id,
            stamp(at),
            org.tier,
            org.addons.join("+")
        );
        self.email(org, template, at, key, payload);
    }

    fn include_addon(&mut self, org: &mut Org, addon: &str, at: DateTime<Utc>) {
        if !org.addons.iter().any(|a| a == addon) {
            org.addons.push(addon.to_owned());
            org.addons.sort();
        }
        self.plan_fact(org, "addon_added", at);
        self.plan_email(org, "addon_changed", at);
    }
}
