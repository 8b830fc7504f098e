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
pub use templates::{PreparedContext, RenderContext, RenderError, Templates};

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
    /// Receipts, security and account mail the recipient cannot opt out of by email link.
    #[serde(default)]
    transactional: bool,
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
    /// Whether its messages are transactional (a receipt, a security or payment notice): those
    /// never carry the one-click unsubscribe link that every other email of a category carries.
    pub transactional: bool,
    pub priority: Priority,
    /// The channels used when the producer names none.
    pub channels: Vec<Channel>,
    /// The channel tried next when one fails for good.
    pub fallback: BTreeMap<Channel, Channel>,
    pub fallback_locale: String,
    /// The locales it has templates in.
    pub locales: Vec<String>,
    /// The payload's JSON Schema, as written.
    pub schema_json: Value,
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

/// The catalog's files by relative path (`order.completed/templates/en/email.subject`), read from
/// a folder or compiled into the binary.
type Files = BTreeMap<String, String>;

static EMBEDDED: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../catalog");

fn read_tree(root: &Path) -> Result<Files, CatalogError> {
    fn walk(root: &Path, dir: &Path, out: &mut Files) -> Result<(), CatalogError> {
        let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::Io { path: dir.to_owned(), source })?;
        for entry in entries {
            let path = entry.map_err(|source| CatalogError::Io { path: dir.to_owned(), source })?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Io { path: path.clone(), source })?;
                out.insert(rel, text);
            }
        }
        Ok(())
    }
    let mut files = Files::new();
    walk(root, root, &mut files)?;
    Ok(files)
}

fn embedded_files() -> Files {
    fn walk(dir: &include_dir::Dir<'static>, out: &mut Files) {
        for file in dir.files() {
            if let Some(text) = file.contents_utf8() {
                out.insert(file.path().to_string_lossy().replace('\\', "/"), text.to_owned());
            }
        }
        for sub in dir.dirs() {
            walk(sub, out);
        }
    }
    let mut files = Files::new();
    walk(&EMBEDDED, &mut files);
    files
}

impl Catalog {
    /// Loads every event type under `root`, failing on the first malformed one with its path.
    pub fn load(root: &Path) -> Result<Catalog, CatalogError> {
        Self::from_files(root, &read_tree(root)?)
    }

    /// The repository's `catalog/` as it was when this binary was built (how Lambda functions
    /// get theirs; `NOTIFY_CATALOG_DIR` points them at a folder instead).
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Self::from_files(Path::new("catalog (embedded)"), &embedded_files())
    }

    /// `NOTIFY_CATALOG_DIR` when set, else the embedded catalog.
    pub fn from_env(env: &crate::config::Env) -> Result<Catalog, CatalogError> {
        match env.optional(crate::config::vars::CATALOG_DIR) {
            Some(dir) => Self::load(Path::new(&dir)),
            None => Self::embedded(),
        }
    }

    fn from_files(root: &Path, files: &Files) -> Result<Catalog, CatalogError> {
        let names: BTreeSet<&str> = files.keys().filter_map(|k| k.split_once('/').map(|(d, _)| d)).filter(|d| !d.starts_with('.')).collect();
        let mut types = BTreeMap::new();
        let mut templates = Templates::new();
        for name in names {
            let event_type = load_event_type(root, files, name, &mut templates)?;
            types.insert(name.to_owned(), event_type);
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

fn read_json(root: &Path, files: &Files, rel: &str) -> Result<Value, CatalogError> {
    let path = root.join(rel);
    let text = files.get(rel).ok_or_else(|| invalid(&path, "is missing"))?;
    serde_json::from_str(text).map_err(|e| invalid(&path, format!("not valid JSON: {e}")))
}

fn load_event_type(root: &Path, files: &Files, name: &str, templates: &mut Templates) -> Result<EventType, CatalogError> {
    let spec_rel = format!("{name}/event.json");
    let spec_path = root.join(&spec_rel);
    let spec: EventTypeFile = serde_json::from_value(read_json(root, files, &spec_rel)?).map_err(|e| invalid(&spec_path, e.to_string()))?;
    if spec.channels.is_empty() {
        return Err(invalid(&spec_path, "channels must name at least one channel"));
    }
    let schema_rel = format!("{name}/schema.json");
    let schema_json = read_json(root, files, &schema_rel)?;
    let schema = schema::PayloadSchema::compile(&schema_json).map_err(|m| invalid(&root.join(&schema_rel), m))?;

    let templates_prefix = format!("{name}/templates/");
    let templates_dir = root.join(&templates_prefix);
    let mut locales = BTreeSet::new();
    for (rel, source) in files.range(templates_prefix.clone()..).take_while(|(k, _)| k.starts_with(&templates_prefix)) {
        let file = root.join(rel);
        let Some((locale, file_name)) = rel[templates_prefix.len()..].split_once('/') else {
            return Err(invalid(&file, "templates live in templates/<locale>/<channel>.<part>"));
        };
        let Some((channel, part)) = file_name.split_once('.') else {
            return Err(invalid(&file, "template files are named <channel>.<part>"));
        };
        let channel: Channel = channel.parse().map_err(|m: String| invalid(&file, m))?;
        if !channel.template_parts().contains(&part) {
            return Err(invalid(&file, format!("{channel} has the parts {:?}", channel.template_parts())));
        }
        templates.add(name, locale, channel, part, source.clone()).map_err(|e| invalid(&file, e))?;
        locales.insert(locale.to_owned());
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
        transactional: spec.transactional,
        priority: spec.priority,
        channels: spec.channels,
        fallback: spec.fallback,
        fallback_locale: spec.fallback_locale,
        locales: locales.into_iter().collect(),
        schema_json,
        schema,
    })
}

/// The catalog shipped in this repository (`<repo>/catalog`), for the local stack and tests.
/// The one part of a `webhook` message: the event as JSON, for a machine to read.
pub const WEBHOOK_PAYLOAD_PART: &str = "payload";

/// A `webhook` message needs no template: the receiver gets the event itself (type, id, when it
/// occurred, its payload) and the locale the recipient would read it in.
pub fn webhook_message(event: &crate::domain::Event, locale: &str) -> crate::ports::RenderedMessage {
    let body = serde_json::json!({
        "event_id": crate::domain::tenant::local_part(event.event_id.as_str()),
        "event_type": event.event_type,
        "occurred_at": event.occurred_at,
        "payload": event.payload,
    });
    crate::ports::RenderedMessage {
        channel: crate::domain::Channel::Webhook,
        locale: locale.to_owned(),
        parts: [(WEBHOOK_PAYLOAD_PART.to_owned(), body.to_string())].into(),
    }
}

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
            for channel in [Channel::Email, Channel::Sms, Channel::Push, Channel::Websocket, Channel::Whatsapp, Channel::Telegram] {
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

    /// WhatsApp messages are approved templates named with their parameters: the catalog renders
    /// them as JSON, every value escaped, whatever the payload holds.
    #[test]
    fn whatsapp_parts_render_as_template_json_and_telegram_as_text() {
        let catalog = Catalog::load(&repository_catalog_dir()).expect("catalog loads");
        let tricky = r#"O'Brien "the \ one" <b>"#;
        let payloads = [
            ("user.registered", json!({"name": tricky, "verify_url": "https://example.com/v?a=1&b=2"})),
            ("order.completed", json!({"order_id": tricky, "total": "59.90", "currency": "EUR", "items": [{"name": tricky, "quantity": 2}]})),
            ("payment.failed", json!({"payment_id": "P-9", "amount": "12.00", "currency": "USD"})),
        ];
        for (name, payload) in payloads {
            for locale in ["en", "uk"] {
                let ctx = RenderContext { payload: &payload, user: json!({"id": "u-1"}), event: json!({"event_id": "e-1"}) };
                let message = catalog.templates().render(name, locale, Channel::Whatsapp, &ctx).expect("whatsapp renders");
                let parsed: serde_json::Value = serde_json::from_str(message.part("text")).unwrap_or_else(|e| panic!("{name}/{locale}: {e}: {}", message.part("text")));
                assert!(parsed["template"].as_str().is_some_and(|t| !t.is_empty()), "{parsed}");
                assert_eq!(parsed["language"], locale);
                let parameters = parsed["parameters"].as_array().expect("parameters");
                assert!(!parameters.is_empty() && parameters.iter().all(|p| p.is_string()), "{parsed}");
                let text = catalog.templates().render(name, locale, Channel::Telegram, &ctx).expect("telegram renders");
                assert!(!text.part("text").trim().is_empty());
            }
        }
        let ctx = RenderContext { payload: &payloads_first_name(), user: json!({}), event: json!({}) };
        let welcome = catalog.templates().render("user.registered", "en", Channel::Whatsapp, &ctx).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(welcome.part("text")).unwrap();
        assert_eq!(parsed["parameters"][0], tricky, "the value arrives as written");
    }

    fn payloads_first_name() -> serde_json::Value {
        json!({"name": r#"O'Brien "the \ one" <b>"#})
    }

    #[test]
    fn the_embedded_catalog_is_the_repositorys() {
        let embedded = Catalog::embedded().expect("embedded catalog loads");
        let on_disk = Catalog::load(&repository_catalog_dir()).unwrap();
        let names = |c: &Catalog| c.event_types().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&embedded), names(&on_disk));
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
        assert!(err.contains("fallback locale"), "{err}");
        std::fs::write(t.join("templates/en/email.text"), "hi").unwrap();
        let err = Catalog::load(&dir).unwrap_err().to_string();
        assert!(err.contains("en/email.subject is missing"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
