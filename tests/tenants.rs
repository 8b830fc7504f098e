//! Tenants through the local stack: two API keys of two tenants, the same user ids and event
//! ids, and neither ever sees, changes or receives the other's data.

use local_stack::Config;
use notify_tests::{next_frame, sample, spawn_app_with};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn two_tenants() -> Config {
    Config { api_keys: vec!["acme=key-acme".into(), "globex=key-globex".into(), "key-default".into()], ..Config::for_tests() }
}

fn profile(email: &str) -> Value {
    json!({"email": email, "locale": "en", "timezone": "Europe/Kyiv"})
}

fn order(event_id: &str, user: &str, total: &str) -> Value {
    let mut body = sample("order.completed.json");
    body["event_id"] = json!(event_id);
    body["user_id"] = json!(user);
    body["payload"]["total"] = json!(total);
    body
}

#[tokio::test]
async fn two_tenants_with_the_same_user_and_event_ids_never_see_each_others_data() {
    let app = spawn_app_with(two_tenants()).await;
    let (acme, globex) = (app.with_key("key-acme"), app.with_key("key-globex"));
    assert_eq!(acme.put("/v1/users/u-1", &profile("u1@acme.example")).await.status(), 200);
    assert_eq!(globex.put("/v1/users/u-1", &profile("u1@globex.example")).await.status(), 200);
    let mut acme_socket = acme.connect_ws("u-1").await;

    // The same event id from both: two events, neither a conflict nor a replay of the other.
    let r = acme.post_event(&order("evt-shared", "u-1", "10.00")).await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(accepted["event_id"], "evt-shared", "ids are answered as the caller sent them");
    let r = globex.post_event(&order("evt-shared", "u-1", "20.00")).await;
    assert_eq!(r.status(), 202, "another tenant's event id is not a conflict");
    assert!(r.headers().get("idempotent-replayed").is_none(), "nor a replay");
    assert_eq!(globex.post_event(&order("evt-globex-only", "u-1", "30.00")).await.status(), 202);

    // Each tenant's user got its own e-mail, and only acme's event reached acme's socket.
    for (caller, address, events) in [(&acme, "u1@acme.example", 1), (&globex, "u1@globex.example", 2)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        let items = loop {
            let v: Value = caller.get("/v1/dev/outbox?channel=email").await.json().await.unwrap();
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= events || tokio::time::Instant::now() > deadline {
                break items;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert_eq!(items.len(), events, "{address}: {items:?}");
        for item in &items {
            assert_eq!(item["to"]["to"], address);
            assert_eq!(item["user_id"], "u-1");
        }
    }
    let frame = next_frame(&mut acme_socket, WAIT).await;
    assert_eq!(frame["event_id"], "evt-shared");
    assert!(frame["body"].as_str().unwrap_or_default().contains("10.00"), "acme's own order: {frame}");

    // Reads see only the caller's tenant; another's ids are absent.
    let status: Value = acme.get("/v1/events/evt-shared").await.json().await.unwrap();
    assert_eq!(status["event"]["payload"]["total"], "10.00", "{status}");
    assert!(status["notifications"].as_array().unwrap().iter().all(|n| n["user_id"] == "u-1" && n["event_id"] == "evt-shared"));
    assert_eq!(acme.get("/v1/events/evt-globex-only").await.status(), 404);
    assert_eq!(acme.delete("/v1/events/evt-globex-only").await.status(), 404, "nor can it cancel it");
    let user: Value = acme.get("/v1/users/u-1").await.json().await.unwrap();
    assert_eq!(user["email"], "u1@acme.example");
    let feed: Value = globex.get("/v1/users/u-1/notifications").await.json().await.unwrap();
    assert!(feed["items"].as_array().unwrap().iter().all(|n| n["event_id"] != "evt-shared" || n["user_id"] == "u-1"));
    let globex_events: Vec<&str> = feed["items"].as_array().unwrap().iter().filter_map(|n| n["event_id"].as_str()).collect();
    assert!(globex_events.contains(&"evt-globex-only"));

    // The default tenant (a bare key) has neither user.
    let default = app.with_key("key-default");
    assert_eq!(default.get("/v1/users/u-1").await.status(), 404);
    assert_eq!(default.get("/v1/events/evt-shared").await.status(), 404);
    app.stack.stop().await;
}

#[tokio::test]
async fn a_key_of_no_tenant_is_refused() {
    let app = spawn_app_with(two_tenants()).await;
    assert_eq!(app.with_key("acme").get("/v1/users/u-1").await.status(), 401);
    assert_eq!(app.with_key("acme=key-acme").get("/v1/users/u-1").await.status(), 401);
    app.stack.stop().await;
}
