//! The end-user inbox through the local stack: a browser's user token reads and marks its own
//! feed over real HTTP, the change reaches a second open socket, and nothing of anyone else's is
//! within its reach.

use futures::StreamExt;
use notify_tests::{TestApp, event_for, next_frame, spawn_app, unique};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

async fn me(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).header("authorization", format!("Bearer {token}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// The next frame of `kind`, or a panic after `timeout`.
async fn next_of(socket: &mut notify_tests::Socket, kind: &str, timeout: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(timeout, socket.next()).await.unwrap_or_else(|_| panic!("no {kind} frame")).expect("open").expect("frame");
        if let Message::Text(text) = message {
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// Posts `n` events for `user` and waits until each is in the inbox (delivered on a socket).
async fn delivered(app: &TestApp, user: &str, socket: &mut notify_tests::Socket, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let body = event_for("order.completed.json", user);
        assert_eq!(app.post_event(&body).await.status(), 202);
        let frame = next_frame(socket, WAIT).await;
        ids.push(frame["notification_id"].as_str().unwrap().to_owned());
        app.wait_for_notification(body["event_id"].as_str().unwrap(), "websocket", "sent", WAIT).await;
    }
    ids
}

#[tokio::test]
async fn a_user_token_reads_and_marks_its_own_feed_and_other_tabs_hear_of_it() {
    let app = spawn_app().await;
    let user = unique("u");
    app.create_user(&user).await;
    let mut first_tab = app.connect_ws(&user).await;
    let mut second_tab = app.connect_ws(&user).await;
    let ids = delivered(&app, &user, &mut first_tab, 3).await;
    for _ in 0..3 {
        next_frame(&mut second_tab, WAIT).await;
    }
    let token = app.ws_token(&user).await;

    // The feed: newest first, paginated, with counts; content, not internals.
    let r = me(&app, &token, reqwest::Method::GET, "/v1/me/notifications?limit=2", None).await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.iter().map(|i| i["notification_id"].as_str().unwrap()).collect::<Vec<_>>(), [ids[2].as_str(), ids[1].as_str()]);
    assert!(items[0]["title"].as_str().unwrap().contains("confirmed"), "{page}");
    assert!(items[0]["body"].as_str().unwrap().contains("Total"), "the in-app body: {page}");
    assert!(items[0].get("last_error").is_none() && items[0].get("provider").is_none());
    assert_eq!(page["counts"], json!({"unread": 3, "unseen": 3}));
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = me(&app, &token, reqwest::Method::GET, &format!("/v1/me/notifications?limit=2&cursor={cursor}"), None).await.json().await.unwrap();
    assert_eq!(rest["items"][0]["notification_id"], ids[0].as_str());
    assert!(rest["next_cursor"].is_null());

    // Read one: seen too; the second tab hears of it with the new counts.
    let marked: Value = me(&app, &token, reqwest::Method::POST, "/v1/me/notifications/mark", Some(json!({"ids": [ids[0]], "mark": "read"}))).await.json().await.unwrap();
    assert!(marked["items"][0]["read_at"].is_string() && marked["items"][0]["seen_at"].is_string(), "{marked}");
    assert_eq!(marked["counts"], json!({"unread": 2, "unseen": 2}));
    let pushed = next_of(&mut second_tab, "inbox.updated", WAIT).await;
    assert_eq!((pushed["mark"].as_str(), pushed["notification_ids"].clone()), (Some("read"), json!([ids[0]])));
    assert_eq!(pushed["counts"], json!({"unread": 2, "unseen": 2}));
    // ...and undone.
    let undone: Value = me(&app, &token, reqwest::Method::POST, "/v1/me/notifications/mark", Some(json!({"ids": [ids[0]], "mark": "unread"}))).await.json().await.unwrap();
    assert!(undone["items"][0]["read_at"].is_null());
    assert_eq!(undone["counts"], json!({"unread": 3, "unseen": 2}));

    // Archive one: out of the inbox view, in the archived one; then mark all read.
    me(&app, &token, reqwest::Method::POST, "/v1/me/notifications/mark", Some(json!({"ids": [ids[1]], "mark": "archived"}))).await;
    let inbox: Value = me(&app, &token, reqwest::Method::GET, "/v1/me/notifications", None).await.json().await.unwrap();
    assert_eq!(inbox["items"].as_array().unwrap().len(), 2);
    let archived: Value = me(&app, &token, reqwest::Method::GET, "/v1/me/notifications?view=archived", None).await.json().await.unwrap();
    assert_eq!(archived["items"][0]["notification_id"], ids[1].as_str());
    let all: Value = me(&app, &token, reqwest::Method::POST, "/v1/me/notifications/read-all", None).await.json().await.unwrap();
    assert_eq!(all["marked"], 2);
    assert_eq!(all["counts"]["unread"], 0);
    let counts: Value = me(&app, &token, reqwest::Method::GET, "/v1/me/notifications/counts", None).await.json().await.unwrap();
    assert_eq!(counts, json!({"unread": 0, "unseen": 0}));

    // Preferences for the user themself.
    let prefs = json!({"channels": {"sms": false}});
    let r = me(&app, &token, reqwest::Method::PUT, "/v1/me/preferences", Some(prefs.clone())).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let through_api: Value = app.get(&format!("/v1/users/{user}/preferences")).await.json().await.unwrap();
    assert_eq!(through_api["channels"]["sms"], false);
    app.stack.stop().await;
}

#[tokio::test]
async fn a_user_token_never_reaches_another_users_data_and_keys_do_not_open_the_inbox() {
    let app = spawn_app().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    app.create_user(&alice).await;
    app.create_user(&bob).await;
    let mut bobs_socket = app.connect_ws(&bob).await;
    let bobs = delivered(&app, &bob, &mut bobs_socket, 1).await;
    let alice_token = app.ws_token(&alice).await;

    let marked: Value = me(&app, &alice_token, reqwest::Method::POST, "/v1/me/notifications/mark", Some(json!({"ids": [bobs[0]], "mark": "read"}))).await.json().await.unwrap();
    assert_eq!(marked["not_found"], json!([bobs[0]]), "bob's notification is not alice's to mark");
    let feed: Value = me(&app, &alice_token, reqwest::Method::GET, "/v1/me/notifications", None).await.json().await.unwrap();
    assert!(feed["items"].as_array().unwrap().is_empty());
    let bobs_status: Value = app.get(&format!("/v1/users/{bob}/notifications")).await.json().await.unwrap();
    assert!(bobs_status["items"].as_array().unwrap().iter().all(|n| n["read_at"].is_null()), "unchanged");

    // The API key is not a user token, and a user token is not an API key.
    let key = app.stack.api_key.clone();
    assert_eq!(me(&app, &key, reqwest::Method::GET, "/v1/me/notifications", None).await.status(), 401);
    assert_eq!(me(&app, "forged", reqwest::Method::GET, "/v1/me/notifications", None).await.status(), 401);
    assert_eq!(me(&app, &alice_token, reqwest::Method::GET, &format!("/v1/users/{bob}"), None).await.status(), 401);
    app.stack.stop().await;
}

#[tokio::test]
async fn only_the_allowed_origins_may_read_the_inbox_from_a_browser() {
    let config = local_stack::Config { cors_origins: vec!["https://app.example".into()], ..local_stack::Config::for_tests() };
    let app = notify_tests::spawn_app_with(config).await;
    let token = app.ws_token("u-1").await;
    // The preflight is answered without credentials, for the allowed origin only.
    let preflight = |origin: &'static str| app.http.request(reqwest::Method::OPTIONS, app.url("/v1/me/notifications")).header("origin", origin).send();
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    assert!(allowed.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "another origin's page cannot read it");
    let read = |origin: &'static str| {
        app.http.get(app.url("/v1/me/notifications")).header("authorization", format!("Bearer {token}")).header("origin", origin).send()
    };
    assert_eq!(read("https://app.example").await.unwrap().headers()["access-control-allow-origin"], "https://app.example");
    assert!(read("https://evil.example").await.unwrap().headers().get("access-control-allow-origin").is_none());
    app.stack.stop().await;
}

#[tokio::test]
async fn a_user_holds_at_most_ten_live_sockets_and_the_eleventh_is_refused_with_429() {
    let app = spawn_app().await;
    let user = unique("u");
    let mut open = Vec::new();
    for _ in 0..shared::handlers::ws::MAX_CONNECTIONS_PER_USER {
        open.push(app.connect_ws(&user).await);
    }
    let token = app.ws_token(&user).await;
    let url = format!("ws://{}/v1/ws?token={token}", app.stack.addr);
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("the eleventh socket was not refused: {:?}", other.map(|_| ())),
    }
    // Closing one makes room.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio_tungstenite::connect_async(url.clone()).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no room after a close");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.stack.stop().await;
}
