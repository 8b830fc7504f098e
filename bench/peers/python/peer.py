"""The Python peer: the stack the original designs used (Pydantic v2, jsonschema, Jinja2),
doing per event exactly the work our validate+render does (tests/benches/hot_paths.rs):

1. parse the JSON body and validate the envelope (a Pydantic v2 model: the same fields, id
   characters and lengths, priority and channel names, locale tag, RFC 3339 timestamps with an
   offset, no unknown fields);
2. validate the payload against the event type's catalog/<type>/schema.json (a jsonschema
   Draft 2020-12 validator built once per type, formats checked, every error collected);
3. render every requested channel's template parts (the event's `channels`, else the type's
   defaults) with Jinja2 (StrictUndefined; HTML parts autoescaped; templates compiled once at
   start) in the event's locale, falling back as our router does: the locale whole, then its
   language, then the type's fallback locale, the first for which every part of the channel
   exists; each part trimmed.

Usage: python peer.py CATALOG_DIR EVENTS_JSONL [SECONDS]  (prints one JSON line: events/s)
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import time
from typing import Annotated, Literal, Optional

import jinja2
import jsonschema
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

PARTS = {
    "email": ("subject", "text", "html"),
    "sms": ("text",),
    "push": ("title", "body"),
    "websocket": ("title", "body"),
    "whatsapp": ("text",),
    "telegram": ("text",),
}
ChannelName = Literal["email", "sms", "push", "whatsapp", "telegram", "websocket", "webhook"]
Id128 = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9\-_.~:@]+$")]
Id100 = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9\-_.~:@]+$")]
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[a-z0-9._\-]+$")]
LocaleTag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]


class Envelope(BaseModel):
    """The event envelope POST /v1/events takes (shared/src/domain/event.rs)."""

    model_config = ConfigDict(extra="forbid")

    event_id: Id128
    event_type: EventTypeName
    user_id: Id100
    payload: Optional[dict] = None
    priority: Optional[Literal["critical", "high", "normal", "low"]] = None
    channels: Optional[Annotated[list[ChannelName], Field(min_length=1)]] = None
    locale: Optional[LocaleTag] = None
    send_after: Optional[AwareDatetime] = None
    occurred_at: Optional[AwareDatetime] = None


class Invalid(Exception):
    def __init__(self, status: int, errors):
        super().__init__(str(errors))
        self.status = status
        self.errors = errors


class EventType:
    def __init__(self, name: str, spec: dict, schema: dict):
        self.name = name
        self.priority = spec["priority"]
        self.channels = spec["channels"]
        self.fallback_locale = spec.get("fallback_locale", "en")
        cls = jsonschema.validators.validator_for(schema)
        self.validator = cls(schema, format_checker=cls.FORMAT_CHECKER)


class ItemFirstEnvironment(jinja2.Environment):
    """A JSON object's keys are its only attributes, as in MiniJinja (and our catalog's
    templates): `payload.items` / `payload["items"]` is the payload's `items` (undefined when
    absent), never the dict method Jinja2 would find."""

    def getattr(self, obj, attribute):
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    getitem = getattr


class Peer:
    def __init__(self, catalog_dir: str):
        root = pathlib.Path(catalog_dir)
        self.types: dict[str, EventType] = {}
        # (type, locale, channel) -> [(part, compiled template)], for complete channels only.
        self.templates: dict[tuple[str, str, str], list[tuple[str, jinja2.Template]]] = {}
        env = ItemFirstEnvironment(
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: bool(name) and name.endswith(".html"),
            cache_size=-1,
        )
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            spec = json.loads((folder / "event.json").read_text())
            schema = json.loads((folder / "schema.json").read_text())
            self.types[folder.name] = EventType(folder.name, spec, schema)
            for locale_dir in sorted((folder / "templates").iterdir()):
                for channel, parts in PARTS.items():
                    files = [locale_dir / f"{channel}.{part}" for part in parts]
                    if all(f.exists() for f in files):
                        self.templates[(folder.name, locale_dir.name, channel)] = [
                            (part, _compile(env, f))
                            for part, f in zip(parts, files)
                        ]

    def resolve_locale(self, event_type: EventType, channel: str, wanted: list[str]) -> Optional[str]:
        for w in wanted:
            w = w.replace("_", "-")
            if (event_type.name, w, channel) in self.templates:
                return w
            lang, dash, _ = w.partition("-")
            if dash and (event_type.name, lang, channel) in self.templates:
                return lang
        if (event_type.name, event_type.fallback_locale, channel) in self.templates:
            return event_type.fallback_locale
        return None

    def validate(self, body: bytes):
        try:
            event = Envelope.model_validate_json(body)
        except Exception as e:  # pydantic.ValidationError: every failing field
            raise Invalid(422, str(e))
        event_type = self.types.get(event.event_type)
        if event_type is None:
            raise Invalid(422, f"unknown event type {event.event_type!r}")
        payload = event.payload if event.payload is not None else {}
        if not event_type.validator.is_valid(payload):
            raise Invalid(422, [e.message for e in event_type.validator.iter_errors(payload)])
        return event, event_type, payload

    def render(self, event: Envelope, event_type: EventType, payload: dict, wanted: list[str]) -> list[dict]:
        ctx = {
            "payload": payload,
            "user": {"id": event.user_id, "locale": None, "timezone": None},
            "event": {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
            },
        }
        messages = []
        for channel in event.channels or event_type.channels:
            locale = self.resolve_locale(event_type, channel, wanted)
            if locale is None:
                raise Invalid(500, f"no {channel} templates for {event.event_type}")
            parts = {part: template.render(ctx).strip() for part, template in self.templates[(event_type.name, locale, channel)]}
            messages.append({"channel": channel, "locale": locale, "parts": parts})
        return messages

    def process(self, body: bytes) -> list[dict]:
        event, event_type, payload = self.validate(body)
        return self.render(event, event_type, payload, [event.locale] if event.locale else [])


def _compile(env: jinja2.Environment, path: pathlib.Path) -> jinja2.Template:
    # Compiled once, under its file name so that the autoescape rule (.html) applies.
    return env.template_class.from_code(env, env.compile(path.read_text(), name=path.name), env.globals, None)


def main() -> None:
    catalog_dir, events_path = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    peer = Peer(catalog_dir)
    bodies = [line for line in pathlib.Path(events_path).read_bytes().split(b"\n") if line]
    messages = sum(len(peer.process(b)) for b in bodies)  # warm-up pass
    started = time.perf_counter()
    processed = 0
    while time.perf_counter() - started < seconds:
        for b in bodies:
            peer.process(b)
        processed += len(bodies)
    elapsed = time.perf_counter() - started
    print(json.dumps({"impl": "python", "events": len(bodies), "messages_per_pass": messages, "processed": processed,
                      "seconds": elapsed, "events_per_s": processed / elapsed}))


if __name__ == "__main__":
    main()
