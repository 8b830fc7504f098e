//! End to end through the local stack: real HTTP, a real WebSocket client, the handlers driven
//! by the in-process queues exactly as the event source mappings would drive them.

use notify_tests::{event_for, next_frame, sample, spawn_app, unique};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn every_built_in_event_type_arrives_by_email_and_on_the_websocket() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut socket = app.connect_ws(&user).await;

    for name in ["user.registered.json", "order.completed.json", "payment.failed.json"] {
        let body = event_for(name, &user);
        let event_id = body["event_id"].as_str().unwrap().to_owned();
        let r = app.post_event(&body).await;
        assert_eq!(r.status(), 202, "{name}");
        assert_eq!(r.headers()["location"], format!("/v1/events/{event_id}").as_str());

        let email = app.wait_for_outbox("email", &event_id, WAIT).await;
        assert_eq!(email["to"]["to"], format!("{user}@example.com"));
        for part in ["subject", "text", "html"] {
            assert!(!email["parts"][part].as_str().unwrap_or_default().is_empty(), "{name}: email {part} rendered");
        }
        assert!(email["parts"]["html"].as_str().unwrap().contains('<'), "html part is HTML");

        let frame = next_frame(&mut socket, WAIT).await;
        assert_eq!(frame["event_id"], event_id.as_str());
        assert_eq!(frame["event_type"], body["event_type"]);
        assert!(!frame["title"].as_str().unwrap_or_default().is_empty());

        let ws = app.wait_for_notification(&event_id, "websocket", "sent", WAIT).await;
        assert_eq!(ws["attempts"], 1);
        assert_eq!(ws["provider"], "websocket", "the provider that delivered is recorded");
        let sent = app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
        assert_eq!(sent["provider"], "local-outbox");
    }
    app.stack.stop().await;
}

#[tokio::test]
async fn templates_follow_the_recipients_locale() {
    let app = spawn_app().await;
    let user = unique("u");
    let profile = json!({"email": "olena@example.com", "locale": "uk-UA"});
    assert_eq!(app.put(&format!("/v1/users/{user}"), &profile).await.status(), 200);
    let body = event_for("order.completed.json", &user);
    app.post_event(&body).await;
    let email = app.wait_for_outbox("email", body["event_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(email["locale"], "uk");
    // An explicit locale on the event wins over the profile's.
    let mut english = event_for("order.completed.json", &user);
    english["locale"] = json!("en");
    app.post_event(&english).await;
    let email = app.wait_for_outbox("email", english["event_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(email["locale"], "en");
    app.stack.stop().await;
}

#[tokio::test]
async fn the_same_event_twice_is_one_email_and_a_replayed_answer() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let body = event_for("user.registered.json", &user);
    let event_id = body["event_id"].as_str().unwrap().to_owned();

    let first = app.post_event(&body).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await.unwrap();
    let second = app.post_event(&body).await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.text().await.unwrap(), first_body);

    app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
    // Give a duplicate every chance to show up before counting: the stack has gone idle.
    assert!(app.stack.wait_idle(Duration::from_millis(500), WAIT).await, "the stack goes idle");
    let emails: Vec<_> = app.outbox("email").await.into_iter().filter(|m| m["event_id"] == event_id.as_str()).collect();
    assert_eq!(emails.len(), 1);

    let mut changed = body.clone();
    changed["payload"]["name"] = json!("Somebody Else");
    let conflict = app.post_event(&changed).await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(conflict.headers()["content-type"], "application/problem+json");
    app.stack.stop().await;
}

#[tokio::test]
async fn an_opted_out_channel_is_skipped_with_its_reason() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let prefs = json!({"channels": {"email": false}});
    assert_eq!(app.put(&format!("/v1/users/{user}/preferences"), &prefs).await.status(), 200);
    let body = event_for("user.registered.json", &user);
    let event_id = body["event_id"].as_str().unwrap();
    app.post_event(&body).await;

    let email = app.wait_for_notification(event_id, "email", "skipped", WAIT).await;
    assert_eq!(email["reason"], "opted_out");
    assert_eq!(email["attempts"], 0);
    assert!(app.outbox("email").await.iter().all(|m| m["event_id"] != event_id));
    app.stack.stop().await;
}

#[tokio::test]
async fn a_channel_without_an_address_is_skipped_not_failed() {
    let app = spawn_app().await;
    let user = unique("u");
    assert_eq!(app.put(&format!("/v1/users/{user}"), &json!({"email": "only-mail@example.com"})).await.status(), 200);
    let body = event_for("payment.failed.json", &user);
    let event_id = body["event_id"].as_str().unwrap();
    app.post_event(&body).await;
    let sms = app.wait_for_notification(event_id, "sms", "skipped", WAIT).await;
    assert_eq!(sms["reason"], "no_address");
    app.wait_for_notification(event_id, "email", "sent", WAIT).await;
    // Nobody is connected: the websocket notification is skipped, and kept for the inbox.
    let ws = app.wait_for_notification(event_id, "websocket", "skipped", WAIT).await;
    assert_eq!(ws["reason"], "no_live_connection");
    app.stack.stop().await;
}

#[tokio::test]
async fn a_failing_provider_is_retried_then_dead_lettered_and_reads_failed() {
    let app = spawn_app().await;
    app.stack.faults.set_failing(shared::domain::Channel::Sms, true);
    let user = unique("u");
    app.create_user(&user).await;
    let body = event_for("payment.failed.json", &user);
    let event_id = body["event_id"].as_str().unwrap();
    app.post_event(&body).await;

    let sms = app.wait_for_notification(event_id, "sms", "failed", Duration::from_secs(20)).await;
    assert_eq!(sms["reason"], "retries_exhausted");
    // max_receive_count is 3 in tests: three provider calls, then the DLQ.
    assert_eq!(sms["attempts"], 3);
    assert!(sms["last_error"].as_str().unwrap().contains("set to fail"));
    // The other channels of the event are unaffected.
    app.wait_for_notification(event_id, "email", "sent", WAIT).await;
    app.stack.stop().await;
}

#[tokio::test]
async fn a_dead_lettered_channel_falls_back_to_the_next_one() {
    let app = spawn_app().await;
    app.stack.faults.set_failing(shared::domain::Channel::Push, true);
    let user = unique("u");
    app.create_user(&user).await;
    let body = event_for("order.completed.json", &user);
    let event_id = body["event_id"].as_str().unwrap();
    app.post_event(&body).await;

    app.wait_for_notification(event_id, "push", "failed", Duration::from_secs(20)).await;
    let sms = app.wait_for_notification(event_id, "sms", "sent", WAIT).await;
    assert_eq!(sms["fallback_for"], "push");
    let text = app.wait_for_outbox("sms", event_id, WAIT).await;
    assert!(!text["parts"]["text"].as_str().unwrap().is_empty());
    app.stack.stop().await;
}

#[tokio::test]
async fn events_for_one_user_arrive_in_the_order_they_were_sent() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut socket = app.connect_ws(&user).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let mut body = event_for("order.completed.json", &user);
        body["payload"]["order_id"] = json!(format!("A-{i}"));
        ids.push(body["event_id"].as_str().unwrap().to_owned());
        assert_eq!(app.post_event(&body).await.status(), 202);
    }
    let mut frames = Vec::new();
    for _ in 0..ids.len() {
        frames.push(next_frame(&mut socket, WAIT).await["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(frames, ids, "websocket frames in order");
    app.wait_for_outbox("email", ids.last().unwrap(), WAIT).await;
    let emails: Vec<String> = app
        .outbox("email")
        .await
        .into_iter()
        .filter(|m| m["user_id"] == user.as_str())
        .map(|m| m["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(emails, ids, "emails in order");
    app.stack.stop().await;
}

#[tokio::test]
async fn a_scheduled_event_waits_for_its_time() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut body = event_for("user.registered.json", &user);
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    body["send_after"] = json!(at.to_string());
    let event_id = body["event_id"].as_str().unwrap();
    app.post_event(&body).await;

    let scheduled = app.wait_for_notification(event_id, "email", "scheduled", WAIT).await;
    assert!(scheduled["deliver_after"].is_string());
    let sent = app.wait_for_notification(event_id, "email", "sent", WAIT).await;
    let sent_at: jiff::Timestamp = sent["sent_at"].as_str().unwrap().parse().unwrap();
    assert!(sent_at >= at, "sent at {sent_at}, not before {at}");
    app.stack.stop().await;
}

#[tokio::test]
async fn bad_requests_get_problem_details() {
    let app = spawn_app().await;
    let problem = |r: reqwest::Response| async move {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        r.json::<Value>().await.unwrap()
    };

    let r = app.post_raw("{not json").await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["status"], 400);

    let r = app.http.post(app.url("/v1/events")).json(&sample("user.registered.json")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app.http.post(app.url("/v1/events")).header("authorization", "Bearer wrong").json(&sample("user.registered.json")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let mut big = sample("user.registered.json");
    big["payload"]["padding"] = json!("x".repeat(300 * 1024));
    let r = app.post_event(&big).await;
    assert_eq!(r.status(), 413);
    assert!(problem(r).await["detail"].as_str().unwrap().contains("245760"));

    let mut unknown = sample("user.registered.json");
    unknown["event_type"] = json!("no.such.type");
    let r = app.post_event(&unknown).await;
    assert_eq!(r.status(), 422);
    assert_eq!(problem(r).await["errors"][0]["path"], "/event_type");

    let r = app.post_event(&sample("order.completed.invalid.json")).await;
    assert_eq!(r.status(), 422);
    let p = problem(r).await;
    let paths: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.len() >= 2, "every failing field listed: {paths:?}");
    assert!(paths.iter().all(|p| p.starts_with("/payload/")), "{paths:?}");

    let r = app.post_event(&json!({"payload": 5})).await;
    assert_eq!(r.status(), 422);
    let p = problem(r).await;
    let paths: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for expected in ["/event_id", "/event_type", "/user_id", "/payload"] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }

    let r = app.put("/v1/users/u-1", &json!({"email": "nope", "phone": "0501234567"})).await;
    assert_eq!(r.status(), 422);
    let p = problem(r).await;
    assert_eq!(p["errors"][0]["path"], "/email");
    assert_eq!(p["errors"][1]["path"], "/phone");

    assert_eq!(app.get("/v1/events/never-sent").await.status(), 404);
    assert_eq!(app.http.get(app.url("/health")).send().await.unwrap().status(), 200);
    app.stack.stop().await;
}

#[tokio::test]
async fn a_websocket_needs_a_valid_token() {
    let app = spawn_app().await;
    let url = format!("ws://{}/v1/ws?token=forged", app.stack.addr);
    let err = tokio_tungstenite::connect_async(url).await.expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("unexpected {other:?}"),
    }
    app.stack.stop().await;
}

#[tokio::test]
async fn the_inbox_lists_a_users_notifications_newest_first_in_pages() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let body = event_for("user.registered.json", &user);
        ids.push(body["event_id"].as_str().unwrap().to_owned());
        app.post_event(&body).await;
        app.wait_for_notification(ids.last().unwrap(), "email", "sent", WAIT).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/users/{user}/notifications?limit=4&cursor={c}"),
            None => format!("/v1/users/{user}/notifications?limit=4"),
        };
        let page: Value = app.get(&path).await.json().await.unwrap();
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Two channels (email, websocket) per user.registered.
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0]["event_id"], ids[2].as_str());
    assert_eq!(seen[5]["event_id"], ids[0].as_str());
    app.stack.stop().await;
}

/// The `List-Unsubscribe` link of a delivered email (`<https://…>` → `https://…`).
fn unsubscribe_link(email: &Value) -> String {
    let header = email["headers"]["List-Unsubscribe"].as_str().unwrap_or_else(|| panic!("List-Unsubscribe on {email}"));
    header.strip_prefix('<').and_then(|h| h.strip_suffix('>')).unwrap_or_else(|| panic!("<url>: {header}")).to_owned()
}

#[tokio::test]
async fn one_click_unsubscribe_stops_that_categorys_email_and_a_get_changes_nothing() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;

    // A newsletter (not transactional) carries both RFC 8058 headers; a receipt carries neither.
    let first = event_for("marketing.newsletter.json", &user);
    assert_eq!(app.post_event(&first).await.status(), 202);
    let email = app.wait_for_outbox("email", first["event_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(email["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
    let link = unsubscribe_link(&email);
    assert!(link.starts_with(&format!("{}/v1/unsubscribe/", app.base)), "{link}");
    assert!(!email["parts"].as_object().unwrap().keys().any(|k| k.contains("Unsubscribe")), "headers are not content: {email}");
    let receipt = event_for("order.completed.json", &user);
    app.post_event(&receipt).await;
    let receipt_email = app.wait_for_outbox("email", receipt["event_id"].as_str().unwrap(), WAIT).await;
    assert!(receipt_email.get("headers").is_none(), "transactional email has no unsubscribe: {receipt_email}");

    // GET (what a mail scanner does): a page with the button, no change.
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">") && html.contains("marketing"), "{html}");
    let preferences: Value = app.get(&format!("/v1/users/{user}/preferences")).await.json().await.unwrap();
    assert!(preferences["categories"].get("marketing").is_none(), "GET changed nothing: {preferences}");

    // POST, as Gmail and Yahoo send it, without an API key: opted out of the category's email.
    for _ in 0..2 {
        let r = app
            .http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "idempotent");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(r.text().await.unwrap().contains("no longer receive"));
    }
    let preferences: Value = app.get(&format!("/v1/users/{user}/preferences")).await.json().await.unwrap();
    assert_eq!(preferences["categories"]["marketing"], json!({"email": false}));

    // The next newsletter is not emailed; the category of receipts is untouched.
    let second = event_for("marketing.newsletter.json", &user);
    let second_id = second["event_id"].as_str().unwrap();
    assert_eq!(app.post_event(&second).await.status(), 202);
    let skipped = app.wait_for_notification(second_id, "email", "skipped", WAIT).await;
    assert_eq!(skipped["reason"], "opted_out_of_category");
    assert!(!app.outbox("email").await.iter().any(|m| m["event_id"] == second_id));
    let next_receipt = event_for("order.completed.json", &user);
    app.post_event(&next_receipt).await;
    app.wait_for_outbox("email", next_receipt["event_id"].as_str().unwrap(), WAIT).await;

    // A tampered link: refused, as a page or (asked for JSON) a problem naming the token.
    let tampered = format!("{link}x");
    assert_eq!(app.http.get(&tampered).send().await.unwrap().status(), 400);
    let r = app.http.post(&tampered).header("accept", "application/json").body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["path"], "/token");
    app.stack.stop().await;
}

#[tokio::test]
async fn erasing_a_user_removes_them_and_scrubs_their_notifications_but_event_status_stays() {
    let app = spawn_app().await;
    let user = unique("u");
    let address = format!("{user}@example.com");
    app.create_user(&user).await;
    assert_eq!(app.put(&format!("/v1/users/{user}/preferences"), &json!({"categories": {"marketing": {"email": false}}})).await.status(), 200);
    let mut socket = app.connect_ws(&user).await;
    let body = event_for("order.completed.json", &user);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);
    next_frame(&mut socket, WAIT).await;
    app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
    app.wait_for_notification(&event_id, "push", "sent", WAIT).await;
    assert!(app.event_status(&event_id).await["notifications"][0]["title"].as_str().is_some_and(|t| t.contains("A-17")));
    // The address bounced once (as the feedback function records it).
    let bounce = shared::ports::Suppression {
        tenant: shared::domain::Tenant::default_tenant(),
        channel: shared::domain::Channel::Email,
        address: address.clone(),
        reason: shared::ports::SuppressionReason::HardBounce,
        created_at: jiff::Timestamp::now(),
        notification_id: None,
    };
    app.stack.inspect.suppressions.suppress(&bounce).await.unwrap();
    // Someone else, untouched by it.
    let other = unique("u");
    app.create_user(&other).await;

    let no_key = app.http.delete(app.url(&format!("/v1/users/{user}"))).send().await.unwrap();
    assert_eq!(no_key.status(), 401, "erasure needs the API key");
    let r = app.http.delete(app.url(&format!("/v1/users/{user}"))).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let erased: Value = r.json().await.unwrap();
    assert_eq!(erased["profile"], true);
    assert_eq!(erased["preferences"], true);
    assert_eq!(erased["connections"], 1);
    assert_eq!(erased["suppressions"], 1);
    assert_eq!(erased["notifications_scrubbed"], 3, "email, push and websocket: {erased}");
    assert_eq!(erased["event_payloads_scrubbed"], 1);

    assert_eq!(app.get(&format!("/v1/users/{user}")).await.status(), 404, "the profile is gone");
    let preferences: Value = app.get(&format!("/v1/users/{user}/preferences")).await.json().await.unwrap();
    assert_eq!(preferences["categories"], json!({}), "the preferences are gone");
    assert_eq!(app.get(&format!("/v1/users/{other}")).await.status(), 200);
    let suppressions: Value = app.get("/v1/suppressions").await.json().await.unwrap();
    assert!(!suppressions.to_string().contains(&address), "{suppressions}");
    // The event's status is still answerable, without its content.
    let status = app.event_status(&event_id).await;
    assert_eq!(status["event"]["payload"], Value::Null);
    let notifications = status["notifications"].as_array().unwrap();
    assert_eq!(notifications.iter().map(|n| n["status"].as_str().unwrap()).collect::<Vec<_>>(), ["sent", "sent", "sent"]);
    assert!(notifications.iter().all(|n| n.get("title").is_none() && n["notification_id"].is_string()), "{notifications:?}");
    let inbox: Value = app.get(&format!("/v1/users/{user}/notifications")).await.json().await.unwrap();
    assert!(inbox["items"].as_array().unwrap().iter().all(|n| n.get("title").is_none()));

    // Nothing reaches the erased user any more: no address, and no live connection on record.
    let after = event_for("order.completed.json", &user);
    let after_id = after["event_id"].as_str().unwrap();
    app.post_event(&after).await;
    assert_eq!(app.wait_for_notification(after_id, "email", "skipped", WAIT).await["reason"], "no_address");
    app.wait_for_notification(after_id, "websocket", "skipped", WAIT).await;

    // Erased already: only what routing that last event recorded is left to scrub (its payload,
    // no content); then nothing at all.
    let again = app.http.delete(app.url(&format!("/v1/users/{user}"))).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!((again["profile"].as_bool(), again["event_payloads_scrubbed"].as_u64()), (Some(false), Some(1)), "{again}");
    let third = app.http.delete(app.url(&format!("/v1/users/{user}"))).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(third.status(), 404);
    assert_eq!(third.headers()["content-type"], "application/problem+json");
    app.stack.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_new_event_type_is_added_with_data_alone() {
    // A catalog folder holding the shipped types plus one written here, as a user would.
    let dir = std::env::temp_dir().join(unique("catalog"));
    copy_dir(&shared::catalog::repository_catalog_dir(), &dir);
    let t = dir.join("invoice.overdue");
    std::fs::create_dir_all(t.join("templates/en")).unwrap();
    std::fs::write(
        t.join("event.json"),
        r#"{"description": "An invoice is past due", "category": "billing", "priority": "high", "channels": ["email", "websocket"]}"#,
    )
    .unwrap();
    std::fs::write(
        t.join("schema.json"),
        r#"{"type": "object", "required": ["invoice_id", "days"], "properties": {"invoice_id": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}}"#,
    )
    .unwrap();
    for (file, text) in [
        ("email.subject", "Invoice {{ payload.invoice_id }} is {{ payload.days }} days overdue"),
        ("email.text", "Please pay invoice {{ payload.invoice_id }}."),
        ("email.html", "<p>Please pay invoice <b>{{ payload.invoice_id }}</b>.</p>"),
        ("websocket.title", "Invoice overdue"),
        ("websocket.body", "{{ payload.invoice_id }}: {{ payload.days }} days"),
    ] {
        std::fs::write(t.join("templates/en").join(file), text).unwrap();
    }
    let mut config = local_stack::Config::for_tests();
    config.catalog_dir = dir.clone();
    let app = notify_tests::spawn_app_with(config).await;
    let user = unique("u");
    app.create_user(&user).await;

    let bad = json!({"event_id": unique("evt"), "event_type": "invoice.overdue", "user_id": user, "payload": {"invoice_id": "I-9", "days": 0}});
    assert_eq!(app.post_event(&bad).await.status(), 422);
    let event_id = unique("evt");
    let good = json!({"event_id": event_id, "event_type": "invoice.overdue", "user_id": user, "payload": {"invoice_id": "I-9", "days": 12}});
    assert_eq!(app.post_event(&good).await.status(), 202);
    let email = app.wait_for_outbox("email", &event_id, WAIT).await;
    assert_eq!(email["parts"]["subject"], "Invoice I-9 is 12 days overdue");
    app.stack.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_template_that_needs_a_missing_variable_fails_the_notification_with_the_reason() {
    let dir = std::env::temp_dir().join(unique("catalog"));
    let t = dir.join("strict.check");
    std::fs::create_dir_all(t.join("templates/en")).unwrap();
    std::fs::write(t.join("event.json"), r#"{"priority": "normal", "channels": ["email"]}"#).unwrap();
    std::fs::write(t.join("schema.json"), r#"{"type": "object"}"#).unwrap();
    for (file, text) in [("email.subject", "Hi {{ payload.name }}"), ("email.text", "t"), ("email.html", "<p>h</p>")] {
        std::fs::write(t.join("templates/en").join(file), text).unwrap();
    }
    let mut config = local_stack::Config::for_tests();
    config.catalog_dir = dir.clone();
    let app = notify_tests::spawn_app_with(config).await;
    let user = unique("u");
    app.create_user(&user).await;
    let event_id = unique("evt");
    let body = json!({"event_id": event_id, "event_type": "strict.check", "user_id": user, "payload": {}});
    assert_eq!(app.post_event(&body).await.status(), 202);
    let n = app.wait_for_notification(&event_id, "email", "failed", WAIT).await;
    assert_eq!(n["reason"], "template_error");
    assert!(n["last_error"].as_str().unwrap().contains("undefined"), "{n}");
    assert!(n["last_error"].as_str().unwrap().contains("`payload.name`"), "the missing variable is named: {n}");
    assert!(app.outbox("email").await.is_empty());
    // A preview says the same before anything is sent: 422 naming the variable.
    let r = app.http.post(app.url("/v1/event-types/strict.check/preview")).header("authorization", app.key()).json(&json!({"payload": {}})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("`payload.name`"), "{problem}");
    app.stack.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_suppressed_address_is_skipped_until_its_suppression_is_lifted() {
    use shared::domain::Channel;
    use shared::ports::{Suppression, SuppressionReason};
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let address = format!("{user}@example.com");
    // As the feedback function records a hard bounce (the address in another case).
    let bounced = Suppression {
        tenant: shared::domain::Tenant::default_tenant(),
        channel: Channel::Email,
        address: address.to_uppercase(),
        reason: SuppressionReason::HardBounce,
        created_at: jiff::Timestamp::now(),
        notification_id: None,
    };
    app.stack.inspect.suppressions.suppress(&bounced).await.expect("suppressed");

    let body = event_for("user.registered.json", &user);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);
    let email = app.wait_for_notification(&event_id, "email", "skipped", WAIT).await;
    assert_eq!(email["reason"], "suppressed");
    assert_eq!(email["attempts"], 0);
    assert!(app.stack.wait_idle(Duration::from_millis(300), WAIT).await, "the stack goes idle");
    assert!(app.outbox("email").await.iter().all(|m| m["event_id"] != event_id.as_str()), "nothing sent to it");

    // Listed by the API, newest first.
    let r = app.get("/v1/suppressions?limit=10").await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["items"][0]["channel"], "email");
    assert_eq!(listed["items"][0]["address"], address.to_uppercase().as_str());
    assert_eq!(listed["items"][0]["reason"], "hard_bounce");
    assert_eq!(listed["next_cursor"], Value::Null);
    let anonymous = app.http.get(app.url("/v1/suppressions")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the API key is required");

    // Lifted (any case of the address): 204, then 404 for the one that is gone.
    let delete = |path: String| app.http.delete(app.url(&path)).header("authorization", app.key()).send();
    let lifted = delete(format!("/v1/suppressions/email/{address}")).await.unwrap();
    assert_eq!(lifted.status(), 204);
    let again = delete(format!("/v1/suppressions/email/{address}")).await.unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    let unknown_channel = delete(format!("/v1/suppressions/fax/{address}")).await.unwrap();
    assert_eq!(unknown_channel.status(), 422);
    let listed: Value = app.get("/v1/suppressions").await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));

    // The next event is sent.
    let next = event_for("user.registered.json", &user);
    let next_id = next["event_id"].as_str().unwrap();
    assert_eq!(app.post_event(&next).await.status(), 202);
    app.wait_for_notification(next_id, "email", "sent", WAIT).await;
    let sent = app.wait_for_outbox("email", next_id, WAIT).await;
    assert_eq!(sent["to"]["to"], address.as_str());
    app.stack.stop().await;
}

#[tokio::test]
async fn canceling_an_event_stops_what_has_not_started_sending_and_is_idempotent() {
    // A failing email stays pending (between retries 300 ms apart) for three seconds at least.
    let mut config = local_stack::Config::for_tests();
    config.retry_base = Duration::from_millis(300);
    config.retry_max = Duration::from_millis(300);
    config.retry_max_attempts = 10;
    let app = notify_tests::spawn_app_with(config).await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut socket = app.connect_ws(&user).await;

    // Scheduled for an hour from now: email and websocket wait on the deferred queue.
    let mut later = event_for("user.registered.json", &user);
    later["send_after"] = json!((jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string());
    let later_id = later["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&later).await.status(), 202);
    app.wait_for_notification(&later_id, "email", "scheduled", WAIT).await;

    // Email failing (pending between retries), websocket sent at once.
    app.stack.faults.set_failing(shared::domain::Channel::Email, true);
    let now = event_for("user.registered.json", &user);
    let now_id = now["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&now).await.status(), 202);
    next_frame(&mut socket, WAIT).await;
    app.wait_for_notification(&now_id, "websocket", "sent", WAIT).await;

    let canceled: Value = app.http.delete(app.url(&format!("/v1/events/{later_id}"))).header("authorization", app.key()).send().await.unwrap().json().await.unwrap();
    let channels = |v: &Value, list: &str| -> Vec<String> {
        let mut c: Vec<String> = v[list].as_array().unwrap().iter().map(|n| n["channel"].as_str().unwrap().to_owned()).collect();
        c.sort();
        c
    };
    assert_eq!(channels(&canceled, "canceled"), ["email", "websocket"]);
    assert!(canceled["canceled"].as_array().unwrap().iter().all(|n| n["status"] == "canceled"));

    let r = app.http.delete(app.url(&format!("/v1/events/{now_id}"))).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let partly: Value = r.json().await.unwrap();
    assert_eq!(channels(&partly, "canceled"), ["email"], "the failing email had not started sending: {partly}");
    assert_eq!(channels(&partly, "unchanged"), ["websocket"], "sent ones are untouched");

    // The email's job comes back from its backoff, finds it canceled and drops it: nothing is
    // sent even once the provider works again.
    app.stack.faults.set_failing(shared::domain::Channel::Email, false);
    // Quiet for longer than the backoff: the job has come back and been dropped.
    assert!(app.stack.wait_idle(Duration::from_secs(1), WAIT).await);
    assert!(app.outbox("email").await.iter().all(|m| m["event_id"] != now_id.as_str()));
    let status = app.event_status(&now_id).await;
    let email = status["notifications"].as_array().unwrap().iter().find(|n| n["channel"] == "email").unwrap().clone();
    assert_eq!(email["status"], "canceled");

    // Idempotent: again, nothing more to cancel, the same final states.
    let again: Value = app.http.delete(app.url(&format!("/v1/events/{later_id}"))).header("authorization", app.key()).send().await.unwrap().json().await.unwrap();
    assert!(again["canceled"].as_array().unwrap().is_empty());
    assert_eq!(channels(&again, "unchanged"), ["email", "websocket"]);
    let r = app.http.delete(app.url("/v1/events/never-posted")).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    app.stack.stop().await;
}

#[tokio::test]
async fn a_key_over_its_ingest_rate_gets_429_with_when_to_retry() {
    let mut config = local_stack::Config::for_tests();
    config.ingest_rate_per_key = Some(3);
    let app = notify_tests::spawn_app_with(config).await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..8 {
        let r = app.post_event(&event_for("user.registered.json", &user)).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 && limited.is_none() {
            limited = Some(r);
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!((3..8).contains(&accepted), "at most 3 a second get through: {statuses:?}");
    let r = limited.expect("some were over the rate");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["ratelimit-limit"], "3");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    assert!(problem["type"].as_str().unwrap().ends_with("rate-limited"));
    app.stack.stop().await;
}

#[tokio::test]
async fn a_batch_of_a_hundred_events_is_answered_per_event() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut events: Vec<Value> = (0..100).map(|_| event_for("user.registered.json", &user)).collect();
    // One invalid, one the same as another (a replay), one reusing an id with another body.
    events[10]["payload"] = json!({});
    events[20] = events[19].clone();
    let taken = events[30]["event_id"].clone();
    events[31]["event_id"] = taken;
    events[31]["payload"]["name"] = json!("Somebody Else");
    let r = app.http.post(app.url("/v1/events/batch")).header("authorization", app.key()).json(&events).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i);
        let expected = match i {
            10 => 422,
            31 => 409,
            _ => 202,
        };
        assert_eq!(result["status"], expected, "{i}: {result}");
    }
    assert_eq!(results[10]["problem"]["errors"][0]["path"], "/payload/name");
    assert_eq!(results[20]["replayed"], true);
    assert_eq!(results[0]["location"], format!("/v1/events/{}", events[0]["event_id"].as_str().unwrap()));
    app.wait_for_notification(events[99]["event_id"].as_str().unwrap(), "email", "sent", WAIT).await;

    let r = app.http.post(app.url("/v1/events/batch")).header("authorization", app.key()).json(&vec![events[0].clone(); 101]).send().await.unwrap();
    assert_eq!(r.status(), 422, "at most 100");
    let r = app.http.post(app.url("/v1/events/batch")).header("authorization", app.key()).json(&events[0]).send().await.unwrap();
    assert_eq!(r.status(), 422, "an array");
    let r = app.http.post(app.url("/v1/events/batch")).json(&events).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.stack.stop().await;
}

#[tokio::test]
async fn the_catalog_is_readable_and_a_template_can_be_previewed_without_sending() {
    let app = spawn_app().await;
    let list: Value = app.get("/v1/event-types").await.json().await.unwrap();
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["event_type"].as_str().unwrap()).collect();
    assert_eq!(names, ["marketing.newsletter", "order.completed", "payment.failed", "user.registered"]);
    let transactional: Vec<bool> = list["items"].as_array().unwrap().iter().map(|t| t["transactional"].as_bool().unwrap()).collect();
    assert_eq!(transactional, [false, true, true, true], "catalog data says which types are transactional");
    let order: Value = app.get("/v1/event-types/order.completed").await.json().await.unwrap();
    assert_eq!(order["priority"], "high");
    assert_eq!(order["fallback"]["push"], "sms");
    assert_eq!(order["locales"], json!(["en", "uk"]));
    assert_eq!(order["schema"]["required"], json!(["order_id", "total", "currency"]));
    assert_eq!(app.get("/v1/event-types/no.such").await.status(), 404);

    let preview = |body: Value| {
        let app = &app;
        async move { app.http.post(app.url("/v1/event-types/order.completed/preview")).header("authorization", app.key()).json(&body).send().await.unwrap() }
    };
    let r = preview(json!({"payload": {"order_id": "A-17", "total": "59.90", "currency": "EUR"}, "locale": "uk"})).await;
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    let channels: Vec<&str> = shown["messages"].as_array().unwrap().iter().map(|m| m["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["email", "push", "websocket", "sms"], "the type's channels and its fallback");
    assert!(shown["messages"][0]["parts"]["subject"].as_str().unwrap().contains("A-17"));
    assert_eq!(shown["messages"][0]["locale"], "uk");

    let r = preview(json!({"payload": {"order_id": "A-17"}})).await;
    assert_eq!(r.status(), 422, "the schema first");
    let problem: Value = r.json().await.unwrap();
    assert!(problem["errors"].as_array().unwrap().iter().any(|e| e["path"] == "/payload/total"), "{problem}");
    assert!(app.outbox("email").await.is_empty(), "a preview sends nothing");
    app.stack.stop().await;
}

/// Polls `GET /v1/dead-letters` until it lists the dead letter of `notification_id`.
async fn wait_for_dead_letter(app: &notify_tests::TestApp, notification_id: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = app.get("/v1/dead-letters?limit=100").await;
        assert_eq!(r.status(), 200);
        let listed: Value = r.json().await.unwrap();
        if let Some(found) = listed["items"].as_array().and_then(|items| items.iter().find(|d| d["notification_id"] == notification_id)) {
            return found.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter of {notification_id} after {timeout:?}: {listed}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn replay_dead_letters(app: &notify_tests::TestApp, body: &Value) -> reqwest::Response {
    app.http.post(app.url("/v1/dead-letters/replay")).header("authorization", app.key()).json(body).send().await.expect("request")
}

#[tokio::test]
async fn a_dead_lettered_job_is_listed_and_replayed_over_the_api_and_delivered_once() {
    // One receive per pass through the send queue and a provider budget no pass exhausts: the
    // job goes to the send queue's DLQ, is redriven three times, then the dead-letter handler
    // gives up on it (retries_exhausted) and records it.
    let mut config = local_stack::Config::for_tests();
    config.max_receive_count = 1;
    config.retry_max_attempts = 100;
    let app = notify_tests::spawn_app_with(config).await;
    app.stack.faults.set_failing(shared::domain::Channel::Sms, true);
    let user = unique("u");
    app.create_user(&user).await;
    let mut body = event_for("payment.failed.json", &user);
    body["channels"] = json!(["sms"]);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);

    let sms = app.wait_for_notification(&event_id, "sms", "failed", Duration::from_secs(20)).await;
    assert_eq!(sms["reason"], "retries_exhausted");
    assert_eq!(sms["attempts"], 4, "one provider call per pass: the first and three redrives");
    let notification_id = sms["notification_id"].as_str().unwrap().to_owned();
    let letter = wait_for_dead_letter(&app, &notification_id, WAIT).await;
    let queue = letter["queue"].as_str().unwrap();
    assert!(queue.starts_with("send-sms-") && queue.ends_with("-dlq.fifo"), "{letter}");
    assert_eq!(letter["reason"], "retries_exhausted");
    assert_eq!(letter["event_id"], event_id.as_str());
    assert_eq!(letter["user_id"], user.as_str());
    assert_eq!(letter["attempts"], 4);
    assert!(letter["first_failure_at"].is_string() && letter["last_failure_at"].is_string(), "{letter}");
    assert!(letter.get("body").is_none(), "the job's content is not listed: {letter}");
    let of_queue: Value = app.get(&format!("/v1/dead-letters?queue={queue}")).await.json().await.unwrap();
    assert_eq!(of_queue["items"].as_array().map(Vec::len), Some(1), "{of_queue}");
    let other: Value = app.get("/v1/dead-letters?queue=deferred-dlq").await.json().await.unwrap();
    assert_eq!(other["items"], json!([]));
    assert!(app.outbox("sms").await.iter().all(|m| m["event_id"] != event_id.as_str()), "nothing sent yet");

    // Invalid requests name the field; the API key is required.
    let invalid = replay_dead_letters(&app, &json!({"ids": []})).await;
    assert_eq!(invalid.status(), 422);
    let problem: Value = invalid.json().await.unwrap();
    assert_eq!(problem["errors"][0]["path"], "/ids", "{problem}");
    let invalid: Value = replay_dead_letters(&app, &json!({"queue": "send-sms-fast.fifo"})).await.json().await.unwrap();
    assert_eq!(invalid["errors"][0]["path"], "/queue", "{invalid}");
    let anonymous = app.http.post(app.url("/v1/dead-letters/replay")).json(&json!({"ids": ["x"]})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // The provider recovers; the replay sends it, once, with a fresh attempt budget.
    app.stack.faults.set_failing(shared::domain::Channel::Sms, false);
    let id = letter["id"].as_str().unwrap();
    let r = replay_dead_letters(&app, &json!({"ids": [id, "dl_unknown"]})).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["results"], json!([{"id": id, "outcome": "replayed"}, {"id": "dl_unknown", "outcome": "not_found"}]), "{answer}");
    let sent = app.wait_for_notification(&event_id, "sms", "sent", WAIT).await;
    assert_eq!(sent["attempts"], 1, "a fresh attempt budget");
    assert_eq!(sent["reason"], Value::Null);
    // Replaying again finds nothing, and sends nothing.
    let again: Value = replay_dead_letters(&app, &json!({"ids": [id]})).await.json().await.unwrap();
    assert_eq!(again["results"][0]["outcome"], "not_found");
    let all: Value = replay_dead_letters(&app, &json!({"queue": queue})).await.json().await.unwrap();
    assert_eq!(all, json!({"results": [], "more": false}));
    assert!(app.stack.wait_idle(Duration::from_millis(300), WAIT).await, "the stack goes idle");
    let texts = app.outbox("sms").await.into_iter().filter(|m| m["event_id"] == event_id.as_str()).count();
    assert_eq!(texts, 1, "delivered exactly once");
    let listed: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
    assert_eq!(listed, json!({"items": [], "next_cursor": null}));
    app.stack.stop().await;
}
