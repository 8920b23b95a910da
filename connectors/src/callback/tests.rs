//! Callbacks of the shipped connector files, checked field by field against CHANNELS.md.

use super::*;
use crate::auth::AuthInput;
use crate::definition::ConnectorDefinition;
use chrono::TimeZone;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::path::Path;

const HOTLINE: &str = include_str!("../../hotline.toml");
const CITY_APP: &str = include_str!("../../city-app.toml");
const COMMUNITY: &str = include_str!("../../community-app.toml");
const LEADER_BOARD: &str = include_str!("../../leader-board.toml");
const SUPERVISION: &str = include_str!("../../supervision.toml");
const OPEN311: &str = include_str!("../../open311.toml");

const NOW: i64 = 1_795_000_000;

fn definition(text: &str) -> ConnectorDefinition {
    ConnectorDefinition::parse(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(text: &str) -> CallbackSpec {
    definition(text)
        .callback
        .unwrap_or_else(|| panic!("no [callback]"))
}

/// Problems of a modified definition, as one string.
fn problems(text: &str) -> String {
    ConnectorDefinition::parse(text, Path::new("x.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

fn settings(key: &str) -> Option<String> {
    match key {
        "base" => Some("http://channel.test:9301/".into()),
        "token" => Some("tok".into()),
        "secret" => Some("dev-city-app-secret".into()),
        "api_key" => Some("community-key".into()),
        "app_key" => Some("board-key".into()),
        _ => None,
    }
}

fn event(channel: &str, status: &str) -> CallbackEvent {
    CallbackEvent {
        channel: channel.into(),
        source_id: "RC2026112400123".into(),
        petition_id: "p-7f3a".into(),
        case_id: "c-91".into(),
        status: status.into(),
        department_code: Some("rc-zjj".into()),
        department_name: Some("荣成市住房和城乡建设局".into()),
        note: Some("已更换楼道灯".into()),
        // 18:30:05 in Asia/Shanghai; Unix 1795516205 (python3: datetime(2026,11,24,10,30,5,tzinfo=timezone.utc).timestamp()).
        at: Utc
            .with_ymd_and_hms(2026, 11, 24, 10, 30, 5)
            .single()
            .unwrap(),
        deadline: None,
        merged_into: None,
        case_status: None,
        reporter_name: Some("葛女士".into()),
    }
}

fn render(spec: &CallbackSpec, e: &CallbackEvent) -> CallbackRequest {
    spec.render(e, &settings, NOW)
        .unwrap_or_else(|err| panic!("{err}"))
        .unwrap_or_else(|| panic!("{} is not sent", e.status))
}

fn json_body(r: &CallbackRequest) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn header<'a>(r: &'a CallbackRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn every_shipped_callback_renders_every_status_it_maps() {
    for text in [HOTLINE, CITY_APP, COMMUNITY, LEADER_BOARD, SUPERVISION] {
        let s = spec(text);
        let mut sent = 0;
        for status in CANONICAL_STATUSES {
            let Some(r) = s
                .render(&event(s.connector(), status), &settings, NOW)
                .unwrap()
            else {
                assert!(!s.statuses.contains_key(*status));
                continue;
            };
            sent += 1;
            assert!(r.url.starts_with("http://channel.test:9301/"), "{}", r.url);
            let text = String::from_utf8(r.body.clone()).unwrap();
            match s.format {
                CallbackFormat::Json => assert!(serde_json::from_str::<Value>(&text).is_ok()),
                CallbackFormat::Xml => assert!(crate::xml::xml_to_json(&text).is_ok(), "{text}"),
            }
        }
        assert_eq!(sent, s.statuses.len(), "{}", s.connector());
    }
}

#[test]
fn open311_has_no_callback_and_files_without_one_still_load() {
    assert!(definition(OPEN311).callback().is_none());
}

#[test]
fn hotline_status_back() {
    let s = spec(HOTLINE);
    let r = render(&s, &event("hotline", "received"));
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, "http://channel.test:9301/api/gd/fk");
    assert_eq!(
        r.headers,
        vec![("Authorization".into(), "Bearer tok".into())]
    );
    assert_eq!(r.content_type, "application/json; charset=utf-8");
    // Field by field, and in the contract's order.
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"gdbh":"RC2026112400123","zt":"01","blbm":"荣成市住房和城乡建设局","bljg":"工单已受理","clsj":"2026-11-24 18:30:05"}"#
    );

    let b = json_body(&render(&s, &event("hotline", "dispatched")));
    assert_eq!(b["zt"], json!("02"));
    assert_eq!(b["bljg"], json!("已派单至荣成市住房和城乡建设局"));
    // With the deadline the gateway set, in local time.
    let mut e = event("hotline", "dispatched");
    e.deadline = Utc.with_ymd_and_hms(2026, 11, 27, 10, 30, 5).single();
    let b = json_body(&render(&s, &e));
    assert_eq!(
        b["bljg"],
        json!("已派单至荣成市住房和城乡建设局，办理时限2026-11-27 18:30")
    );

    let b = json_body(&render(&s, &event("hotline", "resolved")));
    assert_eq!(b["zt"], json!("04"));
    assert_eq!(b["bljg"], json!("已更换楼道灯"));

    // No department, no note: strings stay strings (the platform requires blbm and bljg).
    let mut e = event("hotline", "resolved");
    e.department_name = None;
    e.note = None;
    let b = json_body(&render(&s, &e));
    assert_eq!(b["blbm"], json!(""));
    assert_eq!(b["bljg"], json!("已办结"));

    for (status, zt) in [
        ("accepted", "03"),
        ("in_progress", "03"),
        ("returned", "05"),
        ("merged", "06"),
        ("rejected", "07"),
        ("reopened", "08"),
    ] {
        assert_eq!(
            json_body(&render(&s, &event("hotline", status)))["zt"],
            json!(zt)
        );
    }
}

#[test]
fn unmapped_statuses_are_not_sent() {
    for status in ["overdue", "closed", "escalated"] {
        assert_eq!(
            spec(HOTLINE).render(&event("hotline", status), &settings, NOW),
            Ok(None)
        );
    }
    assert_eq!(
        spec(LEADER_BOARD).render(&event("leader-board", "in_progress"), &settings, NOW),
        Ok(None)
    );
}

#[test]
fn city_app_progress_is_signed_over_timestamp_dot_body() {
    let s = spec(CITY_APP);
    let mut e = event("city-app", "resolved");
    e.source_id = "HW-88231".into();
    let r = render(&s, &e);
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        "http://channel.test:9301/open/v1/tickets/HW-88231/progress"
    );
    let b = json_body(&r);
    assert_eq!(
        b,
        json!({"status": "DONE", "message": "已更换楼道灯", "handler": "荣成市住房和城乡建设局",
               "time": "2026-11-24T18:30:05+08:00"})
    );
    assert!(DateTime::parse_from_rfc3339(b["time"].as_str().unwrap()).is_ok());

    // Verifiable with the shared secret, independently of our own signing code.
    assert_eq!(header(&r, "X-Timestamp"), Some(NOW.to_string().as_str()));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"dev-city-app-secret").unwrap();
    mac.update(format!("{NOW}.").as_bytes());
    mac.update(&r.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(header(&r, "X-Signature"), Some(expected.as_str()));
    // And by the scheme the gateway uses to check the app's own requests.
    let lowered: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let lookup = |name: &str| {
        lowered
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let input = AuthInput {
        header: &lookup,
        body: &r.body,
        fields: None,
        now_unix: NOW + 10,
    };
    assert_eq!(s.auth.verify(&input, "dev-city-app-secret"), Ok(()));
    assert!(s.auth.verify(&input, "another-secret").is_err());

    for (status, word) in [
        ("received", "ACCEPTED"),
        ("dispatched", "DISPATCHED"),
        ("in_progress", "PROCESSING"),
        ("returned", "RETURNED"),
        ("merged", "MERGED"),
        ("rejected", "REJECTED"),
        ("reopened", "REOPENED"),
    ] {
        assert_eq!(
            json_body(&render(&s, &event("city-app", status)))["status"],
            json!(word)
        );
    }
}

#[test]
fn path_variables_are_percent_encoded_and_cannot_climb() {
    let s = spec(CITY_APP);
    let mut e = event("city-app", "resolved");
    e.source_id = "HW 1/2?x=路灯".into();
    assert_eq!(
        render(&s, &e).url,
        "http://channel.test:9301/open/v1/tickets/HW%201%2F2%3Fx%3D%E8%B7%AF%E7%81%AF/progress"
    );
    for bad in ["..", ".", ""] {
        e.source_id = bad.into();
        let err = s.render(&e, &settings, NOW).unwrap_err();
        assert!(matches!(err, CallbackError::Render { .. }), "{err}");
        assert!(!err.retryable());
        assert!(err.to_string().contains("callback.url"), "{err}");
    }
}

#[test]
fn community_status_is_put_with_numbers() {
    let s = spec(COMMUNITY);
    let mut e = event("community-app", "resolved");
    e.source_id = "SQ202611240007".into();
    let r = render(&s, &e);
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.url,
        "http://channel.test:9301/api/events/SQ202611240007/status"
    );
    assert_eq!(
        r.headers,
        vec![("X-Api-Key".into(), "community-key".into())]
    );
    let b = json_body(&r);
    assert_eq!(
        b,
        json!({"statusCode": 4, "remark": "已更换楼道灯", "operateTime": 1_795_516_205_000_i64})
    );
    assert!(b["statusCode"].is_u64(), "a number, not \"4\"");
    assert_eq!(b["operateTime"].as_i64(), Some(e.at.timestamp_millis()));
    for (status, code) in [
        ("received", 1),
        ("dispatched", 2),
        ("in_progress", 3),
        ("reopened", 8),
    ] {
        assert_eq!(
            json_body(&render(&s, &event("community-app", status)))["statusCode"],
            json!(code)
        );
    }
}

#[test]
fn leader_board_reply() {
    let s = spec(LEADER_BOARD);
    let mut e = event("leader-board", "dispatched");
    e.source_id = "LB-5530912".into();
    let r = render(&s, &e);
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        "http://channel.test:9301/api/messages/LB-5530912/reply"
    );
    assert_eq!(r.headers, vec![("AppKey".into(), "board-key".into())]);
    assert_eq!(
        json_body(&r),
        json!({"content": "网友您好！您反映的问题已转交荣成市住房和城乡建设局办理，感谢您的关注。",
               "dept": "荣成市住房和城乡建设局", "replyTime": "2026-11-24 18:30:05"})
    );
}

#[test]
fn public_replies_carry_no_personal_data() {
    let s = spec(LEADER_BOARD);
    let mut e = event("leader-board", "resolved");
    e.note = Some(
        "葛女士（电话138 0631 2345，座机0631-7561234，身份证370602199001011234，\
         邮箱ge@example.cn）反映的楼道灯已更换，已电话告知葛女士"
            .into(),
    );
    e.department_name = Some("荣成市住建局（+86 13906311234）".into());
    let b = json_body(&render(&s, &e));
    let content = b["content"].as_str().unwrap();
    let dept = b["dept"].as_str().unwrap();
    for gone in [
        "葛女士",
        "138",
        "0631",
        "7561234",
        "370602199001011234",
        "ge@example.cn",
        "13906311234",
    ] {
        assert!(!content.contains(gone), "{gone} in {content}");
        assert!(!dept.contains(gone), "{gone} in {dept}");
    }
    assert_eq!(
        content,
        "网友您好！您反映的问题经荣成市住建局（***）办理，情况如下：\
         ***（电话***，座机***，身份证***，邮箱***）反映的楼道灯已更换，已电话告知***。感谢您的监督。"
    );
    // A channel that does not publish gets the note as written.
    let mut e = event("hotline", "resolved");
    e.note = Some("已电话告知葛女士13806312345".into());
    assert_eq!(
        json_body(&render(&spec(HOTLINE), &e))["bljg"],
        json!("已电话告知葛女士13806312345")
    );
}

#[test]
fn supervision_feedback_is_xml_in_the_contracts_order() {
    let s = spec(SUPERVISION);
    let mut e = event("supervision", "resolved");
    e.source_id = "DC20261124000031".into();
    e.note = Some("已督促支付 <账款> & 利息".into());
    let r = render(&s, &e);
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        "http://channel.test:9301/dc/clues/DC20261124000031/feedback"
    );
    assert_eq!(r.headers, vec![("Token".into(), "tok".into())]);
    assert_eq!(r.content_type, "application/xml; charset=utf-8");
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><feedback><status>已办结</status>\
         <handlingDept>荣成市住房和城乡建设局</handlingDept>\
         <result>已督促支付 &lt;账款&gt; &amp; 利息</result><time>2026-11-24 18:30:05</time></feedback>"
    );
    let doc = crate::xml::xml_to_json(std::str::from_utf8(&r.body).unwrap()).unwrap();
    assert_eq!(doc["feedback"]["result"], json!("已督促支付 <账款> & 利息"));
    let e = event("supervision", "escalated");
    assert_eq!(
        crate::xml::xml_to_json(std::str::from_utf8(&render(&s, &e).body).unwrap()).unwrap()
            ["feedback"]["status"],
        json!("提级办理")
    );
}

#[test]
fn time_variables() {
    let s = spec(
        &HOTLINE.replace(
            "bljg = \"{{message}}\"",
            "bljg = \"{{deadline_local:%m月%d日|无期限}}\"\nat = \"{{at_unix}}\"\n\
             dl = \"{{deadline_rfc3339}}\"\ndlms = \"{{deadline_unix_ms}}\"\nt = \"{{at_local:%H:%M}}\"",
        ),
    );
    let mut e = event("hotline", "received");
    let b = json_body(&render(&s, &e));
    assert_eq!(b["bljg"], json!("无期限"));
    assert_eq!(b["dl"], json!(""));
    assert_eq!(b["at"], json!(1_795_516_205_i64));
    assert_eq!(b["t"], json!("18:30"));
    // 2026-11-26 15:59:59 UTC is 23:59:59 local on the 26th; 16:00 is already the 27th.
    e.deadline = Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).single();
    let b = json_body(&render(&s, &e));
    assert_eq!(b["bljg"], json!("11月27日"));
    assert_eq!(b["dl"], json!("2026-11-27T00:00:00+08:00"));
    assert_eq!(b["dlms"], json!(1_795_708_800_000_i64));
}

#[test]
fn events_travel_as_json() {
    let e = event("hotline", "resolved");
    let text = serde_json::to_string(&e).unwrap();
    assert!(
        !text.contains("deadline"),
        "absent fields are left out: {text}"
    );
    assert_eq!(serde_json::from_str::<CallbackEvent>(&text).unwrap(), e);
    let minimal: CallbackEvent = serde_json::from_value(json!({
        "channel": "hotline", "source_id": "RC1", "petition_id": "p", "case_id": "c",
        "status": "accepted", "at": "2026-11-24T10:30:05Z"}))
    .unwrap();
    assert_eq!(minimal.department_name, None);
}

#[test]
fn render_errors_name_the_connector_and_say_whether_to_retry() {
    let s = spec(HOTLINE);
    let e = event("hotline", "resolved");

    let no_base = |k: &str| if k == "base" { None } else { settings(k) };
    let err = s.render(&e, &no_base, NOW).unwrap_err();
    assert_eq!(
        err,
        CallbackError::MissingSetting {
            connector: "hotline".into(),
            key: "base".into()
        }
    );
    assert!(err.retryable());
    assert!(err.to_string().contains("hotline"), "{err}");

    let no_token = |k: &str| {
        if k == "token" {
            Some(" ".into())
        } else {
            settings(k)
        }
    };
    assert!(matches!(
        s.render(&e, &no_token, NOW),
        Err(CallbackError::MissingSetting { key, .. }) if key == "token"
    ));

    let ftp = |k: &str| {
        if k == "base" {
            Some("ftp://x".into())
        } else {
            settings(k)
        }
    };
    assert!(matches!(
        s.render(&e, &ftp, NOW),
        Err(CallbackError::BadBase { .. })
    ));

    let err = s
        .render(&event("city-app", "resolved"), &settings, NOW)
        .unwrap_err();
    assert!(matches!(err, CallbackError::WrongChannel { .. }));
    assert!(!err.retryable());

    let err = s
        .render(&event("hotline", "finished"), &settings, NOW)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "callback for hotline: \"finished\" is not a canonical status"
    );
    assert!(!err.retryable());
    assert_eq!(err.connector(), "hotline");
}

fn outcome(
    s: &CallbackSpec,
    status: u16,
    retry_after: Option<&str>,
    body: &str,
) -> DeliveryOutcome {
    s.classify(status, retry_after, body.as_bytes())
}

fn is_retry(o: &DeliveryOutcome) -> bool {
    matches!(o, DeliveryOutcome::Retry { .. })
}

fn is_permanent(o: &DeliveryOutcome) -> bool {
    matches!(o, DeliveryOutcome::Permanent { .. })
}

#[test]
fn hotline_answers() {
    let s = spec(HOTLINE);
    assert_eq!(
        outcome(&s, 200, None, r#"{"code": 0, "msg": "ok"}"#),
        DeliveryOutcome::Done
    );
    assert_eq!(
        outcome(&s, 200, None, r#"{"code": "0"}"#),
        DeliveryOutcome::Done
    );
    assert_eq!(
        outcome(&s, 200, None, r#"{"code": 5003, "msg": "系统繁忙"}"#),
        DeliveryOutcome::Retry {
            after: None,
            reason: "code 5003: 系统繁忙".into()
        }
    );
    assert!(is_retry(&outcome(&s, 200, None, r#"{"code": 5001}"#)));
    assert!(is_retry(&outcome(&s, 200, None, r#"{"code": 5999}"#)));
    assert_eq!(
        outcome(
            &s,
            200,
            None,
            r#"{"code": 4001, "msg": "参数错误：zt 取值错误"}"#
        ),
        DeliveryOutcome::Permanent {
            reason: "code 4001: 参数错误：zt 取值错误".into()
        }
    );
    assert!(is_permanent(&outcome(&s, 200, None, r#"{"code": 6000}"#)));
    assert!(is_permanent(&outcome(&s, 200, None, r#"{"code": 4010}"#)));
    // Not the platform's envelope: unknown whether it arrived.
    assert!(is_retry(&outcome(
        &s,
        200,
        None,
        "<html>maintenance</html>"
    )));
    assert_eq!(
        outcome(&s, 429, Some("1"), r#"{"code": 429}"#),
        DeliveryOutcome::Retry {
            after: Some(Duration::from_secs(1)),
            reason: "HTTP 429: {\"code\": 429}".into()
        }
    );
    assert!(is_retry(&outcome(&s, 503, None, "")));
    assert!(is_permanent(&outcome(&s, 404, None, "")));
}

#[test]
fn city_app_answers() {
    let s = spec(CITY_APP);
    assert_eq!(outcome(&s, 200, None, "{}"), DeliveryOutcome::Done);
    assert_eq!(outcome(&s, 202, None, ""), DeliveryOutcome::Done);
    assert_eq!(
        outcome(&s, 409, None, r#"{"error": {"code": "ALREADY_EXISTS"}}"#),
        DeliveryOutcome::Done
    );
    assert!(is_retry(&outcome(&s, 503, None, "")));
    assert!(is_retry(&outcome(&s, 500, None, "")));
    assert_eq!(
        outcome(&s, 429, Some("30"), ""),
        DeliveryOutcome::Retry {
            after: Some(Duration::from_secs(30)),
            reason: "HTTP 429: (empty answer)".into()
        }
    );
    let o = outcome(&s, 400, None, r#"{"error": {"code": "INVALID_ARGUMENT"}}"#);
    assert!(is_permanent(&o));
    assert!(format!("{o:?}").contains("INVALID_ARGUMENT"));
    assert!(is_permanent(&outcome(&s, 401, None, "")));
}

#[test]
fn other_channels_answers_and_transport_failures() {
    for text in [COMMUNITY, LEADER_BOARD, SUPERVISION] {
        let s = spec(text);
        assert_eq!(outcome(&s, 200, None, "{}"), DeliveryOutcome::Done);
        assert!(is_retry(&outcome(&s, 502, None, "")));
        assert!(is_retry(&outcome(&s, 429, Some("1"), "")));
        assert!(is_permanent(&outcome(&s, 400, None, "")));
        assert!(
            is_permanent(&outcome(&s, 409, None, "")),
            "409 is done for city-app only"
        );
    }
    assert!(is_retry(&transport_failure("operation timed out")));
}

#[test]
fn callback_problems_name_their_keys() {
    let p = problems(&HOTLINE.replace("received = \"01\"", "finished = \"01\""));
    assert!(
        p.contains("callback.statuses.finished: not a canonical status"),
        "{p}"
    );
    assert!(
        p.contains("callback.messages.received: never sent, received is not in callback.statuses"),
        "{p}"
    );

    let p = problems(&HOTLINE.replace("gdbh = \"{{source_id}}\"", "gdbh = \"{{source}}\""));
    assert!(
        p.contains("callback.body.gdbh: unknown variable {{source}}; expected one of"),
        "{p}"
    );

    let p = problems(&HOTLINE.replace("{{base}}/api/gd/fk", "http://hotline.local/api/gd/fk"));
    assert!(
        p.contains("callback.url: \"http://hotline.local/api/gd/fk\" must start with {{base}}"),
        "{p}"
    );

    let p = problems(&HOTLINE.replace("%Y-%m-%d %H:%M:%S}}", "%Y-%Q}}"));
    assert!(
        p.contains("callback.body.clsj: {{at_local}}: \"%Y-%Q\" is not a chrono time format"),
        "{p}"
    );

    let p = problems(&HOTLINE.replace(
        "gdbh = \"{{source_id}}\"",
        "gdbh = \"{{source_id:%Y}}{{base}}\"",
    ));
    assert!(
        p.contains("callback.body.gdbh: {{source_id}} takes no format"),
        "{p}"
    );
    assert!(
        p.contains("callback.body.gdbh: {{base}} is only for the url"),
        "{p}"
    );

    let p = problems(&HOTLINE.replace(
        "received = \"工单已受理\"",
        "received = \"{{message}}{{note\"",
    ));
    assert!(
        p.contains("callback.messages.received: \"{{message}}{{note\": \"{{\" is never closed"),
        "{p}"
    );
    let p = problems(&HOTLINE.replace("received = \"工单已受理\"", "received = \"{{message}}\""));
    assert!(
        p.contains("callback.messages.received: a message cannot use {{message}}"),
        "{p}"
    );

    let p = problems(&HOTLINE.replace("received = \"01\"", "received = \"\"\nescalated = true"));
    assert!(
        p.contains("callback.statuses.received: the channel's word must be"),
        "{p}"
    );
    assert!(
        p.contains("callback.statuses.escalated: the channel's word must be"),
        "{p}"
    );

    let p = problems(
        &HOTLINE
            .replace(
                "rate_limit_burst = 40",
                "rate_limit_burst = 0\ntimeout_secs = 0\nzone = \"Mars/Base\"",
            )
            .replace("timeout_secs = 10\n", ""),
    );
    assert!(
        p.contains("callback.rate_limit_per_second/rate_limit_burst: must be > 0"),
        "{p}"
    );
    assert!(p.contains("callback.timeout_secs"), "{p}");
    assert!(
        p.contains("callback.zone: unknown time zone \"Mars/Base\""),
        "{p}"
    );
}

#[test]
fn public_channels_refuse_reporter_variables_at_load() {
    let p = problems(&LEADER_BOARD.replace(
        "content = \"{{message}}\"",
        "content = \"{{message}}（{{reporter_name}}）\"",
    ));
    assert!(
        p.contains("callback.body.content: {{reporter_name}} must not be sent to a public channel"),
        "{p}"
    );
    let p = problems(&LEADER_BOARD.replace("{{note|已办理完毕}}", "{{reporter_phone}}"));
    assert!(
        p.contains(
            "callback.messages.resolved: {{reporter_phone}} must not be sent to a public channel"
        ),
        "{p}"
    );
    // A channel that does not publish may use the name.
    let s = spec(&HOTLINE.replace("bljg = \"{{message}}\"", "bljg = \"{{reporter_name}}您好\""));
    assert_eq!(
        json_body(&render(&s, &event("hotline", "resolved")))["bljg"],
        json!("葛女士您好")
    );
}

#[test]
fn xml_json_and_auth_shape_problems() {
    let p = problems(&SUPERVISION.replace("root = \"feedback\"\n", ""));
    assert!(
        p.contains("callback.root: an XML body needs its root element"),
        "{p}"
    );
    let p = problems(&SUPERVISION.replace("handlingDept = ", "\"handling Dept\" = "));
    assert!(
        p.contains("callback.body.handling Dept: \"handling Dept\" is not an element name"),
        "{p}"
    );
    let p = problems(&HOTLINE.replace(
        "format = \"json\"\nauth",
        "format = \"json\"\nroot = \"r\"\nauth",
    ));
    assert!(
        p.contains("callback.root: only for format = \"xml\""),
        "{p}"
    );
    let p = problems(&HOTLINE.replace(
        "auth = { scheme = \"bearer\", secret = \"token\" }\nrate_limit_per_second = 20",
        "auth = { scheme = \"body_field\", field = \"k\", secret = \"token\" }\nrate_limit_per_second = 20",
    ));
    assert!(
        p.contains("callback.auth: a callback authenticates with"),
        "{p}"
    );
    let p = problems(&HOTLINE.replace(
        "done = [0], retry = [[5001, 5999]]",
        "done = [0], retry = [[5999, 5001]]",
    ));
    assert!(
        p.contains("callback.outcome.code.retry: [5999, 5001] is empty"),
        "{p}"
    );
    // Unknown keys are the parser's: named with their place.
    let p = problems(&HOTLINE.replace("timeout_secs = 10\noutcome", "timeout_sec = 10\noutcome"));
    assert!(p.contains("timeout_sec"), "{p}");
}

#[test]
fn settings_keys_for_the_config_check() {
    assert_eq!(spec(HOTLINE).settings_keys(), vec!["base", "token"]);
    assert_eq!(spec(CITY_APP).settings_keys(), vec!["base", "secret"]);
    assert_eq!(spec(COMMUNITY).settings_keys(), vec!["base", "api_key"]);
    assert_eq!(spec(LEADER_BOARD).settings_keys(), vec!["base", "app_key"]);
    assert_eq!(spec(SUPERVISION).settings_keys(), vec!["base", "token"]);
    assert_eq!(spec(SUPERVISION).timeout(), Duration::from_secs(15));
    assert_eq!(spec(LEADER_BOARD).rate_limit_per_second, 1);
}
