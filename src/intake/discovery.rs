//! Discovery documents some channels' clients fetch: Open311's `services.json`, built
//! from the responsibility list so it always lists what can actually be routed.

use super::IntakeContext;
use axum::extract::State;
use axum::Json;
use gateway_connectors::definition::DiscoveryKind;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn serve(State((ctx, kind)): State<(Arc<IntakeContext>, DiscoveryKind)>) -> Json<Value> {
    match kind {
        DiscoveryKind::Open311Services => Json(open311_services(&ctx)),
    }
}

/// GeoReport v2 service list: one service per category code, grouped by its owner.
pub fn open311_services(ctx: &IntakeContext) -> Value {
    let active = ctx.list.borrow().clone();
    let mut services: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in &active.router.list().departments {
        for c in &d.categories {
            services
                .entry(c.as_str())
                .or_default()
                .push(d.name.as_str());
        }
    }
    Value::Array(
        services
            .into_iter()
            .map(|(code, owners)| {
                let group = code.split('.').next().unwrap_or(code);
                let owner = if owners.len() == 1 {
                    owners[0].to_string()
                } else {
                    "所在街道办事处 / street office of the area".to_string()
                };
                json!({
                    "service_code": code,
                    "service_name": code,
                    "description": owner,
                    "metadata": false,
                    "type": "realtime",
                    "keywords": "",
                    "group": group,
                })
            })
            .collect(),
    )
}
