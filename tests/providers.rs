//! Every channel on real provider APIs, end to end through the local stack: WhatsApp, Telegram
//! and webhooks through their HTTP adapters to local fakes (wiremock), email failing over from
//! its first provider to SendGrid, a burst paced to a provider's rate, and a bounced address
//! suppressed.

use local_stack::config::{HttpProviders, SendGridSettings, TelegramSettings, WhatsAppSettings};
use local_stack::faults::parse_faults;
use notify_tests::{TestApp, event_for, spawn_app_with, unique};
use serde_json::{Value, json};
use shared::adapters::http::webhook::WebhookSigner;
use shared::domain::Channel;
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(20);

async fn put_profile(app: &TestApp, user: &str, profile: Value) {
    let r = app.put(&format!("/v1/users/{user}"), &profile).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// Posts a `user.registered` for `user` on email alone; answers its event id.
async fn post_email_only(app: &TestApp, user: &str) -> String {
    let mut body = event_for("user.registered.json", user);
    body["channels"] = json!(["email"]);
    assert_eq!(app.post_event(&body).await.status(), 202);
    body["event_id"].as_str().unwrap().to_owned()
}

fn body_of(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_failure_reaches_whatsapp_telegram_and_a_signed_webhook_through_their_apis() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/botTEST-BOT-TOKEN/sendMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {"message_id": 77}})))
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path("/PNID-1/messages"))
        .and(header("authorization", "Bearer WA-TOKEN"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": [{"id": "wamid.HBgL"}]})))
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("POST")).and(path("/hooks/billing")).respond_with(ResponseTemplate::new(204)).expect(1).mount(&fake).await;

    let secret = WebhookSigner::generate_secret();
    let mut config = local_stack::Config::for_tests();
    config.providers = HttpProviders {
        telegram: Some(TelegramSettings { api_url: fake.uri(), bot_token: "TEST-BOT-TOKEN".into() }),
        whatsapp: Some(WhatsAppSettings { api_url: fake.uri(), phone_number_id: "PNID-1".into(), access_token: "WA-TOKEN".into() }),
        webhook_secret: Some(secret.clone()),
        ..HttpProviders::default()
    };
    let app = spawn_app_with(config).await;
    let user = unique("u");
    put_profile(
        &app,
        &user,
        json!({"email": "x@example.com", "whatsapp": "+380501234567", "telegram_chat_id": "123456789", "locale": "en",
               "webhook_url": format!("{}/hooks/billing", fake.uri())}),
    )
    .await;
    let mut body = event_for("payment.failed.json", &user);
    body["channels"] = json!(["whatsapp", "telegram", "webhook"]);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);

    for (channel, provider, id) in [("whatsapp", "whatsapp", "wamid.HBgL"), ("telegram", "telegram", "77")] {
        let n = app.wait_for_notification(&event_id, channel, "sent", WAIT).await;
        assert_eq!(n["provider"], provider, "{n}");
        assert_eq!(n["provider_message_id"], id, "{n}");
    }
    let hook = app.wait_for_notification(&event_id, "webhook", "sent", WAIT).await;
    assert_eq!(hook["provider"], "webhook");
    assert!(app.outbox("telegram").await.is_empty() && app.outbox("whatsapp").await.is_empty(), "real adapters, not the outbox");

    let requests = fake.received_requests().await.expect("recorded");
    let telegram = requests.iter().find(|r| r.url.path().ends_with("/sendMessage")).expect("telegram called");
    let sent = body_of(telegram);
    assert_eq!(sent["chat_id"], 123456789);
    assert_eq!(sent["parse_mode"], "HTML");
    assert!(sent["text"].as_str().unwrap().contains("12.00 USD"), "{sent}");
    let whatsapp = requests.iter().find(|r| r.url.path().ends_with("/messages")).expect("whatsapp called");
    let sent = body_of(whatsapp);
    assert_eq!(sent["to"], "380501234567");
    assert_eq!(sent["type"], "template");
    assert_eq!(sent["template"]["name"], "payment_failed");
    assert_eq!(sent["template"]["components"][0]["parameters"][0]["text"], "12.00 USD");
    let webhook = requests.iter().find(|r| r.url.path() == "/hooks/billing").expect("webhook called");
    // What a receiver does: verify the Standard Webhooks signature with the shared secret.
    WebhookSigner::new(&secret).unwrap().verify(&webhook.headers, &webhook.body).expect("the signature verifies");
    assert_eq!(webhook.headers["webhook-id"], hook["notification_id"].as_str().unwrap());
    let sent = body_of(webhook);
    assert_eq!(sent["type"], "payment.failed");
    assert_eq!(sent["data"]["payload"]["payment_id"], body["payload"]["payment_id"], "{sent}");
    app.stack.stop().await;
}

/// Email's first provider down (every call fails) and SendGrid second, at a fake that accepts
/// exactly one message with `message_id`.
async fn sendgrid_after_a_failing_first_provider(config: &mut local_stack::Config, message_id: &str) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG-KEY"))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", message_id))
        .expect(1)
        .mount(&fake)
        .await;
    config.faults = parse_faults("email:transient=1.0").unwrap();
    config.providers = HttpProviders {
        sendgrid: Some(SendGridSettings { api_url: fake.uri(), api_key: "SG-KEY".into(), from: "no-reply@example.com".into() }),
        ..HttpProviders::default()
    };
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_first_email_provider_fails_over_to_sendgrid_and_records_it() {
    let mut config = local_stack::Config::for_tests();
    // The first provider (the outbox, standing in for SES) is down.
    let fake = sendgrid_after_a_failing_first_provider(&mut config, "sg-msg-1").await;
    let app = spawn_app_with(config).await;
    let user = unique("u");
    app.create_user(&user).await;
    let event_id = post_email_only(&app, &user).await;
    let n = app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
    assert_eq!(n["provider"], "sendgrid", "{n}");
    assert_eq!(n["provider_message_id"], "sg-msg-1");
    assert_eq!(n["attempts"], 1, "the failover happened within one attempt");
    assert!(app.outbox("email").await.is_empty());
    let sent = body_of(&fake.received_requests().await.unwrap()[0]);
    assert_eq!(sent["personalizations"][0]["to"][0]["email"], format!("{user}@example.com"));
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_a_providers_rate_is_paced_not_failed() {
    let mut config = local_stack::Config::for_tests();
    config.provider_rates = [(Channel::Email, 2)].into();
    let app = spawn_app_with(config).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let user = unique("u");
        app.create_user(&user).await;
        ids.push(post_email_only(&app, &user).await);
    }
    let mut seconds = std::collections::BTreeMap::<i64, usize>::new();
    for id in &ids {
        let n = app.wait_for_notification(id, "email", "sent", Duration::from_secs(40)).await;
        assert_eq!(n["attempts"], 1, "waiting for the rate spends no attempt: {n}");
        let at: jiff::Timestamp = n["sent_at"].as_str().unwrap().parse().unwrap();
        *seconds.entry(at.as_second()).or_default() += 1;
    }
    // Each send takes its place in a second's budget just before the provider call; the call's
    // end (sent_at) may fall a moment into the next second, so allow one more per second there.
    assert!(seconds.values().all(|n| *n <= 3), "about 2 a second: {seconds:?}");
    let span = seconds.keys().last().unwrap() - seconds.keys().next().unwrap();
    assert!(span >= 2, "8 messages at 2 a second take 4 one-second windows: {seconds:?}");
    assert!(app.stack.inspect.poll_stats.retries() > 0, "the overflow waited on its queue");
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_suppresses_the_address_and_the_next_email_is_skipped() {
    let app = spawn_app_with(local_stack::Config::for_tests()).await;
    let user = unique("u");
    app.create_user(&user).await;
    let email = format!("{user}@example.com");
    let first_id = post_email_only(&app, &user).await;
    let sent = app.wait_for_notification(&first_id, "email", "sent", WAIT).await;

    // SES's bounce event, as the configuration set publishes it to SNS for the feedback function.
    let sample = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/lambda/feedback/ses-bounce-permanent.json")).unwrap();
    let sample = sample.replace("olena@example.com", &email).replace("ntf_4adc4daeea6b686e1c3f204cbb237b76", sent["notification_id"].as_str().unwrap());
    let event: aws_lambda_events::event::sns::SnsEvent = serde_json::from_str(&sample).unwrap();
    let deps = shared::handlers::feedback::FeedbackDeps {
        suppressions: app.stack.inspect.suppressions.clone(),
        notifications: app.stack.inspect.notifications.clone(),
        clock: std::sync::Arc::new(shared::ports::SystemClock),
        callbacks: app.stack.callbacks.clone(),
    };
    shared::handlers::feedback::handle_feedback(&deps, &event).await.expect("feedback handled");
    let bounced = app.wait_for_notification(&first_id, "email", "failed", WAIT).await;
    assert_eq!(bounced["reason"], "bounced");

    let next_id = post_email_only(&app, &user).await;
    let skipped = app.wait_for_notification(&next_id, "email", "skipped", WAIT).await;
    assert_eq!(skipped["reason"], "suppressed");
    let listed: Value = app.get("/v1/suppressions").await.json().await.unwrap();
    assert!(listed["items"].as_array().unwrap().iter().any(|s| s["address"] == email.as_str() && s["reason"] == "hard_bounce"), "{listed}");
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_final_status_is_posted_signed_to_the_producers_callback_url() {
    let fake = MockServer::start().await;
    Mock::given(method("POST")).and(path("/status")).respond_with(ResponseTemplate::new(200)).mount(&fake).await;
    let secret = WebhookSigner::generate_secret();
    let mut config = local_stack::Config::for_tests();
    config.status_callback_url = Some(format!("{}/status", fake.uri()));
    config.providers = HttpProviders { webhook_secret: Some(secret.clone()), ..HttpProviders::default() };
    let app = spawn_app_with(config).await;
    let user = unique("u");
    // An email, no phone: payment.failed's email is sent, its SMS skipped (no address), its
    // WebSocket skipped (nobody connected).
    put_profile(&app, &user, json!({"email": format!("{user}@example.com")})).await;
    let body = event_for("payment.failed.json", &user);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);
    app.wait_for_notification(&event_id, "email", "sent", WAIT).await;

    let deadline = tokio::time::Instant::now() + WAIT;
    let callbacks = loop {
        let requests = fake.received_requests().await.unwrap();
        if requests.len() >= 3 || tokio::time::Instant::now() > deadline {
            break requests;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let signer = WebhookSigner::new(&secret).unwrap();
    let mut seen: Vec<(String, String, String)> = callbacks
        .iter()
        .map(|r| {
            signer.verify(&r.headers, &r.body).expect("every callback is signed");
            let b = body_of(r);
            assert_eq!(b["data"]["event_id"], event_id.as_str());
            assert!(b["data"].get("address").is_none() && !String::from_utf8_lossy(&r.body).contains("@example.com"), "no address in a callback");
            (b["data"]["channel"].as_str().unwrap().to_owned(), b["type"].as_str().unwrap().to_owned(), b["data"]["reason"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("email".to_owned(), "notification.sent".to_owned(), String::new()),
            ("sms".to_owned(), "notification.skipped".to_owned(), "no_address".to_owned()),
            ("websocket".to_owned(), "notification.skipped".to_owned(), "no_live_connection".to_owned()),
        ]
    );
    app.stack.stop().await;
}

/// The same failover with SES itself first, on the emulator: SES down (every call fails), the
/// email goes out through SendGrid, and the notification says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ses_outage_fails_over_to_sendgrid_on_the_aws_backend() {
    use local_stack::config::{AwsBackend, AwsResources, Backend};
    let mut config = local_stack::Config::for_tests();
    config.retry_base = Duration::from_secs(1);
    config.retry_max = Duration::from_secs(1);
    let _fake = sendgrid_after_a_failing_first_provider(&mut config, "sg-aws-1").await;
    config.backend = Backend::Aws(Box::new(AwsBackend {
        sdk: notify_tests::aws::emulator_sdk_config().await,
        resources: AwsResources::Provision {
            template: local_stack::provision::repository_template(),
            stack_name: unique("f").to_lowercase(),
            parameters: Default::default(),
        },
        email_from: "notifications@example.com".into(),
        sms_sender_id: None,
        push_fcm_application_arn: None,
        interceptor: None,
    }));
    let app = spawn_app_with(config).await;
    let user = unique("u");
    app.create_user(&user).await;
    let event_id = post_email_only(&app, &user).await;
    let n = app.wait_for_notification(&event_id, "email", "sent", Duration::from_secs(40)).await;
    assert_eq!(n["provider"], "sendgrid", "{n}");
    assert_eq!(n["provider_message_id"], "sg-aws-1");
    app.stack.stop().await;
}
