//! The repository carries everything it runs and tests with: no tracked file names a path
//! outside it (a folder laid beside one checkout is missing from the next clone).
//!
//! A path written with `../` is resolved from the folder of the file that names it and
//! from each folder above, up to the repository's root (scripts `cd` to the root, tests
//! join from it, config files resolve from their own folder). It is fine when, from one of
//! those folders that it does not climb out of, its first part exists in the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `../`-relative paths a text names, each from its first `../` up to the first
/// character that cannot be part of a path in prose, code or config.
fn parent_relative_paths(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("../") {
        let before = &text[..start];
        // The second `../` of `../../`, or the end of `.../`: part of a longer token.
        if before.ends_with("../") || before.ends_with('.') {
            continue;
        }
        let rest = &text[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "\"'`()[]{}<>,;:|*?$\\".contains(c))
            .unwrap_or(rest.len());
        found.push(&rest[..end]);
    }
    found
}

/// How many folders `path` climbs, and the first part it names after climbing.
fn climb(path: &str) -> (usize, Option<&str>) {
    let mut ups = 0;
    for part in path.split('/') {
        match part {
            ".." => ups += 1,
            "" | "." => {}
            name => return (ups, Some(name)),
        }
    }
    (ups, None)
}

/// Whether `path`, named in a file in folder `dir` (relative to the root), names
/// something in the repository, judged from `dir` or any folder above it.
fn stays_inside(root: &Path, dir: &Path, path: &str) -> bool {
    let (ups, Some(first)) = climb(path) else {
        // Only `..`: a folder change (`cd ..`), not a reference to a file.
        return true;
    };
    let mut base: Vec<_> = dir.components().collect();
    loop {
        if ups <= base.len() {
            let target: PathBuf = base[..base.len() - ups].iter().collect();
            if root.join(target).join(first).exists() {
                return true;
            }
        }
        if base.pop().is_none() {
            return false;
        }
    }
}

fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    match out {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
        // Not a git checkout (an unpacked archive): every file but build output.
        _ => {
            let mut files = Vec::new();
            walk(root, Path::new(""), &mut files);
            files
        }
    }
}

fn walk(root: &Path, rel: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap().flatten() {
        let name = entry.file_name();
        let rel = rel.join(&name);
        if entry.file_type().unwrap().is_dir() {
            if ![".git", "target", ".kafka", ".demo"].contains(&name.to_str().unwrap_or("")) {
                walk(root, &rel, files);
            }
        } else {
            files.push(rel);
        }
    }
}

#[test]
fn no_tracked_file_names_a_path_outside_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let absolute = root.canonicalize().unwrap().display().to_string();
    let files = tracked_files(&root);
    assert!(files.len() > 50, "only {} files found", files.len());
    let mut outside = Vec::new();
    let mut checked = 0;
    for file in &files {
        // Binary files and files deleted in the work tree name no paths.
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        for (n, line) in text.lines().enumerate() {
            for path in parent_relative_paths(line) {
                checked += 1;
                if !stays_inside(&root, dir, path) {
                    outside.push(format!("{}:{}: {path}", file.display(), n + 1));
                }
            }
            if line.contains(&absolute) {
                outside.push(format!("{}:{}: {absolute}", file.display(), n + 1));
            }
        }
    }
    assert!(checked > 10, "only {checked} relative paths seen");
    assert!(
        outside.is_empty(),
        "tracked files name paths outside the repository (copy what is needed into it):\n{}",
        outside.join("\n")
    );
}

#[test]
fn paths_are_found_in_prose_code_and_config() {
    let up = "..";
    let text = format!(
        "see `{up}/notes/a.md`; join(\"{up}/{up}/x/y.json\"), \"{{}}/{up}/z\" cd {up} a/{up}/b .../c"
    );
    assert_eq!(
        parent_relative_paths(&text),
        vec![
            format!("{up}/notes/a.md"),
            format!("{up}/{up}/x/y.json"),
            format!("{up}/z"),
            format!("{up}/b"),
        ]
    );
    assert_eq!(climb(&format!("{up}/{up}/x/y")), (2, Some("x")));
    assert_eq!(climb(&format!("{up}/")), (1, None));
}

#[test]
fn a_path_is_inside_when_some_folder_up_to_the_root_resolves_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let up = "..";
    // From its own folder (config files), from a folder above (include_str! in a crate).
    assert!(stays_inside(
        &root,
        Path::new("config"),
        &format!("{up}/connectors/hotline.toml")
    ));
    assert!(stays_inside(
        &root,
        Path::new("connectors/src/callback"),
        &format!("{up}/{up}/hotline.toml")
    ));
    // A sibling of the checkout, joined from the root, from wherever it is written.
    for dir in ["", "tests/common", "simulators"] {
        assert!(!stays_inside(
            &root,
            Path::new(dir),
            &format!("{up}/sibling-of-the-checkout/data/x.jsonl")
        ));
    }
    // Climbing out of the root is outside even when a same-named folder is inside.
    assert!(!stays_inside(
        &root,
        Path::new(""),
        &format!("{up}/connectors/hotline.toml")
    ));
    assert!(stays_inside(&root, Path::new("scripts"), up));
}
