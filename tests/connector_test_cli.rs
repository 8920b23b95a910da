//! `petition-gateway connector test` on every shipped connector's example payload, and
//! on a broken one: the petition, or every error with its path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(connector: &str, input: &std::path::Path) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_petition-gateway"))
        .current_dir(repo())
        .args(["connector", "test", &format!("connectors/{connector}.toml")])
        .arg(input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let first = stdout
        .split("\n}\n")
        .next()
        .map(|s| format!("{s}\n}}"))
        .unwrap_or_default();
    (
        out.status.success(),
        serde_json::from_str(&first).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn every_shipped_connector_accepts_its_example() {
    for (connector, file) in [
        ("hotline", "hotline.json"),
        ("city-app", "city-app.json"),
        ("community-app", "community-app.json"),
        ("open311", "open311.json"),
        ("leader-board", "leader-board.json"),
        ("supervision", "supervision.xml"),
    ] {
        let (ok, v, err) = run(connector, &repo().join("connectors/examples").join(file));
        assert!(ok, "{connector}: {err}");
        assert_eq!(v["petition"]["channel"], connector);
        assert!(v["routing"]["department"].is_string());
        // Open311 requests say nothing of when: the receipt time stands in, flagged.
        let undated = connector == "open311";
        assert_eq!(
            v["petition"]["reported_at_unknown"]
                .as_bool()
                .unwrap_or(false),
            undated,
            "{connector}: {}",
            v["petition"]
        );
    }
}

#[test]
fn a_broken_payload_shows_every_error_with_its_path() {
    let mut order: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("connectors/examples/hotline.json")).unwrap(),
    )
    .unwrap();
    order["ldsj"] = "tomorrow".into();
    order["jjcd"] = "很急".into();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), order.to_string()).unwrap();
    let (ok, v, err) = run("hotline", f.path());
    assert!(!ok);
    let paths: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["/ldsj", "/jjcd"], "{v}");
    assert!(err.contains("1 rejected"));
}

#[test]
fn a_control_character_in_an_id_is_refused_on_every_json_channel() {
    for (connector, file, id) in [
        ("hotline", "hotline.json", "/gdbh"),
        ("city-app", "city-app.json", "/ticketId"),
        ("community-app", "community-app.json", "/eventNo"),
    ] {
        let mut payload: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("connectors/examples").join(file)).unwrap(),
        )
        .unwrap();
        *payload.pointer_mut(id).unwrap() = "RC\u{0}X".into();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), payload.to_string()).unwrap();
        let (ok, v, _) = run(connector, f.path());
        assert!(!ok, "{connector} accepted a NUL in its id");
        assert_eq!(v["errors"][0]["path"], id, "{connector}: {v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("control character"),
            "{connector}: {v}"
        );
    }
}
