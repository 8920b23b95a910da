//! What one record of `petitions.cases` or `callbacks.delivery` changes in the ledger:
//! the columns its queries filter on, taken out of the JSON once, when it is stored.

use serde_json::Value;

/// One record, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerRecord {
    Case {
        case_id: String,
        partition: i32,
        department: String,
        escalated: bool,
        opened_at: Option<String>,
        opened_unix: Option<i64>,
        region: Option<String>,
        category: Option<String>,
        place: Option<String>,
        json: String,
    },
    Report {
        petition_id: String,
        case_id: String,
        partition: i32,
        channel: String,
        reported_unix: Option<i64>,
        json: String,
    },
    /// The case's first petition as published.
    Petition {
        case_id: String,
        partition: i32,
        json: String,
    },
    Lifecycle {
        case_id: String,
        partition: i32,
        department: String,
        phase: String,
        overdue: bool,
        escalated: bool,
        deadline: Option<i64>,
        json: String,
    },
    /// One move's history entries (JSON text each), from position `from`.
    History {
        case_id: String,
        from: i64,
        entries: Vec<String>,
    },
    /// A callback's final delivery record.
    Callback {
        callback_id: String,
        case_id: String,
        finished_at: Option<String>,
        json: String,
    },
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn unix(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
}

impl LedgerRecord {
    /// What `value`, read from `topic`, changes; `None` for a record the ledger does not
    /// keep (or one without the ids it needs).
    pub fn parse(cases_topic: &str, topic: &str, partition: i32, value: &Value) -> Option<Self> {
        let id = |key: &str| text(&value[key]);
        let json = value.to_string();
        if topic != cases_topic {
            return Some(LedgerRecord::Callback {
                callback_id: id("callback_id")?,
                case_id: id("case_id")?,
                finished_at: text(&value["finished_at"]),
                json,
            });
        }
        let case_id = id("case_id")?;
        Some(match value["type"].as_str()? {
            "case" => LedgerRecord::Case {
                department: text(&value["department"]).unwrap_or_default(),
                escalated: value["escalated"].as_bool() == Some(true),
                opened_at: text(&value["dispatched_at"]),
                opened_unix: unix(&value["dispatched_at"]),
                region: text(&value["region"]),
                category: text(&value["routing"]["category"]),
                place: text(&value["seed"]["address"]),
                case_id,
                partition,
                json,
            },
            "report" => LedgerRecord::Report {
                petition_id: id("petition_id")?,
                channel: text(&value["channel"]).unwrap_or_default(),
                reported_unix: unix(&value["reported_at"]),
                case_id,
                partition,
                json,
            },
            "petition" => LedgerRecord::Petition {
                json: value["petition"].to_string(),
                case_id,
                partition,
            },
            "lifecycle" => LedgerRecord::Lifecycle {
                department: text(&value["department"]).unwrap_or_default(),
                phase: text(&value["phase"]).unwrap_or_else(|| "dispatched".into()),
                overdue: value["overdue"].as_bool() == Some(true),
                escalated: value["escalated"].as_bool() == Some(true),
                deadline: value["deadline"].as_i64(),
                case_id,
                partition,
                json,
            },
            "history" => LedgerRecord::History {
                from: value["from"].as_i64()?,
                entries: value["entries"]
                    .as_array()?
                    .iter()
                    .map(Value::to_string)
                    .collect(),
                case_id,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_case_record_yields_the_columns_the_queries_filter_on() {
        let r = LedgerRecord::parse(
            "c",
            "c",
            2,
            &json!({"type": "case", "case_id": "k1", "department": "water",
                "escalated": true, "dispatched_at": "2026-11-24T10:00:00+08:00",
                "region": "330102001", "routing": {"category": "C01"},
                "seed": {"address": "解放路12号"}}),
        );
        let Some(LedgerRecord::Case {
            partition,
            department,
            escalated,
            opened_unix,
            category,
            place,
            ..
        }) = r
        else {
            panic!("not a case: {r:?}");
        };
        assert_eq!(partition, 2);
        assert_eq!(department, "water");
        assert!(escalated);
        assert_eq!(opened_unix, Some(1_795_485_600));
        assert_eq!(category.as_deref(), Some("C01"));
        assert_eq!(place.as_deref(), Some("解放路12号"));
    }

    #[test]
    fn records_without_ids_or_of_unknown_kinds_are_not_kept() {
        for v in [
            json!({"type": "report", "case_id": "k1"}),
            json!({"type": "case"}),
            json!({"type": "snapshot", "case_id": "k1"}),
        ] {
            assert_eq!(LedgerRecord::parse("c", "c", 0, &v), None, "{v}");
        }
        assert_eq!(
            LedgerRecord::parse("c", "d", 0, &json!({"case_id": "k1"})),
            None
        );
    }

    #[test]
    fn a_lifecycle_names_the_department_and_phase_now() {
        let r = LedgerRecord::parse(
            "c",
            "c",
            1,
            &json!({"type": "lifecycle", "case_id": "k1", "phase": "accepted",
                "department": "housing", "overdue": true, "deadline": 1_796_000_000}),
        );
        assert!(matches!(
            r,
            Some(LedgerRecord::Lifecycle { ref department, ref phase, overdue: true,
                deadline: Some(1_796_000_000), .. }) if department == "housing" && phase == "accepted"
        ));
    }
}
