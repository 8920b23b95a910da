//! Personal data taken out of text a public channel publishes (leader-board replies).
//!
//! A reply is written by a department about a citizen's problem; its note can quote the
//! citizen (`葛女士，电话138 0631 2345`). Mobile numbers in any human format, landlines
//! with an area code, 18-character ID-card numbers, e-mail addresses and the reporter's
//! name are replaced by [`MASK`]. The `regex` crate does the finding: the formats are
//! many, and a hand-written scanner for them would be longer and less obviously right.

use regex::Regex;
use std::sync::LazyLock;

/// What personal data is replaced with.
pub const MASK: &str = "***";

// The optional country prefix: +86, 0086, 86, (+86), with an optional space or dash.
// Bare 7–8 digit local numbers are not matched: without an area code they cannot be told
// from amounts, counts and ids.
const PATTERN: &str = r"(?x)
      [0-9]{17}[0-9Xx]                                       # ID-card number
    | (?:\(?(?:\+|00)?86\)?[\s-]?)?
      1[3-9][0-9](?:[\s-]?[0-9]){8}                          # mobile: 138 0631 2345
    | (?:\(?(?:\+|00)?86\)?[\s-]?)?
      (?:\(0[0-9]{2,3}\)|0[0-9]{2,3})[\s-]?[0-9]{7,8}(?:-[0-9]{1,6})?  # landline: 0631-7561234
    | \(?(?:\+|00)86\)?[\s-]?[1-9][0-9]{1,2}[\s-]?[0-9]{7,8}   # landline: +86 631 7561234
    | [A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}  # e-mail
";

static PERSONAL_DATA: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(PATTERN).ok());

/// `text` without personal data, or `None` if the pattern is unusable (then nothing may
/// be published: the caller fails closed).
pub fn scrub(text: &str, reporter_name: Option<&str>) -> Option<String> {
    let re = PERSONAL_DATA.as_ref()?;
    let mut text = text.to_string();
    if let Some(name) = reporter_name.map(str::trim).filter(|n| !n.is_empty()) {
        text = text.replace(name, MASK);
    }
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut pos) = (0, 0);
    // The regex crate has no look-around, so "not part of a longer number" is checked
    // here; a candidate inside a longer run of digits is skipped and the search resumes
    // one character later, so overlapping candidates are still found.
    while let Some(m) = re.find_at(&text, pos) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        out.push_str(&text[copied..m.start()]);
        out.push_str(MASK);
        copied = m.end();
        pos = m.end();
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        scrub(text, None).unwrap()
    }

    #[test]
    fn the_pattern_compiles() {
        assert!(PERSONAL_DATA.is_some());
    }

    #[test]
    fn mobile_numbers_in_any_format() {
        for phone in [
            "13806312345",
            "138 0631 2345",
            "138-0631-2345",
            "+86 13806312345",
            "+8613806312345",
            "+86-138-0631-2345",
            "(+86)13806312345",
            "008613806312345",
            "8613806312345",
        ] {
            assert_eq!(s(&format!("电话{phone}，")), "电话***，", "{phone}");
        }
        assert_eq!(s("13806312345"), "***");
        assert_eq!(s("a 13806312345 and 15006311234."), "a *** and ***.");
    }

    #[test]
    fn landlines_id_numbers_and_email() {
        assert_eq!(s("座机0631-7561234转"), "座机***转");
        assert_eq!(s("座机(0631)7561234"), "座机***");
        assert_eq!(s("座机0631 7561234"), "座机***");
        assert_eq!(s("+86 631 7561234"), "***");
        assert_eq!(s("010-12345678-123"), "***");
        assert_eq!(s("身份证370602199001011234。"), "身份证***。");
        assert_eq!(s("身份证37060219900101123X"), "身份证***");
        assert_eq!(s("邮箱 ge.nvshi+1@mail.example.cn 联系"), "邮箱 *** 联系");
    }

    #[test]
    fn other_numbers_are_left_alone() {
        for text in [
            "工单RC2026112400123已办结",
            "网格371082001003005",
            "2026-11-24 09:15:03",
            "拨打12345热线",
            "供暖温度只有14度",
            "1764036000000",
            "共计12000元",
            "12345678901234567890123",
        ] {
            assert_eq!(s(text), text);
        }
    }

    #[test]
    fn the_reporters_name_goes_too() {
        assert_eq!(
            scrub("葛女士反映的问题已办结，已告知葛女士。", Some(" 葛女士 ")).unwrap(),
            "***反映的问题已办结，已告知***。"
        );
        assert_eq!(scrub("无名", Some("")).unwrap(), "无名");
    }
}
