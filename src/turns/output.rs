//! Pure `response_format` logic: whether a provider enforces the format itself (codex
//! `--output-schema`), the instruction prepended to the prompt when it does not, and the check
//! of the reply after the run (one surrounding code fence stripped, valid JSON, an object for
//! `json_object`, and a small JSON Schema subset for `json_schema`).
//!
//! What [`validate`] checks, recursively: `type` (one name or a list; `integer` is a number
//! without a fraction), `enum`, `required`, `properties`, `items` (one schema). Everything else
//! (`additionalProperties`, `$ref`, `anyOf`, `pattern`, `format`, bounds) is not checked; a node
//! without `type` accepts any value. Must not do I/O.

use super::OutputFormat;
use serde_json::Value;

/// Whether codex can enforce `schema` with `--output-schema`. Codex sends it with
/// `strict: true`, and OpenAI's strict mode refuses (`invalid_json_schema`, a failed turn) any
/// object schema that does not set `additionalProperties: false` and list every property in
/// `required`, and any node without a `type`, `$ref` or `anyOf`. Other schemas are instructed
/// and checked like the other providers'.
pub fn codex_enforces(schema: &Value) -> bool {
    let Some(node) = schema.as_object() else {
        return false;
    };
    if let Some(any_of) = node.get("anyOf") {
        return any_of
            .as_array()
            .is_some_and(|options| options.iter().all(codex_enforces));
    }
    if node.contains_key("$ref") {
        return true;
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    if types.contains(&"object") {
        let properties = node.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let closed = node.get("additionalProperties") == Some(&Value::Bool(false));
        let Some(properties) = properties else {
            return false;
        };
        if !closed || !properties.keys().all(|k| required.contains(&k.as_str())) {
            return false;
        }
        if !properties.values().all(codex_enforces) {
            return false;
        }
    }
    if types.contains(&"array") && !node.get("items").is_some_and(codex_enforces) {
        return false;
    }
    ["$defs", "definitions"]
        .iter()
        .filter_map(|key| node.get(*key).and_then(Value::as_object))
        .all(|defs| defs.values().all(codex_enforces))
}

/// The instruction prepended to this turn's prompt when the CLI does not enforce the format
/// itself (`None` for free text).
pub fn instruction(format: &OutputFormat) -> Option<String> {
    match format {
        OutputFormat::Text => None,
        OutputFormat::JsonObject => Some(
            "Reply with one JSON object and nothing else: no prose before or after it, no code \
             fence."
                .to_string(),
        ),
        OutputFormat::JsonSchema { name, schema } => Some(format!(
            "Reply with one JSON value that matches the JSON Schema `{name}` below, and nothing \
             else: no prose before or after it, no code fence.\nSchema `{name}`: {schema}"
        )),
    }
}

/// The reply to return for `format`: unchanged for free text; else the JSON text with one
/// surrounding code fence removed, when it parses and satisfies the format. `Err` says why not.
pub fn check(reply: &str, format: &OutputFormat) -> Result<String, String> {
    if *format == OutputFormat::Text {
        return Ok(reply.to_string());
    }
    let text = strip_fence(reply);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "the reply is not valid JSON ({e}): {}",
            preview(reply.trim())
        )
    })?;
    match format {
        OutputFormat::JsonObject if !value.is_object() => Err(format!(
            "the reply is JSON but not an object: {}",
            preview(text)
        )),
        OutputFormat::JsonSchema { name, schema } => validate(&value, schema, "$")
            .map_err(|why| format!("the reply does not match the schema `{name}`: {why}")),
        _ => Ok(()),
    }?;
    Ok(text.to_string())
}

/// `reply` trimmed, without one surrounding ```` ``` ```` / ```` ```json ```` fence.
pub fn strip_fence(reply: &str) -> &str {
    let text = reply.trim();
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some((_language, body)) = rest.split_once('\n') else {
        return text;
    };
    match body.trim_end().strip_suffix("```") {
        Some(inner) => inner.trim(),
        None => text,
    }
}

/// Checks `value` against the subset of JSON Schema the module header lists; `path` names the
/// place (`$`, `$.items[2].name`) in the error.
pub fn validate(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            return Err(format!("{path} is not one of the `enum` values"));
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|kind| is_type(value, kind)) {
        return Err(format!(
            "{path} should be {}, not {}",
            types.join(" or "),
            type_name(value)
        ));
    }
    if let Value::Object(object) = value {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                return Err(format!("{path} lacks the required property `{name}`"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in properties {
                if let Some(field) = object.get(name) {
                    validate(field, sub, &format!("{path}.{name}"))?;
                }
            }
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, sub, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn is_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    }
}

/// The start of `text` for an error message (at most 200 characters).
fn preview(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(value: Value) -> OutputFormat {
        OutputFormat::JsonSchema {
            name: "answer".into(),
            schema: value,
        }
    }

    #[test]
    fn fences_are_stripped_once() {
        for (reply, expected) in [
            ("{\"a\":1}", "{\"a\":1}"),
            ("  {\"a\":1}\n", "{\"a\":1}"),
            ("```json\n{\"a\":1}\n```", "{\"a\":1}"),
            ("```\n{\"a\":1}\n```\n", "{\"a\":1}"),
            ("```JSON\n  [1, 2]  \n```", "[1, 2]"),
            // Not a whole fence: left as is (and then fails to parse).
            ("```json\n{\"a\":1}", "```json\n{\"a\":1}"),
            ("```{\"a\":1}```", "```{\"a\":1}```"),
            ("Here: ```json\n{}\n```", "Here: ```json\n{}\n```"),
        ] {
            assert_eq!(strip_fence(reply), expected, "{reply:?}");
        }
    }

    #[test]
    fn check_by_format() {
        let person = schema(json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "kind": {"enum": ["a", "b"]},
                "nick": {"type": ["string", "null"]},
            }
        }));
        let ok = [
            ("free text", OutputFormat::Text, "free text"),
            (
                "```json\n{\"a\":1}\n```",
                OutputFormat::JsonObject,
                "{\"a\":1}",
            ),
            (
                "{\"name\":\"x\",\"age\":3,\"tags\":[\"t\"],\"kind\":\"b\",\"nick\":null}",
                person.clone(),
                "{\"name\":\"x\",\"age\":3,\"tags\":[\"t\"],\"kind\":\"b\",\"nick\":null}",
            ),
            (
                "{\"name\":\"x\",\"age\":3.0}",
                person.clone(),
                "{\"name\":\"x\",\"age\":3.0}",
            ),
            ("[1,2]", schema(json!({"type": "array"})), "[1,2]"),
            (
                "\"x\"",
                schema(json!({"anyOf": [{"type": "string"}]})),
                "\"x\"",
            ),
        ];
        for (reply, format, expected) in ok {
            assert_eq!(check(reply, &format).as_deref(), Ok(expected), "{reply}");
        }
        let refused = [
            (
                "Sure! Here it is.",
                OutputFormat::JsonObject,
                "not valid JSON",
            ),
            ("[1, 2]", OutputFormat::JsonObject, "not an object"),
            (
                "{\"a\":1} trailing",
                OutputFormat::JsonObject,
                "not valid JSON",
            ),
            (
                "{\"name\":\"x\"}",
                person.clone(),
                "$ lacks the required property `age`",
            ),
            (
                "{\"name\":1,\"age\":2}",
                person.clone(),
                "$.name should be string, not a number",
            ),
            (
                "{\"name\":\"x\",\"age\":2.5}",
                person.clone(),
                "$.age should be integer",
            ),
            (
                "{\"name\":\"x\",\"age\":2,\"tags\":[\"a\",3]}",
                person.clone(),
                "$.tags[1] should be string",
            ),
            (
                "{\"name\":\"x\",\"age\":2,\"kind\":\"c\"}",
                person.clone(),
                "$.kind is not one of the `enum`",
            ),
            ("[]", person.clone(), "$ should be object, not an array"),
        ];
        for (reply, format, needle) in refused {
            let error = check(reply, &format).unwrap_err();
            assert!(error.contains(needle), "{reply}: {error}");
        }
    }

    #[test]
    fn only_strict_mode_schemas_go_to_codex() {
        let strict = json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "items": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"n": {"type": "integer"}},
                    "required": ["n"],
                    "additionalProperties": false
                }},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "required": ["title", "items", "maybe"],
            "additionalProperties": false
        });
        assert!(codex_enforces(&strict));
        for (broken, why) in [
            (json!({"type": "object"}), "a free-form object"),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
                "additionalProperties missing",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                       "required": ["a"], "additionalProperties": false}),
                "an optional property",
            ),
            (
                json!({"type": "object", "properties": {"a": {}}, "required": ["a"], "additionalProperties": false}),
                "a node without a type",
            ),
            (json!({"type": "array"}), "an array without items"),
            (json!(true), "a boolean schema"),
        ] {
            assert!(!codex_enforces(&broken), "{why}");
        }
    }

    #[test]
    fn the_instruction_names_the_schema() {
        assert_eq!(instruction(&OutputFormat::Text), None);
        assert!(instruction(&OutputFormat::JsonObject)
            .unwrap()
            .contains("one JSON object"));
        let text = instruction(&schema(json!({"type": "object"}))).unwrap();
        assert!(text.contains("JSON Schema `answer`"), "{text}");
        assert!(text.contains(r#"{"type":"object"}"#), "{text}");
    }
}
