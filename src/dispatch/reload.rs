//! Hot reload of the responsibility list: the center edits `responsibility.toml` while
//! the gateway runs. A changed file that validates replaces the running list for the
//! next decision; a broken one is reported (file, problems) and the running list stays.
//!
//! The file is read every `routing.reload_interval_ms` and compared by content. That is
//! deliberately simpler than an inotify watcher (the `notify` crate): editors save by
//! rename, config maps are swapped through symlinks, and a content check of one small
//! file every two seconds sees all of those the same way.

use super::responsibility::ResponsibilityList;
use super::router::Router;
use crate::normalize::region::Gazetteer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The list in force and its version (a digest of the file), recorded with every case.
pub struct ActiveList {
    pub router: Router,
    pub version: String,
}

/// What every user of the list holds; `borrow()` gives the list in force.
pub type ListHandle = watch::Receiver<Arc<ActiveList>>;

pub fn version_of(text: &str) -> String {
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text.as_bytes()).simple();
    digest.to_string()[..12].to_string()
}

/// A handle on a fixed list (replay, tests, tools).
pub fn fixed(list: ResponsibilityList, version: &str) -> ListHandle {
    let (_, rx) = watch::channel(Arc::new(ActiveList {
        router: Router::new(list),
        version: version.to_string(),
    }));
    rx
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read the responsibility list {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("the responsibility list {file} was changed but is invalid, so the running list (version {running}) stays in force: {}", problems.join("; "))]
    Invalid {
        file: String,
        running: String,
        problems: Vec<String>,
    },
}

impl ReloadError {
    /// A broken file may be fixed by its next edit; nothing here is permanent.
    pub fn retryable(&self) -> bool {
        true
    }
}

pub struct ListReloader {
    file: PathBuf,
    gazetteer: Gazetteer,
    /// The last content looked at, valid or not: a broken file is reported once.
    last_text: String,
    tx: watch::Sender<Arc<ActiveList>>,
}

impl ListReloader {
    /// Starts from the list loaded at startup (from `file`, with content `text`).
    pub fn new(
        file: PathBuf,
        gazetteer: Gazetteer,
        list: ResponsibilityList,
        text: String,
    ) -> (Self, ListHandle) {
        let (tx, rx) = watch::channel(Arc::new(ActiveList {
            router: Router::new(list),
            version: version_of(&text),
        }));
        (
            Self {
                file,
                gazetteer,
                last_text: text,
                tx,
            },
            rx,
        )
    }

    pub fn handle(&self) -> ListHandle {
        self.tx.subscribe()
    }

    /// Looks at the file once. `Ok(Some(list))` when a new list took over.
    pub fn check(&mut self) -> Result<Option<Arc<ActiveList>>, ReloadError> {
        let file = self.file.display().to_string();
        let text = std::fs::read_to_string(&self.file).map_err(|source| ReloadError::Read {
            file: file.clone(),
            source,
        })?;
        if text == self.last_text {
            return Ok(None);
        }
        self.last_text = text.clone();
        match ResponsibilityList::parse(&text, &self.gazetteer) {
            Ok(list) => {
                let active = Arc::new(ActiveList {
                    router: Router::new(list),
                    version: version_of(&text),
                });
                self.tx.send_replace(active.clone());
                Ok(Some(active))
            }
            Err(problems) => Err(ReloadError::Invalid {
                file,
                running: self.tx.borrow().version.clone(),
                problems,
            }),
        }
    }

    /// Checks every `interval` until cancelled; `on_change` sees each new list (to
    /// create the topics of departments it added).
    pub async fn run<F, Fut>(mut self, interval: Duration, cancel: CancellationToken, on_change: F)
    where
        F: Fn(Arc<ActiveList>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut warned_unreadable = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.check() {
                Ok(Some(list)) => {
                    warned_unreadable = false;
                    tracing::info!(file = %self.file.display(), version = %list.version,
                        departments = list.router.list().departments.len(),
                        "responsibility list reloaded");
                    on_change(list).await;
                }
                Ok(None) => warned_unreadable = false,
                Err(e @ ReloadError::Read { .. }) => {
                    if !warned_unreadable {
                        tracing::warn!(error = %e, "responsibility list not reloaded");
                        warned_unreadable = true;
                    }
                }
                Err(e) => tracing::error!(error = %e, "responsibility list rejected"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

    fn setup() -> (tempfile::TempDir, PathBuf, ListReloader, ListHandle) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("responsibility.toml");
        let text = std::fs::read_to_string(format!("{DIR}/responsibility.toml")).expect("list");
        std::fs::write(&file, &text).expect("write");
        let gazetteer: Gazetteer = toml::from_str(
            &std::fs::read_to_string(format!("{DIR}/gazetteer.toml")).expect("gazetteer"),
        )
        .expect("gazetteer parses");
        let list = ResponsibilityList::parse(&text, &gazetteer).expect("valid");
        let (reloader, handle) = ListReloader::new(file.clone(), gazetteer, list, text);
        (dir, file, reloader, handle)
    }

    #[test]
    fn an_edited_list_takes_over_and_a_broken_one_does_not() {
        let (_dir, file, mut reloader, handle) = setup();
        let before = handle.borrow().version.clone();
        let count = handle.borrow().router.list().departments.len();
        assert!(reloader.check().expect("unchanged").is_none());

        let mut text = std::fs::read_to_string(&file).expect("read");
        text.push_str(
            "\n[[department]]\ncode = \"pets\"\nname = \"宠物管理办公室\"\ntopic = \"dept.pets\"\nkeywords = [\"流浪猫\"]\n",
        );
        std::fs::write(&file, &text).expect("write");
        let new = reloader.check().expect("valid").expect("changed");
        assert_ne!(new.version, before);
        assert_eq!(handle.borrow().router.list().departments.len(), count + 1);
        assert!(handle.borrow().router.list().department("pets").is_some());

        // Two departments with one code: rejected, the list in force stays.
        text.push_str(
            "\n[[department]]\ncode = \"pets\"\nname = \"又一个\"\ntopic = \"dept.pets2\"\n",
        );
        std::fs::write(&file, &text).expect("write");
        match reloader.check() {
            Err(ReloadError::Invalid {
                running, problems, ..
            }) => {
                assert_eq!(running, new.version);
                assert!(problems.iter().any(|p| p.contains("pets")), "{problems:?}");
            }
            other => panic!("expected a rejection, got {:?}", other.map(|_| ())),
        }
        assert_eq!(handle.borrow().version, new.version);
        // Reported once, not on every check.
        assert!(reloader.check().expect("same broken text").is_none());
    }

    #[test]
    fn a_vanished_file_keeps_the_running_list() {
        let (_dir, file, mut reloader, handle) = setup();
        let before = handle.borrow().version.clone();
        std::fs::remove_file(&file).expect("remove");
        assert!(matches!(reloader.check(), Err(ReloadError::Read { .. })));
        assert_eq!(handle.borrow().version, before);
    }
}
