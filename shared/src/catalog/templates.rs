//! Message templates per event type × locale × channel part, rendered by MiniJinja with strict
//! undefined variables (a missing variable is an error, never an empty string) and HTML escaping
//! in HTML parts.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::Channel;
use crate::ports::RenderedMessage;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("template {template}: {message}")]
pub struct RenderError {
    pub template: String,
    pub message: String,
}

/// What templates see: `payload`, `user` and `event`.
#[derive(Debug, Serialize)]
pub struct RenderContext<'a> {
    pub payload: &'a serde_json::Value,
    pub user: serde_json::Value,
    pub event: serde_json::Value,
}

impl RenderContext<'_> {
    /// The context converted into template values, once: every part of every channel rendered
    /// from it shares them (converting the context again for each part was most of the render
    /// time; issue 11).
    pub fn prepare(&self) -> PreparedContext {
        PreparedContext(minijinja::Value::from(minijinja::value::Serde(self)))
    }
}

/// A [`RenderContext`] as template values, to render any number of parts and channels from.
#[derive(Clone, Debug)]
pub struct PreparedContext(minijinja::Value);

pub struct Templates {
    env: Environment<'static>,
    names: BTreeSet<String>,
    /// Event type → locale → the channels with every part present (a bit per channel): what
    /// `resolve_locale` asks for every channel of every event, answered without building names.
    complete: HashMap<String, HashMap<String, u16>>,
}

fn channel_bit(channel: Channel) -> u16 {
    1 << (channel as u16)
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("count", &self.names.len()).finish()
    }
}

fn template_name(event_type: &str, locale: &str, channel: Channel, part: &str) -> String {
    format!("{event_type}/{locale}/{channel}.{part}")
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else if name.ends_with("/whatsapp.text") {
                // A WhatsApp message is an approved template named with its parameters, written as
                // JSON (see adapters::http::whatsapp): every `{{ value }}` comes out a JSON value.
                AutoEscape::Json
            } else {
                AutoEscape::None
            }
        });
        Self { env, names: BTreeSet::new(), complete: HashMap::new() }
    }

    /// Compiles one template part; a syntax error is reported with its line.
    pub fn add(&mut self, event_type: &str, locale: &str, channel: Channel, part: &str, source: String) -> Result<(), String> {
        let name = template_name(event_type, locale, channel, part);
        self.env.add_template_owned(name.clone(), source).map_err(|e| format!("{e:#}"))?;
        self.names.insert(name);
        if channel.template_parts().iter().all(|p| self.has(event_type, locale, channel, p)) {
            *self.complete.entry(event_type.to_owned()).or_default().entry(locale.to_owned()).or_default() |= channel_bit(channel);
        }
        Ok(())
    }

    pub fn has(&self, event_type: &str, locale: &str, channel: Channel, part: &str) -> bool {
        self.names.contains(&template_name(event_type, locale, channel, part))
    }

    /// The first of `wanted` (each tried whole, then by its language alone: `uk-UA` → `uk`), then
    /// `fallback`, for which every part of `channel` exists.
    pub fn resolve_locale(&self, event_type: &str, channel: Channel, wanted: &[&str], fallback: &str) -> Option<String> {
        let locales = self.complete.get(event_type)?;
        let complete = |locale: &str| locales.get(locale).is_some_and(|channels| channels & channel_bit(channel) != 0);
        for w in wanted {
            // `uk_UA` is read as `uk-UA` (the only case that needs a copy).
            let normalized = if w.contains('_') { std::borrow::Cow::Owned(w.replace('_', "-")) } else { std::borrow::Cow::Borrowed(*w) };
            if complete(&normalized) {
                return Some(normalized.into_owned());
            }
            if let Some((lang, _)) = normalized.split_once('-')
                && complete(lang)
            {
                return Some(lang.to_owned());
            }
        }
        complete(fallback).then(|| fallback.to_owned())
    }

    /// Renders every part of `channel` (the context converted once for them all; to render
    /// several channels from one context, [`RenderContext::prepare`] it and call
    /// [`Templates::render_prepared`]).
    pub fn render(
        &self,
        event_type: &str,
        locale: &str,
        channel: Channel,
        ctx: &RenderContext<'_>,
    ) -> Result<RenderedMessage, RenderError> {
        self.render_prepared(event_type, locale, channel, &ctx.prepare())
    }

    /// Renders every part of `channel` from a context converted beforehand.
    pub fn render_prepared(
        &self,
        event_type: &str,
        locale: &str,
        channel: Channel,
        ctx: &PreparedContext,
    ) -> Result<RenderedMessage, RenderError> {
        let mut parts = BTreeMap::new();
        // One name buffer for every part (the names differ only in their last segment).
        let mut name = String::with_capacity(event_type.len() + locale.len() + 24);
        for part in channel.template_parts() {
            name.clear();
            {
                use std::fmt::Write as _;
                let _ = write!(name, "{event_type}/{locale}/{channel}.{part}");
            }
            let template = self.env.get_template(&name).map_err(|e| RenderError { template: name.clone(), message: e.to_string() })?;
            let text = template
                .render(ctx.0.clone())
                .map_err(|e| RenderError { template: name.clone(), message: describe(&e, template.source()) })?;
            parts.insert((*part).to_owned(), trimmed(text));
        }
        Ok(RenderedMessage { channel, locale: locale.to_owned(), parts })
    }
}

/// `text` without its leading and trailing whitespace, reusing its buffer.
fn trimmed(mut text: String) -> String {
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    if start > 0 {
        text.drain(..start);
    }
    text
}

/// The error, the template expression at fault (`payload.name`: the template's own text, never
/// data) and its line, without the rendered text around it (which may hold personal data).
fn describe(e: &minijinja::Error, source: &str) -> String {
    let mut out = e.kind().to_string();
    if let Some(detail) = e.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if let Some(expression) = e.range().and_then(|r| source.get(r)) {
        out.push_str(&format!(" `{}`", expression.trim()));
    }
    if let Some(line) = e.line() {
        out.push_str(&format!(" (line {line})"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates() -> Templates {
        let mut t = Templates::new();
        t.add("t", "en", Channel::Email, "subject", "Hello {{ payload.name }}".into()).unwrap();
        t.add("t", "en", Channel::Email, "text", "Hi {{ payload.name }}\n".into()).unwrap();
        t.add("t", "en", Channel::Email, "html", "<p>Hi {{ payload.name }}</p>".into()).unwrap();
        t.add("t", "uk", Channel::Sms, "text", "Привіт, {{ payload.name }}".into()).unwrap();
        t.add("t", "en", Channel::Sms, "text", "Hi {{ payload.name }}".into()).unwrap();
        t
    }

    fn ctx(payload: &serde_json::Value) -> RenderContext<'_> {
        RenderContext { payload, user: json!({"id": "u-1"}), event: json!({"event_id": "e-1"}) }
    }

    #[test]
    fn trimming_reuses_the_rendered_text() {
        assert_eq!(trimmed("  Hi\n\n".into()), "Hi");
        assert_eq!(trimmed("Hi".into()), "Hi");
        assert_eq!(trimmed(" \n ".into()), "");
        assert_eq!(trimmed("\tПривіт, Олено ".into()), "Привіт, Олено");
    }

    #[test]
    fn a_locale_resolves_whole_then_by_language_then_to_the_fallback() {
        let t = templates();
        assert_eq!(t.resolve_locale("t", Channel::Sms, &["uk"], "en").as_deref(), Some("uk"));
        assert_eq!(t.resolve_locale("t", Channel::Sms, &["uk_UA"], "en").as_deref(), Some("uk"));
        assert_eq!(t.resolve_locale("t", Channel::Sms, &["uk-UA"], "en").as_deref(), Some("uk"));
        assert_eq!(t.resolve_locale("t", Channel::Sms, &["de", "uk"], "en").as_deref(), Some("uk"));
        assert_eq!(t.resolve_locale("t", Channel::Email, &["uk"], "en").as_deref(), Some("en"), "uk has no email");
        assert_eq!(t.resolve_locale("t", Channel::Push, &["uk"], "en"), None, "no push at all");
        assert_eq!(t.resolve_locale("other", Channel::Sms, &["en"], "en"), None);
    }

    #[test]
    fn html_parts_are_escaped_and_text_parts_are_not() {
        let payload = json!({"name": "<b>Olena & co</b>"});
        let m = templates().render("t", "en", Channel::Email, &ctx(&payload)).unwrap();
        assert_eq!(m.part("html"), "<p>Hi &lt;b&gt;Olena &amp; co&lt;&#x2f;b&gt;</p>");
        assert_eq!(m.part("text"), "Hi <b>Olena & co</b>");
        assert_eq!(m.part("subject"), "Hello <b>Olena & co</b>");
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let payload = json!({});
        let err = templates().render("t", "en", Channel::Email, &ctx(&payload)).unwrap_err();
        assert_eq!(err.template, "t/en/email.subject");
        assert!(err.message.contains("undefined"), "{}", err.message);
    }

    #[test]
    fn locales_fall_back_by_language_then_to_the_default() {
        let t = templates();
        assert_eq!(t.resolve_locale("t", Channel::Sms, &["uk-UA"], "en").as_deref(), Some("uk"));
        assert_eq!(t.resolve_locale("t", Channel::Email, &["uk-UA"], "en").as_deref(), Some("en"));
        assert_eq!(t.resolve_locale("t", Channel::Sms, &["de", "uk"], "en").as_deref(), Some("uk"));
        assert_eq!(t.resolve_locale("t", Channel::Push, &["uk"], "en"), None);
    }
}
