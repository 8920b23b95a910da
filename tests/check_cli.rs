//! `petition-gateway check` accepts the shipped configuration and rejects broken ones
//! with messages that name the file and the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_petition-gateway"))
        .args(["check", "--config"])
        .arg(config)
        .env_remove("GATEWAY__CONNECTORS__HOTLINE__TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of the shipped config folder and connectors in a temp dir, edited by `edit`.
fn broken(edit: impl Fn(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    for f in ["gateway.toml", "responsibility.toml", "gazetteer.toml"] {
        std::fs::copy(
            repo().join("config").join(f),
            dir.path().join("config").join(f),
        )
        .unwrap();
    }
    for entry in std::fs::read_dir(repo().join("connectors")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let target = dir
                .path()
                .join("connectors")
                .join(path.file_name().unwrap());
            std::fs::copy(&path, target).unwrap();
        }
    }
    edit(dir.path());
    let file = dir.path().join("config/gateway.toml");
    (dir, file)
}

fn replace(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn the_shipped_configuration_passes() {
    let (ok, text) = check(&repo().join("config/gateway.toml"), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("hotline → /intake/hotline"), "{text}");
}

#[test]
fn a_bad_key_in_the_file_is_named_with_the_file() {
    let (_d, file) = broken(|d| {
        replace(
            &d.join("config/gateway.toml"),
            "127.0.0.1:8080",
            "localhost-8080",
        )
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(text.contains("gateway.toml: http.listen:"), "{text}");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let (ok, text) = check(
        &repo().join("config/gateway.toml"),
        &[("GATEWAY__HTTP__LISTEN", "nowhere")],
    );
    assert!(!ok);
    assert!(
        text.contains("environment variable GATEWAY__HTTP__LISTEN: http.listen"),
        "{text}"
    );
}

#[test]
fn a_missing_secret_says_where_to_set_it() {
    let (_d, file) = broken(|d| {
        replace(
            &d.join("config/gateway.toml"),
            "token = \"dev-hotline-token\"",
            "",
        )
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(text.contains("connectors.hotline.token"), "{text}");
    assert!(
        text.contains("GATEWAY__CONNECTORS__HOTLINE__TOKEN"),
        "{text}"
    );
    // …and the environment can supply it.
    let (ok, text) = check(
        &file,
        &[("GATEWAY__CONNECTORS__HOTLINE__TOKEN", "from-env")],
    );
    assert!(ok, "{text}");
}

#[test]
fn a_broken_connector_file_is_named_with_its_keys() {
    let (_d, file) = broken(|d| {
        let c = d.join("connectors/hotline.toml");
        replace(&c, "zone = \"Asia/Shanghai\"", "zone = \"Asia/Atlantis\"");
        replace(
            &c,
            "\"特急\" = \"critical\"",
            "\"特急\" = \"critical\" }, { fn = \"shout\"",
        );
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(text.contains("hotline.toml"), "{text}");
    assert!(
        text.contains("shout"),
        "unknown transform not named: {text}"
    );
}

#[test]
fn an_invalid_transform_parameter_is_named() {
    let (_d, file) = broken(|d| {
        replace(
            &d.join("connectors/hotline.toml"),
            "zone = \"Asia/Shanghai\"",
            "zone = \"Asia/Atlantis\"",
        )
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(
        text.contains("mapping[1] (target \"reported_at\").transforms[0] (local_time)"),
        "{text}"
    );
    assert!(text.contains("Asia/Atlantis"), "{text}");
}

#[test]
fn a_broken_responsibility_list_is_named_with_the_department() {
    let (_d, file) = broken(|d| {
        let r = d.join("config/responsibility.toml");
        replace(&r, "regions = [\"371082001\"]", "regions = [\"371082999\"]");
        replace(&r, "topic = \"dept.water\"", "topic = \"dept water!\"");
        replace(
            &r,
            "synonyms = [[\"废气\", \"异味\", \"臭味\"]]",
            "synonyms = [[\"废气\", \"臭气\"], [\"油烟\"]]",
        );
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(text.contains("routing.responsibility"), "{text}");
    assert!(
        text.contains("department[11] (street-001).regions: \"371082999\" is not in the gazetteer"),
        "{text}"
    );
    assert!(text.contains("(water).topic"), "{text}");
    assert!(
        text.contains(
            "(environment).synonyms[0]: \"臭气\" is not one of the department's keywords"
        ),
        "{text}"
    );
    assert!(
        text.contains("(environment).synonyms[1]: a group of synonyms needs at least two"),
        "{text}"
    );
}

#[test]
fn a_missing_file_is_reported_not_panicked() {
    let (ok, text) = check(Path::new("/nonexistent/gateway.toml"), &[]);
    assert!(!ok);
    assert!(
        text.contains("/nonexistent/gateway.toml: no such configuration file"),
        "{text}"
    );
}

#[test]
fn a_callback_channel_without_its_base_url_is_refused_unless_callbacks_are_off() {
    let (_d, file) = broken(|d| {
        replace(
            &d.join("config/gateway.toml"),
            "base = \"http://127.0.0.1:9304\"",
            "",
        )
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(text.contains("connectors.city-app.base"), "{text}");
    assert!(text.contains("callbacks = false"), "{text}");
    let (_d, file) = broken(|d| {
        replace(
            &d.join("config/gateway.toml"),
            "base = \"http://127.0.0.1:9304\"",
            "callbacks = false",
        )
    });
    let (ok, text) = check(&file, &[]);
    assert!(ok, "{text}");
}

#[test]
fn the_learned_routers_settings_are_checked() {
    let (_d, file) = broken(|d| {
        let g = d.join("config/gateway.toml");
        replace(&g, "min_confidence = 0.9", "min_confidence = 1.5");
        replace(&g, "# seed = \"history.jsonl\"", "seed = \"history.jsonl\"");
    });
    let (ok, text) = check(&file, &[]);
    assert!(!ok);
    assert!(
        text.contains("routing.learning.min_confidence: must be above 0 and at most 1"),
        "{text}"
    );
    // Relative to the config file's folder, and named when it cannot be read.
    assert!(
        text.contains("routing.learning.seed: seed file") && text.contains("config/history.jsonl"),
        "{text}"
    );
}
