//! The JSON schema of what racelab writes (`docs/result.schema.json`),
//! generated from the serde types themselves with schemars: a run
//! (`RunResult`), several (`Runs`) and an explore result. The field
//! descriptions are the types' doc comments; the constraints serde cannot
//! express (ranges, patterns, "a strategy or a target") are `schemars`
//! attributes beside the fields. The committed file is checked against
//! this generator by a test, so it cannot drift; `racelab schema` prints
//! it.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::Schema;
use serde_json::{json, Value};

use crate::report::Runs;
use crate::result::explore::ExploreResult;
use crate::result::RunResult;

/// Where the schema says it lives (a name, not a fetched address).
pub const ID: &str = "https://racelab.invalid/result.schema.json";

/// The schema, as a JSON document.
pub fn schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(RecursiveTransform(closed))
        .into_generator();
    let run = generator.subschema_for::<RunResult>();
    let runs = generator.subschema_for::<Runs>();
    let explore = generator.subschema_for::<ExploreResult>();
    // `explain --json` prints a document of its own: a definition only.
    generator.subschema_for::<crate::explain::result::ExplainResult>();
    // The definitions by snake_case name, as the fields are named.
    let defs: serde_json::Map<String, Value> = generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, def)| (snake_case(&name), def))
        .collect();
    let mut document = json!({        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ID,
        "title": "racelab result",
        "description": "What racelab writes: one race (`run`, `http`, and every saved result file), or, from `compare` and `--repeat`, {\"runs\": [...]} with the overall verdict and one summary per strategy. `racelab explore` prints and saves a different document, $defs/explore_result; `racelab explain --json` prints $defs/explain_result. Generated from racelab's result types (`racelab schema`).",
        "oneOf": [run, runs, explore],
        "$defs": defs,
    });
    rename_refs(&mut document);
    document
}

/// `StrategySummary` → `strategy_summary`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `$ref` to `#/$defs/Name` points at `#/$defs/name` instead.
fn rename_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/$defs/") {
                            *target = format!("#/$defs/{}", snake_case(name));
                        }
                    }
                    (_, v) => rename_refs(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rename_refs),
        _ => {}
    }
}

/// The schema as `docs/result.schema.json` holds it: pretty, one final
/// newline.
pub fn json() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a schema serializes");
    text.push('\n');
    text
}

/// An object racelab writes has exactly the fields its type names: a
/// reader can rely on a misspelt field being refused.
fn closed(schema: &mut Schema) {
    if schema.get("properties").is_some() && schema.get("additionalProperties").is_none() {
        schema.insert("additionalProperties".into(), Value::Bool(false));
    }
}

#[cfg(test)]
mod tests {
    /// The committed `docs/result.schema.json` is the generated one. When
    /// a result type changes, regenerate it:
    /// `cargo run -q -- schema > docs/result.schema.json`.
    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let committed = include_str!("../../docs/result.schema.json");
        let generated = super::json();
        assert!(
            committed == generated,
            "docs/result.schema.json drifted from the result types (first at line {}); \
             regenerate it with `cargo run -q -- schema > docs/result.schema.json`",
            first_difference(committed, &generated)
        );
    }

    /// The 1-based line where two texts first differ.
    fn first_difference(a: &str, b: &str) -> usize {
        let same = a.lines().zip(b.lines()).take_while(|(x, y)| x == y).count();
        same + 1
    }
}
