//! `petition-gateway connector test CONNECTOR.toml FILE`: what a native payload becomes,
//! without Kafka or HTTP — for integrators writing a connector file.
//!
//! FILE holds what the channel sends (JSON, form text, or XML) or, for a poll connector,
//! one page of what it serves; every item is mapped, normalized and checked against the
//! petition schema, and routed when a responsibility list is given.

use crate::dispatch::responsibility::ResponsibilityList;
use crate::dispatch::router::Router;
use crate::intake::push::decode_body;
use crate::normalize::normalize;
use crate::normalize::region::{Gazetteer, RegionResolver};
use crate::normalize::schema::Schemas;
use gateway_connectors::definition::{BodyFormat, Intake, PollFormat};
use gateway_connectors::xml::{items_at, xml_to_json};
use gateway_connectors::{map_payload, ConnectorDefinition};
use serde_json::{json, Value};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorTestError {
    #[error(transparent)]
    Definition(#[from] gateway_connectors::DefinitionError),
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("{0}")]
    Reference(String),
}

/// One result per item: `{"petition": …, "routing": …}` or `{"errors": [{path, message}]}`.
pub fn connector_test(
    definition: &Path,
    input: &Path,
    gazetteer: &Path,
    responsibility: Option<&Path>,
) -> Result<Vec<Value>, ConnectorTestError> {
    let def = ConnectorDefinition::load(definition)?;
    let bytes = std::fs::read(input).map_err(|e| ConnectorTestError::Input {
        file: input.display().to_string(),
        message: e.to_string(),
    })?;
    let input_err = |message: String| ConnectorTestError::Input {
        file: input.display().to_string(),
        message,
    };
    let items: Vec<Value> = match &def.intake {
        Intake::Push(push) => {
            // A form connector's sample may be written as a JSON object for readability.
            let format = match (push.format, bytes.first()) {
                (BodyFormat::Form, Some(b'{')) => BodyFormat::Json,
                (f, _) => f,
            };
            vec![decode_body(format, &bytes).map_err(|e| input_err(e.to_string()))?]
        }
        Intake::Poll(poll) => {
            let doc = match poll.format {
                PollFormat::Json => serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| input_err(format!("malformed JSON: {e}")))?,
                PollFormat::Xml => {
                    let text = std::str::from_utf8(&bytes).map_err(|e| input_err(e.to_string()))?;
                    xml_to_json(text).map_err(input_err)?
                }
            };
            let page = items_at(&doc, &poll.items);
            if !page.is_empty() {
                page
            } else if poll.format == PollFormat::Xml {
                // One item element, e.g. <clue>…</clue>.
                vec![doc
                    .as_object()
                    .and_then(|o| o.values().next().cloned())
                    .unwrap_or(doc)]
            } else {
                vec![doc]
            }
        }
    };
    let g = Gazetteer::load(gazetteer)
        .map_err(|e| ConnectorTestError::Reference(format!("{}: {e}", gazetteer.display())))?;
    let router = match responsibility {
        Some(path) => Some(Router::new(ResponsibilityList::load(path, &g).map_err(
            |e| ConnectorTestError::Reference(format!("{}: {}", path.display(), e.join("; "))),
        )?)),
        None => None,
    };
    let regions = RegionResolver::new(g);
    let schemas = Schemas::compile().map_err(|e| ConnectorTestError::Reference(e.to_string()))?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let trace = crate::kafka::cloudevents::new_trace_id();
    Ok(items
        .iter()
        .map(|item| {
            let result = map_payload(&def, item)
                .and_then(|m| normalize(def.name(), &m, &now, &trace, &regions, &schemas));
            match result {
                Ok((value, petition)) => match &router {
                    Some(r) => json!({"petition": value, "routing": r.route(&petition)}),
                    None => json!({"petition": value}),
                },
                Err(errors) => json!({"errors": errors}),
            }
        })
        .collect())
}
