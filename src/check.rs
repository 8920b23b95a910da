//! `petition-gateway check`: validates configuration, connectors, schemas, gazetteer and
//! the responsibility list without starting anything.

use crate::config::{load, ConfigErrors, Problem};
use crate::normalize::schema::Schemas;
use std::path::Path;

/// Returns a one-paragraph summary of what would run, or every problem found.
pub fn check(file: &Path) -> Result<String, ConfigErrors> {
    let schemas = Schemas::compile();
    let loaded = load(file);
    match (loaded, schemas) {
        (Ok(l), Ok(_)) => Ok(format!(
            "{}: ok — {} connector(s) [{}], {} department(s), {} street(s) in the gazetteer, schemas petition.v1, status-event.v1 and department-record.v1 compile",
            file.display(),
            l.connectors.len(),
            l.connectors
                .iter()
                .map(|c| match c.definition.push() {
                    Some(p) => format!("{} → {}", c.definition.name(), p.route),
                    None => format!("{} (poll {})", c.definition.name(), c.base.as_deref().unwrap_or("?")),
                })
                .collect::<Vec<_>>()
                .join(", "),
            l.responsibility.departments.len(),
            l.regions.gazetteer().streets.len(),
        )),
        (loaded, schemas) => {
            let mut problems = loaded.err().map(|e| e.0).unwrap_or_default();
            if let Err(e) = schemas {
                problems.push(Problem {
                    origin: "schemas/".into(),
                    key: e.name.into(),
                    message: e.message,
                });
            }
            Err(ConfigErrors(problems))
        }
    }
}
