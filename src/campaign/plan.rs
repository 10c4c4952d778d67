//! A campaign resolved against a compiled model and the snapshot: the channels, placements,
//! offers and categories it names turned into indices, and each channel's `reachable` rule
//! compiled on the snapshot's columns. Every fault carries the campaign file's path, so
//! `campaign check` and `campaign run` report the same ones.
//!
//! Nothing here reads files, decides or allocates.

use super::spec::{CampaignSpec, ChannelSpec};
use crate::engine::{CompiledModel, Rule};
use crate::model::walk::{index, join, Faults};
use crate::model::{Fault, Limits as ModelLimits, Schema};

/// A campaign resolved against one compiled model: names turned into indices.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per campaign channel (see [`CampaignSpec::channel_list`]): its index in the model and
    /// the placement the engine decides for on it.
    pub channels: Vec<ChannelPlan>,
    /// Campaign offer index (see [`Plan::offer_ids`]) by model offer index, `None` for the
    /// model's offers the campaign does not send.
    pub campaign_offer: Vec<Option<u16>>,
    /// By campaign offer index: whether the model's sales cap counts the offer.
    pub sales: Vec<bool>,
    /// The campaign's offers' `valid_until`, ascending: how many end between the run and a
    /// customer's send time is two binary searches.
    pub ends: Vec<i64>,
}

impl Plan {
    /// The campaign's offers that run at `now_ms` but end by `send_ms`.
    pub fn ending_between(&self, now_ms: i64, send_ms: i64) -> usize {
        let upto = |t: i64| self.ends.partition_point(|&e| e <= t);
        upto(send_ms).saturating_sub(upto(now_ms))
    }
}

/// One channel of a plan.
#[derive(Debug, Clone)]
pub struct ChannelPlan {
    /// The channel's index in the model.
    pub channel: usize,
    /// Its name.
    pub name: String,
    /// The placement the engine decides for.
    pub placement: String,
}

/// Where a channel's fields sit in the campaign file.
fn channel_path(spec: &CampaignSpec, ch: &ChannelSpec, field: &str) -> String {
    match (spec.multi_channel(), field) {
        (false, "") => "channel".into(),
        (false, f) => f.into(),
        (true, "") => join("channels", &ch.name),
        (true, f) => join(&join("channels", &ch.name), f),
    }
}

impl Plan {
    /// The campaign's offer ids in the order allocation numbers them: the file's `offers`,
    /// else the offers of the channels' placements in model order.
    pub fn offer_ids(spec: &CampaignSpec, model: &CompiledModel) -> Vec<String> {
        if let Some(list) = &spec.offers {
            return list.clone();
        }
        let mut idx: Vec<u32> = Vec::new();
        for ch in spec.channel_list() {
            let Some(ci) = model.channels.iter().position(|c| *c.name == ch.name) else {
                continue;
            };
            let slot = match &ch.placement {
                Some(p) => model.channels[ci].slots.iter().find(|s| *s.placement == *p),
                None => model.channels[ci].slots.first(),
            };
            idx.extend(slot.map(|s| s.candidates.to_vec()).unwrap_or_default());
        }
        idx.sort_unstable();
        idx.dedup();
        idx.iter()
            .map(|&i| model.offers[i as usize].id.to_string())
            .collect()
    }

    /// Checks the campaign against a model; every fault with the campaign file's path.
    pub fn resolve(
        spec: &CampaignSpec,
        model: &CompiledModel,
        offer_ids: &[String],
    ) -> Result<Plan, Vec<Fault>> {
        let mut f = Faults::default();
        let names = || {
            model
                .channels
                .iter()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        // A frequency cap counting a channel the model does not have counts nothing there.
        // (The default list, every outbound channel, may name one a model leaves out.)
        let given = spec.frequency.as_ref().filter(|f| {
            f.channels
                .iter()
                .map(String::as_str)
                .ne(super::spec::DEFAULT_OUTBOUND.iter().copied())
        });
        if let Some(freq) = given {
            for (i, c) in freq.channels.iter().enumerate() {
                if !model.channels.iter().any(|m| *m.name == **c) {
                    f.push(
                        &format!("frequency.channels[{i}]"),
                        format!(
                            "the model `{}` has no channel `{c}` (it has: {}): the cap would count nothing there{}",
                            model.name,
                            names(),
                            crate::near::did_you_mean(c, model.channels.iter().map(|m| &*m.name))
                        ),
                    );
                }
            }
        }
        let list = spec.channel_list();
        let mut channels = Vec::new();
        let mut slots = Vec::new();
        for ch in &list {
            let Some(ci) = model.channels.iter().position(|c| *c.name == ch.name) else {
                f.push(
                    &channel_path(spec, ch, ""),
                    format!(
                        "the model `{}` has no channel `{}` (it has: {}){}",
                        model.name,
                        ch.name,
                        names(),
                        crate::near::did_you_mean(
                            &ch.name,
                            model.channels.iter().map(|c| &*c.name)
                        )
                    ),
                );
                continue;
            };
            let channel = &model.channels[ci];
            let slot = match &ch.placement {
                Some(p) => match channel.slots.iter().find(|s| *s.placement == *p) {
                    Some(s) => Some(s),
                    None => {
                        let on: Vec<&str> = channel.slots.iter().map(|s| &*s.placement).collect();
                        f.push(
                            &channel_path(spec, ch, "placement"),
                            format!(
                                "the model has no placement `{p}` on channel `{}` (it has: {}){}",
                                ch.name,
                                on.join(", "),
                                crate::near::did_you_mean(p, on.iter().copied())
                            ),
                        );
                        None
                    }
                },
                None if channel.slots.len() == 1 => channel.slots.first(),
                None => {
                    f.push(
                        &channel_path(spec, ch, "placement"),
                        format!(
                            "missing field: channel `{}` has {} placements, name one",
                            ch.name,
                            channel.slots.len()
                        ),
                    );
                    None
                }
            };
            if let Some(s) = slot {
                channels.push(ChannelPlan {
                    channel: ci,
                    name: ch.name.clone(),
                    placement: s.placement.to_string(),
                });
                slots.push((ch, s));
            }
        }
        let mut campaign_offer = vec![None; model.offers.len()];
        // Without a channel's placement there is no list of offers to say is empty.
        if offer_ids.is_empty() && channels.len() == list.len() {
            f.push("offers", "the campaign has no offer to send");
        }
        if offer_ids.len() * list.len() > usize::from(u16::MAX) {
            f.push(
                "offers",
                format!(
                    "{} offers on {} channels: at most {} (offer, channel) pairs",
                    offer_ids.len(),
                    list.len(),
                    u16::MAX
                ),
            );
        }
        for (k, id) in offer_ids.iter().enumerate() {
            let path = match &spec.offers {
                Some(_) => index("offers", k),
                None => "offers".to_owned(),
            };
            match model.offers.iter().position(|o| *o.id == **id) {
                None => {
                    let hint = crate::near::did_you_mean(id, model.offers.iter().map(|o| &*o.id));
                    f.push(&path, format!("unknown offer `{id}`{hint}"))
                }
                Some(oi) => {
                    let shown = |s: &&crate::engine::Slot| s.candidates.contains(&(oi as u32));
                    match (spec.multi_channel(), &slots[..]) {
                        (false, [(ch, s)]) if !shown(s) => f.push(
                            &path,
                            format!(
                                "offer `{id}` is not shown in placement `{}` on channel `{}`",
                                s.placement, ch.name
                            ),
                        ),
                        (true, all)
                            if all.len() == list.len() && !all.iter().any(|(_, s)| shown(s)) =>
                        {
                            f.push(
                                &path,
                                format!(
                                    "offer `{id}` is shown in none of the channels' placements"
                                ),
                            )
                        }
                        _ => {}
                    }
                    campaign_offer[oi] = Some(k as u16);
                }
            }
        }
        // A customer is sent at most what the placement shows at once (an SMS placement's
        // one text): more offers per customer would go out together.
        for (ch, slot) in &slots {
            if spec.max_offers_per_customer as usize > slot.limit {
                f.push(
                    "max_offers_per_customer",
                    format!(
                        "{} is more than placement `{}` on channel `{}` shows at once ({}): \
                         the extra offers would be sent together",
                        spec.max_offers_per_customer, slot.placement, ch.name, slot.limit
                    ),
                );
            }
        }
        // Every channel has something to send: an offer of the campaign shown in its
        // placement, with content on the channel.
        for (plan, (ch, slot)) in channels.iter().zip(&slots) {
            let sendable = slot.candidates.iter().any(|&oi| {
                campaign_offer.get(oi as usize).copied().flatten().is_some()
                    && model.offers[oi as usize]
                        .content_json
                        .get(plan.channel)
                        .is_some_and(Option::is_some)
            });
            if !sendable && !offer_ids.is_empty() {
                f.push(
                    &channel_path(spec, ch, ""),
                    format!(
                        "no offer of the campaign has content in placement `{}` on channel `{}`: nothing could be sent there",
                        slot.placement, ch.name
                    ),
                );
            }
        }
        // Without `offers`, the campaign's offers are its placements': with a channel or a
        // placement that did not resolve (said above), a limit's offer or category would be
        // missing only as a knock-on.
        let placements_known = spec.offers.is_some() || channels.len() == list.len();
        if spec.offers.is_none() && placements_known {
            for id in spec.offer_limits.keys() {
                if !offer_ids.contains(id) {
                    let hint = crate::near::did_you_mean(id, offer_ids.iter().map(|o| &**o));
                    f.push(
                        &join("offer_limits", id),
                        format!("`{id}` is not an offer of this campaign's placement{hint}"),
                    );
                }
            }
        }
        // An offer's minimum its category's maximum cannot hold would be reported at run time
        // as a base too small.
        for (cat, &max) in &spec.category_limits {
            let in_cat: Vec<(&str, u64)> = spec
                .offer_limits
                .iter()
                .filter(|(id, l)| {
                    l.min > 0
                        && model
                            .offers
                            .iter()
                            .any(|o| *o.id == ***id && *o.category == **cat)
                })
                .map(|(id, l)| (id.as_str(), l.min))
                .collect();
            let mins: u64 = in_cat.iter().map(|(_, m)| m).sum();
            if mins > max {
                let named: Vec<String> = in_cat.iter().map(|(id, m)| format!("{id} {m}")).collect();
                f.push(
                    &join("category_limits", cat),
                    format!(
                        "max {max} is less than the minimums of its offers add up to ({mins}: \
                         {}): no list can meet both",
                        named.join(", ")
                    ),
                );
            }
        }
        for cat in spec.category_limits.keys().filter(|_| placements_known) {
            let sent = offer_ids.iter().any(|id| {
                model
                    .offers
                    .iter()
                    .any(|o| *o.id == **id && *o.category == **cat)
            });
            if !sent {
                let of_it: Vec<&str> = model
                    .offers
                    .iter()
                    .filter(|o| *o.category == **cat)
                    .map(|o| &*o.id)
                    .collect();
                let hint = if of_it.is_empty() {
                    crate::near::did_you_mean(cat, model.offers.iter().map(|o| &*o.category))
                } else {
                    let more = of_it.len().saturating_sub(3);
                    format!(
                        " (the model's {}{} have it: add one to `offers`, or drop the limit)",
                        of_it[..of_it.len().min(3)]
                            .iter()
                            .map(|id| format!("`{id}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    )
                };
                f.push(
                    &join("category_limits", cat),
                    format!("no offer of the campaign has category `{cat}`{hint}"),
                );
            }
        }
        if f.is_empty() && channels.len() == list.len() {
            let mut ends: Vec<i64> = (model.offers.iter().zip(&campaign_offer))
                .filter(|(_, k)| k.is_some())
                .map(|(o, _)| o.valid_until_ms)
                .collect();
            ends.sort_unstable();
            let mut sales = vec![false; offer_ids.len()];
            for (o, k) in model.offers.iter().zip(&campaign_offer) {
                if let Some(k) = k {
                    sales[usize::from(*k)] = o.caps.sales_capped;
                }
            }
            Ok(Plan {
                channels,
                campaign_offer,
                sales,
                ends,
            })
        } else {
            Err(f.0)
        }
    }
}

/// A control group drawn with the model's challenger experiment salt holds out the same hash
/// range the experiment gives the challenger: all of it (or none) falls in one arm, and the
/// other arm has no control. Refused, naming both.
pub fn control_salt(spec: &CampaignSpec, experiment_salt: Option<&str>) -> Result<(), Vec<Fault>> {
    match (&spec.control_group, experiment_salt) {
        (Some(c), Some(salt)) if c.salt == salt => Err(vec![Fault {
            path: "control_group.salt".into(),
            message: format!(
                "`{salt}` is the salt of the model's challenger experiment: the control group would be drawn from one arm only (the same hash decides both); give the control group a salt of its own"
            ),
        }]),
        _ => Ok(()),
    }
}

/// Each campaign channel's `reachable` rule compiled on the snapshot's columns (`None`: every
/// customer is reachable there); every fault with its path.
pub fn reach_rules(
    spec: &CampaignSpec,
    schema: &dyn Schema,
) -> Result<Vec<Option<Rule>>, Vec<Fault>> {
    let limits = ModelLimits::default();
    let mut faults = Vec::new();
    let mut out = Vec::new();
    for ch in spec.channel_list() {
        let Some(doc) = &ch.reachable else {
            out.push(None);
            continue;
        };
        let path = channel_path(spec, &ch, "reachable");
        let mut text = doc.to_string().into_bytes();
        let compiled = match simd_json::to_borrowed_value(&mut text) {
            Ok(v) => crate::model::compile_feature_rule(&v, &path, schema, &limits),
            Err(e) => Err(vec![Fault {
                path,
                message: format!("{e:?}"),
            }]),
        };
        match compiled {
            Ok(r) => out.push(Some(r)),
            Err(f) => faults.extend(f),
        }
    }
    if faults.is_empty() {
        Ok(out)
    } else {
        Err(faults)
    }
}

/// The snapshot column of the send window's `time_zone` feature (`None` without one), which
/// must hold names (a text column).
pub fn zone_column(
    spec: &CampaignSpec,
    features: &crate::features::FeatureStore,
) -> Result<Option<usize>, Vec<Fault>> {
    let Some(name) = spec
        .send_window
        .as_ref()
        .and_then(|w| w.zone_feature.as_deref())
    else {
        return Ok(None);
    };
    let path = "send_window.time_zone.feature".to_owned();
    match features.column(name) {
        None => Err(vec![Fault {
            path,
            message: crate::model::Schema::unknown(features, name),
        }]),
        Some(c) if features.dictionary(c).is_none() => Err(vec![Fault {
            path,
            message: format!(
                "`{name}` is a number column: time zones are IANA names such as `Europe/Berlin`, a text column"
            ),
        }]),
        Some(c) => Ok(Some(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::Plan;

    #[test]
    fn offers_ending_between_the_run_and_the_send_time_are_counted() {
        let plan = Plan {
            channels: Vec::new(),
            campaign_offer: Vec::new(),
            sales: Vec::new(),
            ends: vec![100, 200, 200, 300, i64::MAX],
        };
        assert_eq!(plan.ending_between(50, 99), 0);
        assert_eq!(
            plan.ending_between(50, 100),
            1,
            "ending at the send time counts"
        );
        assert_eq!(
            plan.ending_between(100, 250),
            2,
            "one that ended by the run does not"
        );
        assert_eq!(plan.ending_between(50, 1_000), 4);
        assert_eq!(plan.ending_between(300, 200), 0);
    }
}
