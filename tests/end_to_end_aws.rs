//! End to end on the AWS emulator: the local stack runs the Lambda handlers over moto's SQS
//! and DynamoDB (playing the event source mappings), sends through SES v2 and SNS as moto
//! records them, and pushes WebSocket frames through the real API Gateway Management client.

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use local_stack::config::{AwsBackend, AwsResources, Backend};
use notify_tests::aws::emulator_sdk_config;
use notify_tests::request_counter::RequestCounter;
use notify_tests::{TestApp, event_for, next_frame, spawn_app_with, unique};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn spawn_aws_app(counter: Option<RequestCounter>) -> TestApp {
    spawn_aws_app_with(counter, 3, |_| {}).await
}

/// The stack on the emulator, its queues' redrive after `max_receive_count` receives, `tune`
/// changing the rest of its configuration.
async fn spawn_aws_app_with(counter: Option<RequestCounter>, max_receive_count: u32, tune: impl FnOnce(&mut local_stack::Config)) -> TestApp {
    let sdk = emulator_sdk_config().await;
    let mut config = local_stack::Config::for_tests();
    config.max_receive_count = max_receive_count;
    tune(&mut config);
    // Whole seconds on SQS: keep backoff short but real.
    config.retry_base = Duration::from_secs(1);
    config.retry_max = Duration::from_secs(1);
    config.backend = Backend::Aws(Box::new(AwsBackend {
        sdk,
        resources: AwsResources::Provision {
            template: local_stack::provision::repository_template(),
            stack_name: unique("t").to_lowercase(),
            parameters: [("MaxReceiveCount".to_owned(), max_receive_count.to_string())].into(),
        },
        email_from: "notifications@example.com".into(),
        sms_sender_id: None,
        push_fcm_application_arn: None,
        interceptor: counter.map(SharedInterceptor::new),
    }));
    spawn_app_with(config).await
}

fn endpoint() -> String {
    std::env::var("NOTIFY_TEST_AWS_ENDPOINT").expect("NOTIFY_TEST_AWS_ENDPOINT is set: run the suite with `bash tests/run.sh`")
}

/// What moto's SES recorded (see localstack/moto_server.py).
async fn emulator_emails() -> Vec<Value> {
    reqwest::get(format!("{}/_notify/emails", endpoint())).await.unwrap().json().await.unwrap()
}

async fn emulator_sms() -> Vec<Value> {
    reqwest::get(format!("{}/_notify/sms", endpoint())).await.unwrap().json().await.unwrap()
}

async fn create_user(app: &TestApp, user: &str, email: &str, phone: &str) {
    let profile = json!({"email": email, "phone": phone, "locale": "en", "push_tokens": [{"platform": "fcm", "token": format!("tok-{user}")}]});
    assert_eq!(app.put(&format!("/v1/users/{user}"), &profile).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_built_in_event_type_is_delivered_through_ses_sns_and_the_websocket() {
    let app = spawn_aws_app(None).await;
    let user = unique("u");
    let email = format!("{}@example.com", user.to_lowercase());
    let phone = "+14155550100";
    create_user(&app, &user, &email, phone).await;
    let mut socket = app.connect_ws(&user).await;

    for name in ["user.registered.json", "order.completed.json", "payment.failed.json"] {
        let mut body = event_for(name, &user);
        body["channels"] = json!(["email", "sms", "websocket"]);
        let event_id = body["event_id"].as_str().unwrap().to_owned();
        assert_eq!(app.post_event(&body).await.status(), 202, "{name}");
        let frame = next_frame(&mut socket, WAIT).await;
        assert_eq!(frame["event_id"], event_id.as_str());
        let ses = app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
        let sms = app.wait_for_notification(&event_id, "sms", "sent", WAIT).await;
        let ses_id = ses["provider_message_id"].as_str().unwrap().to_owned();
        let sms_id = sms["provider_message_id"].as_str().unwrap().to_owned();
        let emails = emulator_emails().await;
        let sent = emails.iter().find(|m| m["message_id"] == ses_id.as_str()).unwrap_or_else(|| panic!("SES recorded {ses_id}"));
        assert_eq!(sent["to"], json!([email]));
        assert!(!sent["subject"].as_str().unwrap().is_empty());
        let texts = emulator_sms().await;
        let text = texts.iter().find(|m| m["message_id"] == sms_id.as_str()).unwrap_or_else(|| panic!("SNS recorded {sms_id}"));
        assert_eq!(text["phone_number"], phone);
    }
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_post_yields_one_email() {
    let app = spawn_aws_app(None).await;
    let user = unique("u");
    let email = format!("dup-{}@example.com", user.to_lowercase());
    create_user(&app, &user, &email, "+14155550101").await;
    let body = event_for("user.registered.json", &user);
    let event_id = body["event_id"].as_str().unwrap();
    assert_eq!(app.post_event(&body).await.status(), 202);
    let again = app.post_event(&body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    app.wait_for_notification(event_id, "email", "sent", WAIT).await;
    assert!(app.stack.wait_idle(Duration::from_secs(1), WAIT).await, "the stack goes idle");
    let to_user = emulator_emails().await.into_iter().filter(|m| m["to"] == json!([email])).count();
    assert_eq!(to_user, 1);
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_failure_is_retried_into_the_sqs_dead_letter_queue_and_reads_failed() {
    let app = spawn_aws_app(None).await;
    app.stack.faults.set_failing(shared::domain::Channel::Sms, true);
    let user = unique("u");
    create_user(&app, &user, &format!("{}@example.com", user.to_lowercase()), "+14155550102").await;
    let body = event_for("payment.failed.json", &user);
    let event_id = body["event_id"].as_str().unwrap();
    assert_eq!(app.post_event(&body).await.status(), 202);
    let sms = app.wait_for_notification(event_id, "sms", "failed", Duration::from_secs(60)).await;
    assert_eq!(sms["reason"], "retries_exhausted");
    assert_eq!(sms["attempts"], 3, "MaxReceiveCount=3 in the provisioned redrive policy");
    app.wait_for_notification(event_id, "email", "sent", WAIT).await;
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_user_order_holds_across_a_burst_for_several_users() {
    let app = spawn_aws_app(None).await;
    let users: Vec<String> = (0..3).map(|_| unique("u")).collect();
    let mut sockets = Vec::new();
    for u in &users {
        create_user(&app, u, &format!("{}@example.com", u.to_lowercase()), "+14155550103").await;
        sockets.push(app.connect_ws(u).await);
    }
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); users.len()];
    for i in 0..6 {
        for (k, u) in users.iter().enumerate() {
            let mut body = event_for("order.completed.json", u);
            body["channels"] = json!(["websocket"]);
            body["payload"]["order_id"] = json!(format!("A-{i}"));
            sent[k].push(body["event_id"].as_str().unwrap().to_owned());
            assert_eq!(app.post_event(&body).await.status(), 202);
        }
    }
    for (k, socket) in sockets.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..sent[k].len() {
            got.push(next_frame(socket, WAIT).await["event_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(got, sent[k], "user {k} in order");
    }
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_socket_is_gone_to_the_management_api() {
    let app = spawn_aws_app(None).await;
    let user = unique("u");
    let socket = app.connect_ws(&user).await;
    let sdk = emulator_sdk_config().await;
    let client = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk).endpoint_url(app.base.clone()).build(),
    );
    // The connection id is what $connect stored for this user.
    let tables = app.stack.aws.as_ref().unwrap().tables.clone();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let items = dynamo
        .scan()
        .table_name(&tables.connections)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let id = items
        .iter()
        .find(|i| i.get("user_id").and_then(|v| v.as_s().ok()) == Some(&user))
        .and_then(|i| i.get("connection_id").and_then(|v| v.as_s().ok()).cloned())
        .expect("connection recorded");
    client.get_connection().connection_id(&id).send().await.expect("live connection");
    client.post_to_connection().connection_id(&id).data(aws_smithy_types::Blob::new(b"{\"type\":\"ping\"}".to_vec())).send().await.expect("posted");
    drop(socket);
    // Once the socket is closed, the Management API answers 410 GoneException.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.post_to_connection().connection_id(&id).data(aws_smithy_types::Blob::new(b"{}".to_vec())).send().await {
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => break,
            _ if tokio::time::Instant::now() > deadline => panic!("never gone"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let err = client.get_connection().connection_id("no-such-connection").send().await.unwrap_err();
    assert!(err.as_service_error().is_some_and(|s| s.is_gone_exception()));
    app.stack.stop().await;
}

/// The `List-Unsubscribe` link SES was asked to send with message `ses_id` (moto keeps the
/// headers of each SendEmail; see localstack/moto_server.py).
async fn ses_unsubscribe_link(ses_id: &str) -> Option<String> {
    let emails = emulator_emails().await;
    let sent = emails.iter().find(|m| m["message_id"] == ses_id)?;
    let headers = sent["headers"].as_array()?;
    let post = headers.iter().find(|h| h["Name"] == "List-Unsubscribe-Post")?;
    assert_eq!(post["Value"], "List-Unsubscribe=One-Click");
    let link = headers.iter().find(|h| h["Name"] == "List-Unsubscribe")?["Value"].as_str()?;
    Some(link.trim_start_matches('<').trim_end_matches('>').to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ses_sends_one_click_unsubscribe_and_its_post_opts_out_in_dynamodb() {
    let app = spawn_aws_app(None).await;
    let user = unique("u");
    create_user(&app, &user, &format!("{}@example.com", user.to_lowercase()), "+14155550105").await;
    let newsletter = event_for("marketing.newsletter.json", &user);
    let newsletter_id = newsletter["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&newsletter).await.status(), 202);
    let receipt = event_for("payment.failed.json", &user);
    let receipt_id = receipt["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&receipt).await.status(), 202);

    let sent = app.wait_for_notification(&newsletter_id, "email", "sent", WAIT).await;
    let link = ses_unsubscribe_link(sent["provider_message_id"].as_str().unwrap()).await.expect("SES got List-Unsubscribe and List-Unsubscribe-Post");
    assert!(link.starts_with(&format!("{}/v1/unsubscribe/", app.base)), "{link}");
    let transactional = app.wait_for_notification(&receipt_id, "email", "sent", WAIT).await;
    assert_eq!(ses_unsubscribe_link(transactional["provider_message_id"].as_str().unwrap()).await, None, "a payment notice has none");

    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);
    let preferences: Value = app.get(&format!("/v1/users/{user}/preferences")).await.json().await.unwrap();
    assert!(preferences["categories"].get("marketing").is_none(), "GET changed nothing");
    let r = app.http.post(&link).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let preferences: Value = app.get(&format!("/v1/users/{user}/preferences")).await.json().await.unwrap();
    assert_eq!(preferences["categories"]["marketing"], json!({"email": false}));

    let next = event_for("marketing.newsletter.json", &user);
    assert_eq!(app.post_event(&next).await.status(), 202);
    let skipped = app.wait_for_notification(next["event_id"].as_str().unwrap(), "email", "skipped", WAIT).await;
    assert_eq!(skipped["reason"], "opted_out_of_category");
    app.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_deletes_the_user_from_dynamodb_and_scrubs_what_stays() {
    let app = spawn_aws_app(None).await;
    let user = unique("u");
    let email = format!("{}@example.com", user.to_lowercase());
    create_user(&app, &user, &email, "+14155550106").await;
    let _socket = app.connect_ws(&user).await;
    let body = event_for("user.registered.json", &user);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);
    app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
    app.wait_for_notification(&event_id, "websocket", "sent", WAIT).await;
    let bounce = shared::ports::Suppression {
        tenant: shared::domain::Tenant::default_tenant(),
        channel: shared::domain::Channel::Email,
        address: email.clone(),
        reason: shared::ports::SuppressionReason::Complaint,
        created_at: jiff::Timestamp::now(),
        notification_id: None,
    };
    app.stack.inspect.suppressions.suppress(&bounce).await.unwrap();

    let r = app.http.delete(app.url(&format!("/v1/users/{user}"))).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let erased: Value = r.json().await.unwrap();
    assert_eq!(
        (erased["profile"].as_bool(), erased["connections"].as_u64(), erased["suppressions"].as_u64(), erased["notifications_scrubbed"].as_u64()),
        (Some(true), Some(1), Some(1), Some(2)),
        "{erased}"
    );

    assert_eq!(app.get(&format!("/v1/users/{user}")).await.status(), 404);
    assert!(!app.stack.inspect.suppressions.is_suppressed(&shared::domain::Tenant::default_tenant(), shared::domain::Channel::Email, &email).await.unwrap());
    let status = app.event_status(&event_id).await;
    assert_eq!(status["event"]["payload"], Value::Null);
    let notifications = status["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 2);
    assert!(notifications.iter().all(|n| n["status"] == "sent" && n.get("title").is_none()), "{notifications:?}");
    // The connections table holds none of the user's any more.
    let tables = app.stack.aws.as_ref().unwrap().tables.clone();
    let items = aws_sdk_dynamodb::Client::new(&emulator_sdk_config().await).scan().table_name(&tables.connections).send().await.unwrap().items.unwrap_or_default();
    assert!(!items.iter().any(|i| i.get("user_id").and_then(|v| v.as_s().ok()) == Some(&user)));
    let again = app.http.delete(app.url(&format!("/v1/users/{user}"))).header("authorization", app.key()).send().await.unwrap();
    assert_eq!(again.status(), 404);
    app.stack.stop().await;
}

/// Prints the AWS requests one delivered single-channel notification costs, by service and
/// operation (the figure asked for in the note), and checks the count is what the design says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_requests_per_delivered_single_channel_notification() {
    let counter = RequestCounter::default();
    let app = spawn_aws_app(Some(counter.clone())).await;
    let user = unique("u");
    create_user(&app, &user, &format!("{}@example.com", user.to_lowercase()), "+14155550104").await;
    // Let provisioning and the profile write settle, then count one event only.
    assert!(app.stack.wait_idle(Duration::from_millis(500), WAIT).await, "the stack goes idle");
    let idle_before = counter.snapshot();
    let mut body = event_for("user.registered.json", &user);
    body["channels"] = json!(["email"]);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    let email = format!("{}@example.com", user.to_lowercase());
    counter.reset();
    assert_eq!(app.post_event(&body).await.status(), 202);
    // Watch the emulator and the request counter, not the API, so this test's own status reads
    // are not counted: the email reaches SES, then both messages (route job, send job) are deleted.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !emulator_emails().await.iter().any(|m| m["to"] == json!([email])) {
        assert!(tokio::time::Instant::now() < deadline, "email never reached SES");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deletes = |c: &std::collections::BTreeMap<(String, String), usize>| c.iter().filter(|((_, o), _)| o == "DeleteMessageBatch").map(|(_, n)| *n).sum::<usize>();
    while deletes(&counter.snapshot()) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the messages were never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.stack.wait_idle(Duration::from_millis(300), WAIT).await, "the stack goes idle");
    let counts = counter.snapshot();
    app.wait_for_notification(&event_id, "email", "sent", WAIT).await;
    app.stack.stop().await;

    // ReceiveMessage is the event source mappings' long polling: it depends on idle time, not on
    // the notification, so it is shown apart.
    println!("AWS requests for one delivered single-channel (email) notification:");
    let mut total = 0;
    for ((service, op), n) in counts.iter().filter(|((_, op), _)| op != "ReceiveMessage") {
        println!("  {service:>10} {op:<20} {n}");
        total += *n;
    }
    println!("  total: {total} (plus long-polling ReceiveMessage calls: {})", counts.iter().filter(|((_, op), _)| op == "ReceiveMessage").map(|(_, n)| n).sum::<usize>());
    let _ = idle_before;
    let op = |name: &str| counts.iter().filter(|((_, o), _)| o == name).map(|(_, n)| *n).sum::<usize>();
    assert_eq!(op("SendEmail"), 1, "exactly one email sent");
    assert_eq!(op("PutItem"), 1, "the event (its record is its idempotency claim); the router writes no notification it queues at once: {counts:?}");
    assert_eq!(op("UpdateItem"), 2, "the sender's claim (creating the notification) and its outcome: {counts:?}");
    assert_eq!(op("SendMessageBatch"), 2, "route job and send job: {counts:?}");
    assert_eq!(op("DeleteMessageBatch"), 2, "route job and send job done, each batch deleted at once as Lambda does: {counts:?}");
    assert_eq!(op("DeleteMessage"), 0, "{counts:?}");
    assert_eq!(op("GetItem"), 2, "the recipient (profile and preferences in one read) and its suppression check: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_given_up_on_in_the_sqs_dead_letter_queue_is_recorded_in_dynamodb_and_replayed_once() {
    // One receive per pass through the send queue, a provider budget no pass exhausts: the job
    // goes through the SQS dead-letter queue and its three redrives, then is given up on.
    let app = spawn_aws_app_with(None, 1, |c| c.retry_max_attempts = 100).await;
    app.stack.faults.set_failing(shared::domain::Channel::Sms, true);
    let user = unique("u");
    let phone = "+14155550105";
    create_user(&app, &user, &format!("{}@example.com", user.to_lowercase()), phone).await;
    let mut body = event_for("payment.failed.json", &user);
    body["channels"] = json!(["sms"]);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);
    let sms = app.wait_for_notification(&event_id, "sms", "failed", Duration::from_secs(90)).await;
    assert_eq!(sms["reason"], "retries_exhausted");
    let notification_id = sms["notification_id"].as_str().unwrap().to_owned();

    // Listed from the DynamoDB table, through the API.
    let deadline = tokio::time::Instant::now() + WAIT;
    let letter = loop {
        let listed: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
        if let Some(found) = listed["items"].as_array().and_then(|i| i.iter().find(|d| d["notification_id"] == notification_id.as_str())) {
            break found.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never listed: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letter["reason"], "retries_exhausted");
    assert_eq!(letter["attempts"], 4);
    let queue = letter["queue"].as_str().unwrap().to_owned();

    app.stack.faults.set_failing(shared::domain::Channel::Sms, false);
    let replay = |body: Value| app.http.post(app.url("/v1/dead-letters/replay")).header("authorization", app.key()).json(&body).send();
    let answer: Value = replay(json!({"queue": queue})).await.unwrap().json().await.unwrap();
    assert_eq!(answer, json!({"results": [{"id": letter["id"], "outcome": "replayed"}], "more": false}));
    let sent = app.wait_for_notification(&event_id, "sms", "sent", WAIT).await;
    assert_eq!(sent["attempts"], 1);
    let again: Value = replay(json!({"ids": [letter["id"]]})).await.unwrap().json().await.unwrap();
    assert_eq!(again["results"][0]["outcome"], "not_found");
    assert!(app.stack.wait_idle(Duration::from_secs(1), WAIT).await, "the stack goes idle");
    let sms_id = sent["provider_message_id"].as_str().unwrap();
    let texts = emulator_sms().await;
    assert_eq!(texts.iter().filter(|m| m["message_id"] == sms_id).count(), 1, "SNS recorded it once");
    let sent_texts: Vec<&Value> = texts.iter().filter(|m| m["phone_number"] == phone).collect();
    assert_eq!(sent_texts.len(), 1, "one text to the number: {sent_texts:?}");
    let listed: Value = app.get("/v1/dead-letters").await.json().await.unwrap();
    assert!(listed["items"].as_array().unwrap().iter().all(|d| d["notification_id"] != notification_id.as_str()), "{listed}");
    app.stack.stop().await;
}

/// A tenant's key created in the key directory table (as `notify-keys create` does) opens the
/// API for that tenant only; the tenant's sender identity (`notify-keys sender`) is what SES
/// sends its mail from; and a revoked key is refused once the cache lapses.
#[tokio::test]
async fn a_key_from_the_key_directory_opens_its_tenant_only_and_its_mail_has_its_sender() {
    use shared::adapters::aws::{DynamoStore, TableNames};
    use shared::auth::key_admin;
    use shared::domain::Tenant;
    let app = spawn_aws_app(None).await;
    let tables = app.stack.aws.as_ref().expect("AWS backend").tables.clone();
    let sdk = emulator_sdk_config().await;
    let directory = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TableNames { api_keys: tables.api_keys.clone(), ..TableNames::default() });
    let acme = Tenant::parse("acme").unwrap();
    let created = key_admin::create_key(&directory, &acme, Some("e2e"), jiff::Timestamp::now()).await.unwrap();
    let address = format!("{}@acme.example", unique("no-reply").to_lowercase());
    let from = format!("Acme <{address}>");
    // SES sends only from a verified identity (the deployer verifies the tenant's domain).
    aws_sdk_sesv2::Client::new(&sdk).create_email_identity().email_identity(&address).send().await.unwrap();
    key_admin::set_sender_defaults(&directory, &acme, Some(from.clone()), None).await.unwrap();
    let listed = key_admin::list_keys(&directory, Some(&acme)).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), [created.stored.key_id.as_str()]);

    let acme_api = app.with_key(&created.key);
    let email = format!("{}@example.com", unique("t").to_lowercase());
    let profile = json!({"email": email, "locale": "en"});
    assert_eq!(acme_api.put("/v1/users/u-1", &profile).await.status(), 200);
    let mut body = event_for("order.completed.json", "u-1");
    body["channels"] = json!(["email"]);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(acme_api.post_event(&body).await.status(), 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status: Value = acme_api.get(&format!("/v1/events/{event_id}")).await.json().await.unwrap();
        if status["notifications"][0]["status"] == "sent" {
            assert_eq!(status["notifications"][0]["user_id"], "u-1");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not sent: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = emulator_emails().await.into_iter().find(|m| m.to_string().contains(&email)).expect("the email reached SES");
    assert_eq!(sent["source"], from.as_str(), "sent from the tenant's address: {sent}");
    // The default tenant's key sees none of it.
    assert_eq!(app.get(&format!("/v1/events/{event_id}")).await.status(), 404);
    assert_eq!(app.get("/v1/users/u-1").await.status(), 404);
    // Revoked: a fresh instance (no cache) refuses it.
    key_admin::revoke_key(&directory, &created.stored.key_id, jiff::Timestamp::now()).await.unwrap();
    let found = shared::ports::KeyDirectory::find_key(&directory, &created.stored.key_hash).await.unwrap().unwrap();
    assert!(!found.is_active());
    app.stack.stop().await;
}

/// The inbox over DynamoDB and the API Gateway Management API: a user token marks its own
/// notification read, and the user's other open socket hears of it.
#[tokio::test]
async fn the_inbox_marks_over_dynamodb_and_tells_the_other_tabs() {
    let app = spawn_aws_app(None).await;
    let user = unique("u");
    create_user(&app, &user, &format!("{}@example.com", user.to_lowercase()), "+380501234567").await;
    let mut first_tab = app.connect_ws(&user).await;
    let mut second_tab = app.connect_ws(&user).await;
    let body = event_for("order.completed.json", &user);
    assert_eq!(app.post_event(&body).await.status(), 202);
    let frame = next_frame(&mut first_tab, WAIT).await;
    next_frame(&mut second_tab, WAIT).await;
    let id = frame["notification_id"].as_str().unwrap().to_owned();
    let token = app.ws_token(&user).await;
    let me = |path: &str| app.http.get(app.url(path)).header("authorization", format!("Bearer {token}"));
    // The websocket notification reads `sent` once the sender recorded it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let feed: Value = loop {
        let feed: Value = me("/v1/me/notifications").send().await.unwrap().json().await.unwrap();
        if feed["items"].as_array().is_some_and(|i| !i.is_empty()) || tokio::time::Instant::now() > deadline {
            break feed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(feed["items"][0]["notification_id"], id.as_str(), "{feed}");
    assert_eq!(feed["counts"], json!({"unread": 1, "unseen": 1}));
    let marked: Value = app
        .http
        .post(app.url("/v1/me/notifications/mark"))
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"ids": [id], "mark": "read"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(marked["items"][0]["read_at"].is_string(), "{marked}");
    loop {
        use futures::StreamExt;
        let message = tokio::time::timeout(WAIT, second_tab.next()).await.expect("a frame").expect("open").expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "inbox.updated" {
                assert_eq!(v["counts"], json!({"unread": 0, "unseen": 0}));
                break;
            }
        }
    }
    app.stack.stop().await;
}
