//! The canonical petition (`schemas/petition.v1.schema.json`) and its identity.

use serde::{Deserialize, Serialize};

/// Namespace for petition ids: UUID v5 of (channel, source id), so a channel that resends
/// a petition whose answer it lost gets the same id back without any lookup.
const PETITION_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1c_2b7e_52a4_4f0e_9d1b_7c3a_0e5d_8a11);

pub fn petition_id(channel: &str, source_id: &str) -> String {
    let name = format!("{channel}\u{1f}{source_id}");
    uuid::Uuid::new_v5(&PETITION_ID_NAMESPACE, name.as_bytes()).to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Petition {
    pub id: String,
    pub channel: String,
    pub source_id: String,
    pub received_at: String,
    pub reported_at: String,
    /// The channel gave no reported time: `reported_at` is the receipt time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported_at_unknown: bool,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_label: Option<String>,
    pub urgency: String,
    pub reporter: Reporter,
    pub location: Location,
    pub attachments: Vec<String>,
    pub trace_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reporter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub reporter_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_code: Option<String>,
    pub region: Region,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Region {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub level: RegionLevel,
    pub resolved_by: ResolvedBy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RegionLevel {
    County,
    Street,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    GridCode,
    Coordinates,
    Address,
    Text,
    Default,
}

/// A phone number fit for a log line: country code and the last four digits only.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return "*".repeat(digits.len());
    }
    let tail: String = digits[digits.len() - 4..].iter().collect();
    let head: String = if phone.starts_with("+86") {
        "+86".into()
    } else {
        digits[..2].iter().collect()
    };
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_source_gets_the_same_id_and_channels_do_not_collide() {
        assert_eq!(petition_id("hotline", "RC1"), petition_id("hotline", "RC1"));
        assert_ne!(
            petition_id("hotline", "RC1"),
            petition_id("city-app", "RC1")
        );
        assert_ne!(petition_id("hotline", "RC1"), petition_id("hotline", "RC2"));
        // The separator keeps ("a-b", "c") apart from ("a", "b-c").
        assert_ne!(petition_id("ab", "c"), petition_id("a", "bc"));
    }

    #[test]
    fn masked_phones_keep_no_more_than_the_last_four_digits() {
        let masked = mask_phone("+8613806312345");
        assert_eq!(masked, "+86****2345");
        assert!(!masked.contains("1380631"));
        assert_eq!(mask_phone(""), "");
        assert_eq!(mask_phone("123"), "***");
    }
}
