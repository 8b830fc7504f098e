//! The event catalog: event types as data. Each directory under the catalog root is one event
//! type (`event.json`, `schema.json`, `templates/<locale>/<channel>.<part>`); adding an event type
//! is adding a directory. See `catalog/README.md` at the repository root.

mod schema;
mod templates;

use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::domain::{Channel, FieldError, Priority};
pub use templates::{RenderContext, RenderError, Templates};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid { path: path.to_owned(), message: message.into() }
}

/// `event.json` as written by whoever adds the event type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTypeFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: Option<String>,
    priority: Priority,
    channels: Vec<Channel>,
    #[serde(default)]
    fallback: BTreeMap<Channel, Channel>,
    #[serde(default = "default_fallback_locale")]
    fallback_locale: String,
}

fn default_fallback_locale() -> String {
    "en".to_owned()
}

#[derive(Debug)]
pub struct EventType {
    pub name: String,
    pub description: String,
    /// What recipients opt out of per category (`account`, `orders`, `billing`, `marketing` …).
    pub category: Option<String>,
    pub priority: Priority,
    /// The channels used when the producer names none.
    pub channels: Vec<Channel>,
    /// The channel tried next when one fails for good.
    pub fallback: BTreeMap<Channel, Channel>,
    pub fallback_locale: String,
    schema: schema::PayloadSchema,
}

impl EventType {
    /// Every way `payload` breaks the event type's schema, as JSON Pointers under `/payload`.
    pub fn check_payload(&self, payload: &Value) -> Result<(), Vec<FieldError>> {
        self.schema.check(payload, "/payload")
    }
}

#[derive(Debug)]
pub struct Catalog {
    types: BTreeMap<String, EventType>,
    templates: Templates,
}

impl Catalog {
    /// Loads every event type under `root`, failing on the first malformed one with its path.
    pub fn load(root: &Path) -> Result<Catalog, CatalogError> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|source| CatalogError::Io { path: root.to_owned(), source })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let mut types = BTreeMap::new();
        let mut templates = Templates::new();
        for dir in dirs {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.starts_with('.') {
                continue;
            }
            let event_type = load_event_type(&dir, &name, &mut templates)?;
            types.insert(name, event_type);
        }
        if types.is_empty() {
            return Err(invalid(root, "holds no event types"));
        }
        Ok(Catalog { types, templates })
    }

    pub fn event_type(&self, name: &str) -> Option<&EventType> {
        self.types.get(name)
    }

    pub fn event_types(&self) -> impl Iterator<Item = &EventType> {
        self.types.values()
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }
}

fn read_json(path: &Path) -> Result<Value, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map_err(|e| invalid(path, format!("not valid JSON: {e}")))
}

fn load_event_type(dir: &Path, name: &str, templates: &mut Templates) -> Result<EventType, CatalogError> {
    let spec_path = dir.join("event.json");
    let spec: EventTypeFile = serde_json::from_value(read_json(&spec_path)?)
        .map_err(|e| invalid(&spec_path, e.to_string()))?;
    if spec.channels.is_empty() {
        return Err(invalid(&spec_path, "channels must name at least one channel"));
    }
    let schema_path = dir.join("schema.json");
    let schema = schema::PayloadSchema::compile(&read_json(&schema_path)?).map_err(|m| invalid(&schema_path, m))?;

    let templates_dir = dir.join("templates");
    let mut locales = BTreeSet::new();
    let mut locale_dirs: Vec<PathBuf> = std::fs::read_dir(&templates_dir)
        .map_err(|source| CatalogError::Io { path: templates_dir.clone(), source })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    locale_dirs.sort();
    for locale_dir in locale_dirs {
        let locale = locale_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&locale_dir)
            .map_err(|source| CatalogError::Io { path: locale_dir.clone(), source })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some((channel, part)) = file_name.split_once('.') else {
                return Err(invalid(&file, "template files are named <channel>.<part>"));
            };
            let channel: Channel = channel.parse().map_err(|m: String| invalid(&file, m))?;
            if !channel.template_parts().contains(&part) {
                return Err(invalid(&file, format!("{channel} has the parts {:?}", channel.template_parts())));
            }
            let source = std::fs::read_to_string(&file).map_err(|source| CatalogError::Io { path: file.clone(), source })?;
            templates
                .add(name, &locale, channel, part, source)
                .map_err(|e| invalid(&file, e))?;
        }
        locales.insert(locale);
    }
    if !locales.contains(&spec.fallback_locale) {
        return Err(invalid(&templates_dir, format!("has no templates for the fallback locale {:?}", spec.fallback_locale)));
    }
    for channel in spec.channels.iter().chain(spec.fallback.values()) {
        for part in channel.template_parts() {
            if !templates.has(name, &spec.fallback_locale, *channel, part) {
                return Err(invalid(
                    &templates_dir,
                    format!("{}/{channel}.{part} is missing (the channel is used and {} is the fallback locale)", spec.fallback_locale, spec.fallback_locale),
                ));
            }
        }
    }
    Ok(EventType {
        name: name.to_owned(),
        description: spec.description,
        category: spec.category,
        priority: spec.priority,
        channels: spec.channels,
        fallback: spec.fallback,
        fallback_locale: spec.fallback_locale,
        schema,
    })
}

/// The catalog shipped in this repository (`<repo>/catalog`), for the local stack and tests.
pub fn repository_catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("catalog")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shipped_catalog_loads_with_every_channel_in_english_and_ukrainian() {
        let catalog = Catalog::load(&repository_catalog_dir()).expect("catalog loads");
        for name in ["user.registered", "order.completed", "payment.failed"] {
            let t = catalog.event_type(name).unwrap_or_else(|| panic!("{name} shipped"));
            for channel in [Channel::Email, Channel::Sms, Channel::Push, Channel::Websocket] {
                for locale in ["en", "uk"] {
                    assert_eq!(
                        catalog.templates().resolve_locale(name, channel, &[locale], "zz").as_deref(),
                        Some(locale),
                        "{name} has {channel} in {locale}"
                    );
                }
            }
            assert_eq!(t.fallback_locale, "en");
        }
    }

    #[test]
    fn a_malformed_event_type_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("catalog-bad-{}", ulid::Ulid::new()));
        let t = dir.join("x.y");
        std::fs::create_dir_all(t.join("templates/en")).unwrap();
        std::fs::write(t.join("event.json"), json!({"priority": "urgent", "channels": ["email"]}).to_string()).unwrap();
        std::fs::write(t.join("schema.json"), "{}").unwrap();
        let err = Catalog::load(&dir).unwrap_err().to_string();
        assert!(err.contains("event.json"), "{err}");
        std::fs::write(t.join("event.json"), json!({"priority": "low", "channels": ["email"]}).to_string()).unwrap();
        let err = Catalog::load(&dir).unwrap_err().to_string();
        assert!(err.contains("en/email.subject is missing"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
