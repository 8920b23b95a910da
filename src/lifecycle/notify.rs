//! From a case's notices to callbacks: one outbox record per notice and linked source,
//! for the channels that take callbacks. The records go to `callbacks.<channel>` keyed
//! by case id (one partition per case, so a case's callbacks stay in order) in the same
//! transaction as the move that caused them.

use super::machine::{Effects, Lifecycle};
use serde::{Deserialize, Serialize};

/// One callback to send: what happened to the case, for one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxCallback {
    /// Stable across a redone transaction: case, history position, petition, status.
    pub callback_id: String,
    pub channel: String,
    pub source_id: String,
    pub petition_id: String,
    pub case_id: String,
    /// A canonical status (received, accepted, dispatched, merged, …).
    pub status: String,
    /// The case's phase after the move (for `merged`: the state of the case joined).
    pub case_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Unix seconds of the move.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// For `merged`: the case the report joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// Only to scrub it from public replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter_name: Option<String>,
    /// Every source's reporter name: masked in the note whatever the channel, so a
    /// department's note never carries one citizen's name to another's channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// `text` with every one of `names` masked.
pub fn mask_names(text: &str, names: &[String]) -> String {
    names
        .iter()
        .filter(|n| n.chars().count() >= 2)
        .fold(text.to_string(), |t, n| t.replace(n.as_str(), "***"))
}

/// The callbacks `fx` asks for, given the case after the move.
/// `takes_callbacks`: whether a channel has a callback (Open311 clients poll instead).
/// `department_name`: the responsibility list's name for a department code.
pub fn callbacks(
    case: &Lifecycle,
    fx: &Effects,
    at: i64,
    takes_callbacks: &dyn Fn(&str) -> bool,
    department_name: &dyn Fn(&str) -> Option<String>,
) -> Vec<OutboxCallback> {
    let working = (case.department != super::TRIAGE).then(|| case.department.clone());
    let names: Vec<String> = case
        .sources
        .iter()
        .filter_map(|s| s.reporter_name.clone())
        .collect();
    let mut out = Vec::new();
    for (i, notice) in fx.notices.iter().enumerate() {
        for source in &case.sources {
            if notice
                .only
                .as_ref()
                .is_some_and(|p| *p != source.petition_id)
                || !takes_callbacks(&source.channel)
            {
                continue;
            }
            out.push(OutboxCallback {
                callback_id: format!(
                    "{}/{}.{i}/{}/{}",
                    case.case_id, case.history_len, source.petition_id, notice.status
                ),
                channel: source.channel.clone(),
                source_id: source.source_id.clone(),
                petition_id: source.petition_id.clone(),
                case_id: case.case_id.clone(),
                status: notice.status.to_string(),
                case_status: case.phase.as_str().to_string(),
                department: working.clone(),
                department_name: working.as_deref().and_then(department_name),
                note: notice.note.clone(),
                at,
                deadline: case.deadline,
                merged_into: (notice.status == "merged").then(|| case.case_id.clone()),
                reporter_name: source.reporter_name.clone(),
                names: names.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Source;

    fn source(id: &str, channel: &str) -> Source {
        Source {
            petition_id: id.into(),
            channel: channel.into(),
            source_id: format!("S-{id}"),
            reporter_name: Some("葛女士".into()),
            joined_at: 0,
        }
    }

    #[test]
    fn every_source_hears_every_notice_in_order_except_polling_channels() {
        let (mut case, fx) = Lifecycle::opened(
            "c1",
            "water",
            Some(72 * 3600),
            false,
            source("c1", "hotline"),
            100,
        );
        let name = |d: &str| (d == "water").then(|| "水务局".to_string());
        let takes = |c: &str| c != "open311";
        let first = callbacks(&case, &fx, 100, &takes, &name);
        let got: Vec<_> = first.iter().map(|c| c.status.as_str()).collect();
        assert_eq!(got, ["received", "dispatched"]);
        assert_eq!(first[1].department_name.as_deref(), Some("水务局"));
        assert_eq!(first[1].deadline, Some(100 + 72 * 3600));

        let fx = case.merged(source("p2", "city-app"), true, 200);
        let _ = case.merged(source("p3", "open311"), false, 201);
        let merged = callbacks(&case, &fx, 200, &takes, &name);
        let got: Vec<_> = merged
            .iter()
            .map(|c| (c.petition_id.as_str(), c.status.as_str()))
            .collect();
        // The new report hears received and merged; everyone hears the escalation.
        assert_eq!(
            got,
            [
                ("p2", "received"),
                ("p2", "merged"),
                ("c1", "escalated"),
                ("p2", "escalated")
            ]
        );
        assert_eq!(merged[1].merged_into.as_deref(), Some("c1"));
        assert_eq!(
            mask_names("已联系葛女士核实", &merged[0].names),
            "已联系***核实",
            "the first report's name is masked in what the second hears"
        );
        assert_eq!(merged[1].case_status, "dispatched");
        let ids: std::collections::HashSet<_> = first
            .iter()
            .chain(&merged)
            .map(|c| c.callback_id.clone())
            .collect();
        assert_eq!(
            ids.len(),
            first.len() + merged.len(),
            "callback ids are unique"
        );
    }
}
