'use strict';
// The Node peer: Ajv (validators compiled once: the envelope, and each event type's
// catalog/<type>/schema.json, formats checked, every error collected) and nunjucks (every
// catalog/<type>/templates/<locale>/<channel>.<part> compiled once at start, throwOnUndefined;
// HTML parts autoescaped), doing per event exactly the work our validate+render does
// (tests/benches/hot_paths.rs): parse the JSON body, validate the envelope, validate the payload,
// render every requested channel (the event's `channels`, else the type's defaults) in the
// event's locale with our router's fallback rule (the locale whole, its language, the type's
// fallback locale: the first with every part of the channel), each part trimmed.
//
// Usage: node peer.js CATALOG_DIR EVENTS_JSONL [SECONDS]   (prints one JSON line: events/s)

const fs = require('node:fs');
const path = require('node:path');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const nunjucks = require('nunjucks');

const PARTS = {
  email: ['subject', 'text', 'html'],
  sms: ['text'],
  push: ['title', 'body'],
  websocket: ['title', 'body'],
  whatsapp: ['text'],
  telegram: ['text'],
};
const CHANNELS = ['email', 'sms', 'push', 'whatsapp', 'telegram', 'websocket', 'webhook'];
const ID = '^[A-Za-z0-9._~:@-]+$';

// The envelope POST /v1/events takes (shared/src/domain/event.rs), as a JSON Schema.
const ENVELOPE = {
  type: 'object',
  additionalProperties: false,
  required: ['event_id', 'event_type', 'user_id'],
  properties: {
    event_id: { type: 'string', minLength: 1, maxLength: 128, pattern: ID },
    event_type: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[a-z0-9._-]+$' },
    user_id: { type: 'string', minLength: 1, maxLength: 100, pattern: ID },
    payload: { type: ['object', 'null'] },
    priority: { type: ['string', 'null'], enum: ['critical', 'high', 'normal', 'low', null] },
    channels: { type: ['array', 'null'], minItems: 1, uniqueItems: true, items: { enum: CHANNELS } },
    locale: { type: ['string', 'null'], pattern: '^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$' },
    send_after: { type: ['string', 'null'], format: 'date-time' },
    occurred_at: { type: ['string', 'null'], format: 'date-time' },
  },
};

class Invalid extends Error {
  constructor(status, errors) {
    super(JSON.stringify(errors));
    this.status = status;
    this.errors = errors;
  }
}

class Peer {
  constructor(catalogDir) {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    addFormats(ajv);
    this.envelope = ajv.compile(ENVELOPE);
    const plain = new nunjucks.Environment(null, { autoescape: false, throwOnUndefined: true });
    const html = new nunjucks.Environment(null, { autoescape: true, throwOnUndefined: true });
    this.types = new Map();
    this.templates = new Map(); // "type/locale/channel" -> [[part, compiled template]]
    for (const name of fs.readdirSync(catalogDir).sort()) {
      const folder = path.join(catalogDir, name);
      if (name.startsWith('.') || !fs.statSync(folder).isDirectory()) continue;
      const spec = JSON.parse(fs.readFileSync(path.join(folder, 'event.json'), 'utf8'));
      const schema = JSON.parse(fs.readFileSync(path.join(folder, 'schema.json'), 'utf8'));
      this.types.set(name, {
        name,
        priority: spec.priority,
        channels: spec.channels,
        fallbackLocale: spec.fallback_locale || 'en',
        validate: ajv.compile(schema),
      });
      for (const locale of fs.readdirSync(path.join(folder, 'templates')).sort()) {
        for (const [channel, parts] of Object.entries(PARTS)) {
          const files = parts.map((p) => path.join(folder, 'templates', locale, `${channel}.${p}`));
          if (!files.every((f) => fs.existsSync(f))) continue;
          this.templates.set(
            `${name}/${locale}/${channel}`,
            parts.map((p, i) => {
              const env = p === 'html' ? html : plain;
              return [p, new nunjucks.Template(fs.readFileSync(files[i], 'utf8'), env, files[i], true)];
            }),
          );
        }
      }
    }
  }

  resolveLocale(type, channel, wanted) {
    for (let w of wanted) {
      w = w.replaceAll('_', '-');
      if (this.templates.has(`${type.name}/${w}/${channel}`)) return w;
      const dash = w.indexOf('-');
      if (dash > 0 && this.templates.has(`${type.name}/${w.slice(0, dash)}/${channel}`)) return w.slice(0, dash);
    }
    return this.templates.has(`${type.name}/${type.fallbackLocale}/${channel}`) ? type.fallbackLocale : null;
  }

  validate(body) {
    let event;
    try {
      event = JSON.parse(body);
    } catch (e) {
      throw new Invalid(400, e.message);
    }
    if (!this.envelope(event)) throw new Invalid(422, this.envelope.errors);
    const type = this.types.get(event.event_type);
    if (!type) throw new Invalid(422, `unknown event type ${event.event_type}`);
    const payload = event.payload || {};
    if (!type.validate(payload)) throw new Invalid(422, type.validate.errors);
    return { event, type, payload };
  }

  render(event, type, payload) {
    const wanted = event.locale ? [event.locale] : [];
    const ctx = {
      payload,
      user: { id: event.user_id, locale: null, timezone: null },
      event: { event_id: event.event_id, event_type: event.event_type, occurred_at: event.occurred_at ?? null },
    };
    const messages = [];
    for (const channel of event.channels || type.channels) {
      const locale = this.resolveLocale(type, channel, wanted);
      if (locale === null) throw new Invalid(500, `no ${channel} templates for ${event.event_type}`);
      const parts = {};
      for (const [part, template] of this.templates.get(`${type.name}/${locale}/${channel}`)) {
        parts[part] = template.render(ctx).trim();
      }
      messages.push({ channel, locale, parts });
    }
    return messages;
  }

  process(body) {
    const { event, type, payload } = this.validate(body);
    return this.render(event, type, payload);
  }
}

function main() {
  const [catalogDir, eventsPath, secondsArg] = process.argv.slice(2);
  const seconds = secondsArg ? Number(secondsArg) : 3;
  const peer = new Peer(catalogDir);
  const bodies = fs.readFileSync(eventsPath, 'utf8').split('\n').filter((l) => l.length > 0);
  let messages = 0;
  for (const b of bodies) messages += peer.process(b).length; // warm-up pass
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  let processed = 0;
  while (elapsed() < seconds) {
    for (const b of bodies) peer.process(b);
    processed += bodies.length;
  }
  const s = elapsed();
  console.log(JSON.stringify({ impl: 'node', events: bodies.length, messages_per_pass: messages, processed, seconds: s, events_per_s: processed / s }));
}

module.exports = { Peer, Invalid };
if (require.main === module) main();
