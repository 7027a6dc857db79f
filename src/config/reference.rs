//! The configuration reference, generated from the configuration structs: their JSON Schema (schemars,
//! which carries each field's doc comment) for types and meanings, [`VitalflowConfig::default`] for
//! defaults. `vitalflow config --markdown` prints it; `docs/configuration.md` holds it between two
//! markers and a test fails when the two differ.

use anyhow::Context;
use serde_json::Value;

use super::VitalflowConfig;

/// The line before the generated reference in `docs/configuration.md`.
pub const START_MARKER: &str = "<!-- config-reference:start -->";
/// The line after it.
pub const END_MARKER: &str = "<!-- config-reference:end -->";

/// Every section as a Markdown table: key, type, default, meaning.
pub fn reference_markdown() -> anyhow::Result<String> {
    let schema = schemars::schema_for!(VitalflowConfig);
    let root = schema.as_value();
    let defaults = toml::Value::try_from(VitalflowConfig::default()).context("serialising the defaults")?;
    let order = KeyOrder::of(&VitalflowConfig::default())?;
    let mut out = String::from(
        "Generated from the configuration structs by `vitalflow config --markdown`; edit the doc comments, not this text.\n",
    );
    let sections = object_properties(root, root).context("the configuration schema has no sections")?;
    for name in order.keys("", sections.keys()) {
        let property = &sections[name.as_str()];
        let text = description(property).or_else(|| description(resolve(root, property))).unwrap_or_default();
        write_table(&mut out, root, &order, &format!("[{name}]"), &name, &text, property, defaults.get(name.as_str()));
    }
    Ok(out)
}

/// The text between the markers of a page, if both are there.
pub fn between_markers(page: &str) -> Option<&str> {
    let start = page.find(START_MARKER)? + START_MARKER.len();
    let end = start + page[start..].find(END_MARKER)?;
    Some(&page[start..end])
}

/// `page` with the text between its markers replaced by `reference`.
pub fn with_reference(page: &str, reference: &str) -> Option<String> {
    let old = between_markers(page)?;
    let start = old.as_ptr() as usize - page.as_ptr() as usize;
    Some(format!("{}\n{reference}\n{}", &page[..start], &page[start + old.len()..]))
}

/// One table for the section at `path` (its heading `title`), then one per nested section.
#[allow(clippy::too_many_arguments)]
fn write_table(
    out: &mut String,
    root: &Value,
    order: &KeyOrder,
    title: &str,
    path: &str,
    text: &str,
    schema: &Value,
    defaults: Option<&toml::Value>,
) {
    let Some(properties) = object_properties(root, schema) else { return };
    out.push_str(&format!("\n### `{title}`\n\n"));
    if !text.is_empty() {
        out.push_str(&format!("{}\n\n", one_line(text)));
    }
    out.push_str("| Key | Type | Default | Meaning |\n|---|---|---|---|\n");
    let keys = order.keys(path, properties.keys());
    let mut nested = Vec::new();
    for key in &keys {
        let property = &properties[key.as_str()];
        let resolved = resolve(root, property);
        let default = defaults.and_then(|d| d.get(key));
        if is_section(root, resolved) {
            nested.push((format!("{path}.{key}"), property, resolved, default));
            continue;
        }
        if let Some(item) = table_items(root, resolved) {
            nested.push((format!("{path}.{key}"), property, item, None));
        }
        // Keys of an array of tables have no value in the defaults: their own serde default, or none.
        let default = match (default, property.get("default")) {
            (Some(value), _) => format!("`{value}`"),
            (None, Some(Value::String(s))) => format!("`{s:?}`"),
            (None, Some(value)) => format!("`{value}`"),
            (None, None) => "required".into(),
        };
        let meaning = description(property).or_else(|| description(resolved)).unwrap_or_default();
        out.push_str(&format!(
            "| `{key}` | {} | {} | {} |\n",
            type_name(root, resolved),
            default.replace('|', "\\|"),
            one_line(&meaning).replace('|', "\\|")
        ));
    }
    for (path, property, schema, default) in nested {
        let text = description(property).unwrap_or_default();
        let title = if default.is_some() { format!("[{path}]") } else { format!("[[{path}]]") };
        write_table(out, root, order, &title, &path, &text, schema, default);
    }
}

/// The schema a `$ref` points at, or the schema itself.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let target = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/"));
    match target {
        Some(pointer) => root.pointer(&format!("/{pointer}")).unwrap_or(schema),
        None => schema,
    }
}

/// The properties of an object schema.
fn object_properties<'a>(root: &'a Value, schema: &'a Value) -> Option<&'a serde_json::Map<String, Value>> {
    resolve(root, schema).get("properties").and_then(Value::as_object)
}

/// Whether a schema is a struct of its own (a TOML section), not a map of free keys.
fn is_section(root: &Value, schema: &Value) -> bool {
    object_properties(root, schema).is_some()
}

/// The struct an array's items are, for arrays of tables (`[[flight_sql.auth.users]]`).
fn table_items<'a>(root: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let items = resolve(root, schema.get("items")?);
    is_section(root, items).then_some(items)
}

/// A field's doc comment.
fn description(schema: &Value) -> Option<String> {
    schema.get("description").and_then(Value::as_str).map(str::to_string)
}

/// The doc comment on one line (a table cell).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A short type name: `string`, `integer`, `float`, `boolean`, the values of an enum, `array`, `table`.
fn type_name(root: &Value, schema: &Value) -> String {
    let schema = resolve(root, schema);
    let constants: Vec<String> = match (schema.get("enum"), schema.get("oneOf").or_else(|| schema.get("anyOf"))) {
        (Some(Value::Array(values)), _) => values.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        (_, Some(Value::Array(variants))) => variants
            .iter()
            .filter_map(|v| {
                let v = resolve(root, v);
                v.get("const").or_else(|| v.get("enum").and_then(|e| e.get(0))).and_then(Value::as_str)
            })
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    if !constants.is_empty() {
        return constants.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" or ");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "string".into(),
        Some("integer") => "integer".into(),
        Some("number") => "float".into(),
        Some("boolean") => "boolean".into(),
        Some("array") if table_items(root, schema).is_some() => "array of tables".into(),
        Some("array") => format!("array of {}", schema.get("items").map_or("values".into(), |i| type_name(root, i))),
        Some("object") => match schema.get("additionalProperties") {
            Some(values @ Value::Object(_)) => format!("table of {}", type_name(root, values)),
            _ => "table".into(),
        },
        _ => "value".into(),
    }
}

/// The order keys are written in the structs (schemas and TOML values sort them by name): read from the
/// TOML serde writes for the defaults, which follows field order.
struct KeyOrder(Vec<(String, Vec<String>)>);

impl KeyOrder {
    fn of(config: &VitalflowConfig) -> anyhow::Result<KeyOrder> {
        let text = toml::to_string(config).context("serialising the defaults")?;
        let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim_matches(['[', ']']).to_string();
                if let Some((parent, key)) = name.rsplit_once('.') {
                    push_key(&mut sections, parent, key);
                } else {
                    push_key(&mut sections, "", &name);
                }
                sections.push((name, Vec::new()));
            } else if let Some((key, _)) = line.split_once(" = ")
                && let Some(last) = sections.last_mut()
            {
                last.1.push(key.trim().to_string());
            }
        }
        Ok(KeyOrder(sections))
    }

    /// `keys` in struct order; those the defaults do not show (none today) last, by name.
    fn keys<'a>(&self, section: &str, keys: impl Iterator<Item = &'a String>) -> Vec<String> {
        let mut keys: Vec<String> = keys.cloned().collect();
        let known = self.0.iter().find(|(name, _)| name == section).map(|(_, k)| k.as_slice()).unwrap_or_default();
        keys.sort_by_key(|k| (known.iter().position(|x| x == k).unwrap_or(usize::MAX), k.clone()));
        keys
    }
}

/// Notes `key` as the next key of `section`, once.
fn push_key(sections: &mut [(String, Vec<String>)], section: &str, key: &str) {
    if let Some((_, keys)) = sections.iter_mut().find(|(name, _)| name == section)
        && !keys.iter().any(|k| k == key)
    {
        keys.push(key.to_string());
    }
}
