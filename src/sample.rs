//! Where the labeled sample is (`data/petitions-sample.jsonl`, see `data/README.md`): the
//! tests, benchmarks and router checks read it from here, and `PETITION_SAMPLE` points
//! them all at another file of the same format.

use std::path::PathBuf;

/// The environment variable that overrides the sample's path.
pub const SAMPLE_ENV: &str = "PETITION_SAMPLE";

/// The sample shipped in the repository, relative to the repository's root.
pub const SHIPPED_SAMPLE: &str = "data/petitions-sample.jsonl";

/// `PETITION_SAMPLE` if set, else the repository's own sample. The repository is where
/// this crate was built from: the sample is for tests and benchmarks, not for `run`.
pub fn sample_path() -> PathBuf {
    std::env::var_os(SAMPLE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(SHIPPED_SAMPLE))
}
