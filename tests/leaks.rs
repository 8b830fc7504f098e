//! Nothing leaks: the whole pipeline at the most verbose log level the template allows
//! (`debug`), every channel, every failure path (providers failing transiently and for good,
//! with errors that quote the recipient as SES and Twilio do; the store and the queues failing;
//! bad input), with unique, recognisable contact details, tokens and payload values. Every log
//! line, every error answer, every stored error, the dead letters and the metrics are captured,
//! and none may hold any of them.

use local_stack::Config;
use local_stack::faults::parse_faults;
use notify_tests::{sample, spawn_app_with, unique};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every log line written, as the Lambda functions write them (JSON, flattened fields).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || writer.clone())
        .init();
    captured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_contact_detail_token_or_payload_value_reaches_a_log_an_error_answer_or_a_stored_error() {
    let logs = capture_logs();
    let tag = ulid::Ulid::new().to_string().to_lowercase();
    let email = format!("leak.{tag}@leaky.example");
    let phone = "+15550123987".to_owned();
    let whatsapp = "+15550456321".to_owned();
    let push_token = format!("pushtoken{tag}");
    let chat_id = "7350981264".to_owned();
    let webhook = format!("https://hooks.leaky.example/{tag}");
    let payload_value = format!("payloadsecret{tag}");
    let api_key = format!("key{tag}");
    let secrets: Vec<(&str, String)> = vec![
        ("email", email.clone()),
        ("phone", phone.clone()),
        ("whatsapp", whatsapp.clone()),
        ("push token", push_token.clone()),
        ("telegram chat id", chat_id.clone()),
        ("webhook url", webhook.clone()),
        ("payload value", payload_value.clone()),
        ("api key", api_key.clone()),
    ];

    let config = Config {
        api_keys: vec![api_key.clone()],
        faults: parse_faults(
            "email:transient=0.3,email:permanent=0.15,sms:transient=0.3,sms:permanent=0.15,push:transient=0.3,push:permanent=0.15,\
             whatsapp:transient=0.3,whatsapp:permanent=0.15,telegram:transient=0.3,telegram:permanent=0.15,\
             webhook:transient=0.3,webhook:permanent=0.15,store:transient=0.03,queue:transient=0.03",
        )
        .unwrap(),
        faults_seed: 7,
        retry_max_attempts: 3,
        ..Config::for_tests()
    };
    let app = spawn_app_with(config).await;
    let user = unique("u");
    let profile = json!({
        "email": email, "phone": phone, "whatsapp": whatsapp, "telegram_chat_id": chat_id,
        "webhook_url": webhook, "locale": "en", "timezone": "Europe/Kyiv",
        "push_tokens": [{"platform": "fcm", "token": push_token}],
    });
    // Stores and queues fail at times: a write is retried as a client would.
    for _ in 0..20 {
        if app.put(&format!("/v1/users/{user}"), &profile).await.status() == 200 {
            break;
        }
    }
    let _socket = app.connect_ws(&user).await;
    let every_channel = json!(["email", "sms", "push", "whatsapp", "telegram", "webhook", "websocket"]);
    let mut events = Vec::new();
    let mut error_answers = Vec::new();
    for (name, field) in [("order.completed.json", "order_id"), ("payment.failed.json", "payment_id"), ("user.registered.json", "name"), ("marketing.newsletter.json", "headline")] {
        for round in 0..6 {
            let mut body = sample(name);
            body["event_id"] = json!(unique("evt"));
            body["user_id"] = json!(user);
            body["payload"][field] = json!(format!("{payload_value}-{round}"));
            body["channels"] = every_channel.clone();
            let r = app.post_event(&body).await;
            if r.status() == 202 {
                events.push(body["event_id"].as_str().unwrap().to_owned());
            } else {
                error_answers.push(r.text().await.unwrap());
            }
        }
    }
    // Bad input carrying the secrets, answered with problems.
    let mut bad = sample("order.completed.json");
    bad["event_id"] = json!(format!("bad {email}"));
    bad["user_id"] = json!(phone);
    bad["payload"]["total"] = json!(12345);
    bad["payload"]["currency"] = json!(payload_value);
    bad["priority"] = json!(push_token);
    bad["locale"] = json!(webhook);
    error_answers.push(app.post_event(&bad).await.text().await.unwrap());
    error_answers.push(app.post_raw(format!("{{\"event_id\": \"{email}\", ")).await.text().await.unwrap());
    let bad_profile = json!({"email": format!("not an email {phone}"), "phone": email, "webhook_url": format!("ftp://{push_token}"), "timezone": payload_value});
    error_answers.push(app.put(&format!("/v1/users/{user}"), &bad_profile).await.text().await.unwrap());
    let r = app.http.get(app.url("/v1/events/x")).header("authorization", format!("Bearer {api_key}x")).send().await.unwrap();
    error_answers.push(r.text().await.unwrap());
    error_answers.push(app.get(&format!("/v1/users/{email}/notifications?limit={phone}")).await.text().await.unwrap());

    assert!(app.stack.wait_idle(Duration::from_millis(1500), Duration::from_secs(120)).await, "the pipeline settles");
    let injected: u64 = app.stack.faults.injected().values().sum();
    assert!(injected > 20, "failures were exercised: {injected}");

    // Stored errors (through the API), the inbox, the dead letters, the metrics.
    let mut answers = Vec::new();
    let mut last_errors = 0;
    for id in &events {
        let status: Value = app.get(&format!("/v1/events/{id}")).await.json().await.unwrap();
        for n in status["notifications"].as_array().into_iter().flatten() {
            if let Some(e) = n["last_error"].as_str() {
                last_errors += 1;
                answers.push(e.to_owned());
            }
        }
    }
    assert!(last_errors > 5, "provider errors were stored: {last_errors}");
    answers.push(app.get("/v1/dead-letters").await.text().await.unwrap());
    answers.push(app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
    answers.extend(error_answers);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 100, "the pipeline logged: {} lines", logs.lines().count());
    assert!(logs.contains("\"level\":\"DEBUG\""), "at debug level");
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        for line in logs.lines().filter(|l| l.contains(secret.as_str())) {
            leaks.push(format!("log line holds the {what}: {line}"));
        }
        for answer in answers.iter().filter(|a| a.contains(secret.as_str())) {
            leaks.push(format!("answer or stored error holds the {what}: {answer}"));
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.iter().take(20).cloned().collect::<Vec<_>>().join("\n"));
    app.stack.stop().await;
}
