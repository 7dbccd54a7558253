//! Plan changes and the billing side of the monthly cycle (SPEC section 5): upgrades
//! (immediate, prorated to the second, only if paid), downgrades and add-on removals
//! (immediate in trial, otherwise at the next 1st), add-on inclusion (prorated, only if
//! paid), and the previous period's overage on the cycle's invoice.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use super::{invalid, Actor, Engine, Error, Fact, Result, Work};
use crate::domain::period::Period;
use crate::domain::price::{proration_factor, round_cents, Line, LineKind};
use crate::domain::{decide, Charge, Event, LockReason, Org, Refusal};

use crate::storage::billing::{Invoice, InvoiceKind, InvoiceStatus, NewInvoice};

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
    fn name(&self) -> &'static str {
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
enum Paid {
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

impl Engine {
    /// Plan changes are refused where the machine refuses an upgrade: in `grace_period`,
    /// locked for `payment_overdue` or `trial_expired`, and `canceled`.
    fn check_plan_change(
        &self,
        org: &Org,
        change: &PlanChange,
        lifts_overage: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        decide(
            &org.lifecycle,
            Event::Upgrade { lifts_overage },
            at,
            self.rules.timers,
        )
        .map(|_| ())
        .map_err(|refusal| {
            Error::Refused(Refusal {
                command: change.name(),
                ..refusal
            })
        })
    }

    /// Applies a plan change at `at`.
    pub(super) async fn change_plan(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        change: &PlanChange,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let prices = &self.rules.prices;
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
                self.check_plan_change(org, change, false, at)?;
                if in_trial {
                    self.apply_upgrade(work, org, *tier, actor, at).await?;
                } else {
                    let mut lines = self.tier_difference(org, *tier, at)?;
                    lines.retain(|l| !l.amount.is_zero());
                    self.charge_change(work, org, Paid::Upgrade(*tier), lines, actor, at)
                        .await?;
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
                self.check_plan_change(org, change, false, at)?;
                if in_trial {
                    org.tier = *tier;
                    work.plan_fact(org, "downgrade", at);
                } else {
                    let replaced = org.scheduled_tier.replace(*tier).is_some();
                    work.plan_fact(
                        org,
                        if replaced {
                            "downgrade_rescheduled"
                        } else {
                            "downgrade_scheduled"
                        },
                        at,
                    );
                    work.plan_email(org, "downgrade_scheduled", at);
                }
            }
            PlanChange::CancelDowngrade => {
                self.check_plan_change(org, change, false, at)?;
                if org.scheduled_tier.take().is_none() {
                    return Err(invalid("downgrade", "no downgrade is scheduled"));
                }
                work.plan_fact(org, "downgrade_canceled", at);
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
                self.check_plan_change(org, change, false, at)?;
                if in_trial || price.is_zero() {
                    include_addon(work, org, addon, at);
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
                    self.charge_change(
                        work,
                        org,
                        Paid::Addon(addon.clone()),
                        vec![line],
                        actor,
                        at,
                    )
                    .await?;
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
                self.check_plan_change(org, change, false, at)?;
                if in_trial {
                    org.addons.retain(|a| a != addon);
                    work.plan_fact(org, "addon_removed", at);
                    work.plan_email(org, "addon_changed", at);
                } else {
                    org.scheduled_removals.push(addon.clone());
                    work.plan_fact(org, "addon_removal_scheduled", at);
                    work.plan_email(org, "addon_changed", at);
                }
            }
            PlanChange::CancelAddonRemoval { addon } => {
                self.check_plan_change(org, change, false, at)?;
                if !org.scheduled_removals.contains(addon) {
                    return Err(invalid(
                        "addon",
                        format!("no removal of `{addon}` is scheduled"),
                    ));
                }
                org.scheduled_removals.retain(|a| a != addon);
                work.plan_fact(org, "addon_removal_canceled", at);
            }
        }
        Ok(())
    }

    /// Monthly base plus paid add-ons at the new tier minus at the old one, prorated.
    fn tier_difference(&self, org: &Org, tier: u32, at: DateTime<Utc>) -> Result<Vec<Line>> {
        let prices = &self.rules.prices;
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

    /// Issues and charges a prorated invoice; the change happens only once it is paid.
    async fn charge_change(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        paid: Paid,
        lines: Vec<Line>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        if total.is_zero() {
            return self.apply_paid(work, org, paid, actor, at).await;
        }
        if !org.lifecycle.payment_method {
            return Err(invalid(
                "payment_method",
                "no payment method on file: add a card to pay for the change",
            ));
        }
        let new = NewInvoice {
            org_id: &org.id,
            key: paid.key(at),
            period: Period::containing(at).label(),
            kind: InvoiceKind::Proration,
            currency: &org.currency,
            lines,
            issued_at: at,
        };
        let Some(invoice) = self.issue(work, org, new).await? else {
            return Err(invalid(
                "change",
                "the same change was already requested at this instant",
            ));
        };
        let charge = self.gateway.charge(org, invoice.id, invoice.total);
        match charge {
            Charge::Succeeded => {
                self.settle_charge(work, org, &invoice, charge, "gateway", at)
                    .await?;
                self.apply_paid(work, org, paid, actor, at).await
            }
            Charge::Failed | Charge::NoCard => self.decline_change(work, org, &invoice, at).await,
            // The change waits for the outcome (`payment_outcome`).
            Charge::Pending => Ok(()),
        }
    }

    async fn decline_change(
        &self,
        work: &mut Work<'_>,
        org: &Org,
        invoice: &Invoice,
        at: DateTime<Utc>,
    ) -> Result<()> {
        work.set_invoice_status(invoice.id, InvoiceStatus::Void, at)
            .await?;
        work.payment(org, invoice.id, false, "gateway", at);
        let change = match Paid::from_key(&invoice.key) {
            Some(Paid::Upgrade(_)) => "upgrade_declined",
            _ => "addon_declined",
        };
        work.plan_fact(org, change, at);
        Ok(())
    }

    async fn apply_paid(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        paid: Paid,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        match paid {
            Paid::Upgrade(tier) => self.apply_upgrade(work, org, tier, actor, at).await,
            Paid::Addon(addon) => {
                include_addon(work, org, &addon, at);
                Ok(())
            }
        }
    }

    async fn apply_upgrade(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        tier: u32,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let lifts = self.upgrade_lifts_overage(org, tier);
        org.tier = tier;
        // An upgrade cancels a scheduled downgrade.
        org.scheduled_tier = None;
        work.plan_fact(org, "upgrade", at);
        if org.lifecycle.reasons.contains(LockReason::Overage) {
            self.apply(
                work,
                org,
                Event::Upgrade {
                    lifts_overage: lifts,
                },
                actor,
                at,
            )
            .await?;
        }
        Ok(())
    }

    /// A later outcome for a plan-change invoice: apply the change when paid, void the
    /// invoice when not. No lifecycle event: a failed change charge changes no state.
    pub(super) async fn plan_payment(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        invoice: &Invoice,
        succeeded: bool,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<()> {
        if !succeeded {
            return self.decline_change(work, org, invoice, at).await;
        }
        self.settle_charge(work, org, invoice, Charge::Succeeded, "gateway", at)
            .await?;
        match Paid::from_key(&invoice.key) {
            Some(Paid::Upgrade(tier)) if tier > org.tier => {
                self.apply_upgrade(work, org, tier, actor, at).await
            }
            Some(Paid::Addon(addon)) => {
                include_addon(work, org, &addon, at);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The monthly cycle's billing for the period starting at `at`: the previous period's
    /// overage (at the tier and add-ons in force at its end), then scheduled downgrades
    /// and removals, then the new period's base and add-ons.
    pub(super) async fn cycle_lines(
        &self,
        work: &mut Work<'_>,
        org: &mut Org,
        at: DateTime<Utc>,
    ) -> Result<Vec<Line>> {
        let prices = &self.rules.prices;
        let previous = Period::containing(at).previous();
        let usage = work.usage_total(&org.id, previous).await?;
        let allowance = prices.plan(&org.plan)?.data_points_per_mau;
        let mbu = usage.mbu(org.tier, allowance);
        let mut overage = Vec::new();
        let mau_overage = prices.mau_overage(&org.plan, org.tier, mbu)?;
        if !mau_overage.is_zero() {
            overage.push(Line {
                kind: LineKind::MauOverage,
                description: format!(
                    "{} MBU over the {} MAU tier in {}",
                    mbu,
                    org.tier,
                    previous.label()
                ),
                amount: mau_overage,
            });
            for addon in &org.addons {
                let amount = prices.addon_overage(addon, org.tier, mbu)?;
                if !amount.is_zero() {
                    overage.push(Line {
                        kind: LineKind::AddonOverage,
                        description: format!(
                            "{} add-on overage in {}",
                            prices.addon(addon)?.name,
                            previous.label()
                        ),
                        amount,
                    });
                }
            }
        }
        if let Some(tier) = org.scheduled_tier.take() {
            org.tier = tier;
            work.plan_fact(org, "downgrade_applied", at);
            work.plan_email(org, "downgrade_applied", at);
        }
        if !org.scheduled_removals.is_empty() {
            let removals = std::mem::take(&mut org.scheduled_removals);
            org.addons.retain(|a| !removals.contains(a));
            work.plan_fact(org, "addon_removed", at);
            work.plan_email(org, "addon_changed", at);
        }
        let mut lines = prices.monthly_lines(&org.plan, org.tier, &org.addons)?;
        lines.extend(overage);
        Ok(lines)
    }
}

impl Work<'_> {
    fn plan_fact(&mut self, org: &Org, change: &str, at: DateTime<Utc>) {
        self.facts.push(Fact::Plan {
            at,
            org: org.id.clone(),
            tier: org.tier,
            addons: org.addons.clone(),
            change: change.to_owned(),
        });
    }

    fn plan_email(&mut self, org: &Org, template: &str, at: DateTime<Utc>) {
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
}

fn include_addon(work: &mut Work<'_>, org: &mut Org, addon: &str, at: DateTime<Utc>) {
    if !org.addons.iter().any(|a| a == addon) {
        org.addons.push(addon.to_owned());
        org.addons.sort();
    }
    work.plan_fact(org, "addon_added", at);
    work.plan_email(org, "addon_changed", at);
}
