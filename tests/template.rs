//! Offline checks of `template.yaml` that cfn-lint does not make: every queue has its DLQ,
//! every SQS event source reports batch item failures, visibility timeouts fit their consumers,
//! roles name their resources, the environment matches what the code reads, the alarms and the
//! dashboard cover what they should, the HTTP API routes what the OpenAPI document describes.
//!
//! Each check is a function returning the problems it found (naming the resource), so the last
//! test can run them on a template that is wrong on purpose.

use serde_yaml_ng::Value;
use shared::config::vars;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is plain YAML (long-form intrinsics)")
}

fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_mapping().and_then(|m| m.get(Value::String(key.into())))
}

fn path<'v>(v: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().try_fold(v, |v, k| get(v, k))
}

fn string(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

fn resources(t: &Value) -> Vec<(String, &Value)> {
    get(t, "Resources")
        .and_then(Value::as_mapping)
        .map(|m| m.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v)).collect())
        .unwrap_or_default()
}

fn of_type<'v>(t: &'v Value, kind: &str) -> Vec<(String, &'v Value)> {
    resources(t).into_iter().filter(|(_, r)| string(get(r, "Type")) == Some(kind)).collect()
}

/// `Fn::GetAtt: [X, Attr]` → X.
fn get_att(v: &Value) -> Option<(&str, &str)> {
    let list = get(v, "Fn::GetAtt")?.as_sequence()?;
    Some((list.first()?.as_str()?, list.get(1)?.as_str()?))
}

fn reference(v: &Value) -> Option<&str> {
    string(get(v, "Ref"))
}

/// The logical queue name: `Fn::Sub "${AWS::StackName}-send-email-fast.fifo"` → `send-email-fast.fifo`.
fn queue_name(queue: &Value) -> Option<String> {
    let sub = string(path(queue, &["Properties", "QueueName", "Fn::Sub"]))?;
    sub.strip_prefix("${AWS::StackName}-").map(str::to_owned)
}

fn is_dlq(name: &str) -> bool {
    name.ends_with("-dlq.fifo") || name.ends_with("-dlq")
}

fn number(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
}

// ---------------------------------------------------------------------------------------------
// Queues

fn queue_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let queues: BTreeMap<String, &Value> = of_type(t, "AWS::SQS::Queue").into_iter().collect();
    let mut targets = BTreeSet::new();
    for (id, q) in &queues {
        let Some(name) = queue_name(q) else {
            problems.push(format!("{id}: QueueName is not Fn::Sub \"${{AWS::StackName}}-<name>\""));
            continue;
        };
        if is_dlq(&name) {
            continue;
        }
        let fifo = path(q, &["Properties", "FifoQueue"]).and_then(Value::as_bool).unwrap_or(false);
        let Some(redrive) = path(q, &["Properties", "RedrivePolicy"]) else {
            problems.push(format!("{id}: no RedrivePolicy (every queue needs a dead-letter queue)"));
            continue;
        };
        if get(redrive, "maxReceiveCount").is_none() {
            problems.push(format!("{id}: RedrivePolicy without maxReceiveCount"));
        }
        let Some((target, "Arn")) = get(redrive, "deadLetterTargetArn").and_then(get_att) else {
            problems.push(format!("{id}: deadLetterTargetArn is not Fn::GetAtt [<queue>, Arn]"));
            continue;
        };
        targets.insert(target.to_owned());
        let Some(dlq) = queues.get(target) else {
            problems.push(format!("{id}: dead-letter queue {target} does not exist"));
            continue;
        };
        if !queue_name(dlq).is_some_and(|n| is_dlq(&n)) {
            problems.push(format!("{id}: its dead-letter queue {target} is not named as one (-dlq)"));
        }
        let dlq_fifo = path(dlq, &["Properties", "FifoQueue"]).and_then(Value::as_bool).unwrap_or(false);
        if fifo != dlq_fifo {
            problems.push(format!("{id}: FIFO-ness differs from its dead-letter queue {target}"));
        }
        let retention = |q: &Value| number(path(q, &["Properties", "MessageRetentionPeriod"])).unwrap_or(345_600);
        if retention(dlq) < retention(q) {
            problems.push(format!("{id}: its dead-letter queue {target} keeps messages for less time than it does"));
        }
    }
    for (id, q) in &queues {
        if queue_name(q).is_some_and(|n| is_dlq(&n)) && !targets.contains(id) {
            problems.push(format!("{id}: dead-letter queue of no queue"));
        }
    }
    problems
}

#[test]
fn every_queue_has_a_dead_letter_queue_by_redrive_policy() {
    let problems = queue_problems(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn queue_names_are_the_topology_the_code_uses() {
    let t = template();
    let in_template: BTreeSet<String> = of_type(&t, "AWS::SQS::Queue").iter().filter_map(|(_, q)| queue_name(q)).collect();
    let in_code: BTreeSet<String> =
        shared::topology::all_queues(&Default::default()).into_iter().map(|q| q.name).collect();
    assert_eq!(in_template, in_code);
}

// ---------------------------------------------------------------------------------------------
// Functions

fn globals<'v>(t: &'v Value, key: &str) -> Option<&'v Value> {
    path(t, &["Globals", "Function", key])
}

fn function_setting<'v>(t: &'v Value, f: &'v Value, key: &str) -> Option<&'v Value> {
    path(f, &["Properties", key]).or_else(|| globals(t, key))
}

fn sqs_sources(f: &Value) -> Vec<(String, &Value)> {
    path(f, &["Properties", "Events"])
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter(|(_, e)| string(get(e, "Type")) == Some("SQS"))
                .map(|(k, e)| (k.as_str().unwrap_or_default().to_owned(), e))
                .collect()
        })
        .unwrap_or_default()
}

fn event_source_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let queues: BTreeMap<String, &Value> = of_type(t, "AWS::SQS::Queue").into_iter().collect();
    for (id, f) in of_type(t, "AWS::Serverless::Function") {
        let timeout = number(function_setting(t, f, "Timeout")).unwrap_or(3);
        for (name, source) in sqs_sources(f) {
            let props = get(source, "Properties");
            let reports = props
                .and_then(|p| get(p, "FunctionResponseTypes"))
                .and_then(Value::as_sequence)
                .is_some_and(|s| s.iter().any(|v| v.as_str() == Some("ReportBatchItemFailures")));
            if !reports {
                problems.push(format!("{id}.{name}: FunctionResponseTypes lacks ReportBatchItemFailures"));
            }
            if number(props.and_then(|p| get(p, "BatchSize"))).unwrap_or(10) > 10 {
                problems.push(format!("{id}.{name}: BatchSize above 10"));
            }
            let Some((queue_id, "Arn")) = props.and_then(|p| get(p, "Queue")).and_then(get_att) else {
                problems.push(format!("{id}.{name}: Queue is not Fn::GetAtt [<queue>, Arn]"));
                continue;
            };
            let Some(queue) = queues.get(queue_id) else {
                problems.push(format!("{id}.{name}: queue {queue_id} does not exist"));
                continue;
            };
            let fifo = path(queue, &["Properties", "FifoQueue"]).and_then(Value::as_bool).unwrap_or(false);
            if fifo && props.and_then(|p| get(p, "MaximumBatchingWindowInSeconds")).is_some() {
                problems.push(format!("{id}.{name}: a batching window on FIFO queue {queue_id}"));
            }
            let visibility = number(path(queue, &["Properties", "VisibilityTimeout"])).unwrap_or(30);
            if visibility < 6 * timeout {
                problems.push(format!(
                    "{id}.{name}: {queue_id} VisibilityTimeout {visibility}s is under 6 x the function's timeout ({timeout}s)"
                ));
            }
        }
    }
    problems
}

/// Every dead-letter queue has a consumer: nothing an accepted event turns into may sit in a
/// queue that only "waits for an operator".
fn unconsumed_dead_letter_queues(t: &Value) -> Vec<String> {
    let consumed: BTreeSet<String> = of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .flat_map(|(_, f)| sqs_sources(f).into_iter().filter_map(|(_, s)| path(s, &["Properties", "Queue"]).and_then(get_att).map(|(q, _)| q.to_owned())))
        .collect();
    of_type(t, "AWS::SQS::Queue")
        .into_iter()
        .filter(|(_, q)| queue_name(q).is_some_and(|n| is_dlq(&n)))
        .filter(|(id, _)| !consumed.contains(id))
        .map(|(id, _)| format!("{id}: a dead-letter queue no function consumes"))
        .collect()
}

#[test]
fn every_dead_letter_queue_has_a_consumer() {
    let problems = unconsumed_dead_letter_queues(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_sqs_event_source_reports_batch_item_failures_and_fits_its_queue() {
    let problems = event_source_problems(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

fn packages() -> BTreeSet<String> {
    std::fs::read_dir(root().join("functions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn binary(f: &Value) -> Option<&str> {
    string(path(f, &["Metadata", "BuildProperties", "Binary"]))
}

#[test]
fn every_function_package_is_deployed_once_for_arm64_with_cargo_lambda() {
    let t = template();
    let mut problems = Vec::new();
    let mut deployed = BTreeMap::<String, Vec<String>>::new();
    for (id, f) in of_type(&t, "AWS::Serverless::Function") {
        if string(function_setting(&t, f, "Runtime")) != Some("provided.al2023") {
            problems.push(format!("{id}: Runtime is not provided.al2023"));
        }
        let arch = function_setting(&t, f, "Architectures").and_then(Value::as_sequence);
        if arch.is_none_or(|a| a.len() != 1 || a[0].as_str() != Some("arm64")) {
            problems.push(format!("{id}: Architectures is not [arm64]"));
        }
        if string(path(f, &["Metadata", "BuildMethod"])) != Some("rust-cargolambda") {
            problems.push(format!("{id}: Metadata.BuildMethod is not rust-cargolambda"));
        }
        match binary(f) {
            Some(b) => deployed.entry(b.to_owned()).or_default().push(id.clone()),
            None => problems.push(format!("{id}: no Metadata.BuildProperties.Binary")),
        }
    }
    for package in packages() {
        match deployed.remove(&package).as_deref() {
            Some([_]) => {}
            Some(many) => problems.push(format!("functions/{package} deployed by several functions: {many:?}")),
            None => problems.push(format!("functions/{package} is deployed by no function")),
        }
    }
    for (binary, ids) in deployed {
        problems.push(format!("{ids:?}: Binary {binary} is not a package under functions/"));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// Least privilege

/// The one statement allowed `Resource: "*"`: an SMS to a phone number has no ARN.
const STAR_RESOURCE_ALLOWED: &str = "PublishSmsToPhoneNumbers";

fn statements(f: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    if let Some(policies) = path(f, &["Properties", "Policies"]).and_then(Value::as_sequence) {
        for p in policies {
            if let Some(s) = get(p, "Statement").and_then(Value::as_sequence) {
                out.extend(s.iter());
            }
        }
    }
    if let Some(s) = path(f, &["Properties", "PolicyDocument", "Statement"]).and_then(Value::as_sequence) {
        out.extend(s.iter());
    }
    out
}

fn as_list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Sequence(s)) => s.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    }
}

fn privilege_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut holders: Vec<(String, &Value)> = of_type(t, "AWS::Serverless::Function");
    holders.extend(of_type(t, "AWS::IAM::Policy"));
    holders.extend(of_type(t, "AWS::IAM::Role"));
    for (id, r) in holders {
        if let Some(policies) = path(r, &["Properties", "Policies"]).and_then(Value::as_sequence) {
            for p in policies {
                if get(p, "Statement").is_none() && get(p, "PolicyDocument").is_none() {
                    problems.push(format!("{id}: a managed policy or policy template ({p:?}); write statements"));
                }
            }
        }
        if path(r, &["Properties", "ManagedPolicyArns"]).is_some() {
            problems.push(format!("{id}: ManagedPolicyArns"));
        }
        for s in statements(r) {
            let sid = string(get(s, "Sid")).unwrap_or("(no Sid)");
            for action in as_list(get(s, "Action")) {
                if action.as_str().is_some_and(|a| a == "*" || a.ends_with(":*")) {
                    problems.push(format!("{id}/{sid}: wildcard action {action:?}"));
                }
            }
            let star = as_list(get(s, "Resource")).iter().any(|r| r.as_str() == Some("*"));
            if star {
                let actions: Vec<&str> = as_list(get(s, "Action")).iter().filter_map(|a| a.as_str()).collect();
                if sid != STAR_RESOURCE_ALLOWED || actions != ["sns:Publish"] {
                    problems.push(format!("{id}/{sid}: Resource \"*\""));
                }
            }
        }
    }
    problems
}

#[test]
fn roles_name_their_resources() {
    let problems = privilege_problems(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every secret a function is told to read (an environment variable `*_SECRET_ARN` naming a
/// secret of the stack) is one its role may read: the functions read them at cold start, so a
/// missing grant is a function that never starts on AWS (moto does not enforce IAM).
fn secret_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, f) in of_type(t, "AWS::Serverless::Function") {
        for (name, value) in environment(t, Some(f)) {
            let Some(secret) = name.ends_with("_SECRET_ARN").then(|| reference(value)).flatten() else { continue };
            let granted = statements(f).iter().any(|s| {
                string(get(s, "Effect")) == Some("Allow")
                    && as_list(get(s, "Action")).iter().any(|a| a.as_str() == Some("secretsmanager:GetSecretValue"))
                    && as_list(get(s, "Resource")).iter().any(|r| reference(r) == Some(secret))
            });
            if !granted {
                problems.push(format!("{id}: reads {name} ({secret}) without secretsmanager:GetSecretValue on it"));
            }
        }
    }
    problems
}

#[test]
fn every_function_may_read_the_secrets_it_is_given() {
    let problems = secret_problems(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// Environment

fn environment<'v>(t: &'v Value, f: Option<&'v Value>) -> BTreeMap<String, &'v Value> {
    let mut env = BTreeMap::new();
    for source in [globals(t, "Environment"), f.and_then(|f| path(f, &["Properties", "Environment"]))].into_iter().flatten() {
        if let Some(m) = get(source, "Variables").and_then(Value::as_mapping) {
            for (k, v) in m {
                env.insert(k.as_str().unwrap_or_default().to_owned(), v);
            }
        }
    }
    env
}

/// The variables a function's start-up reads as required, from the `shared::lambda` helpers its
/// main calls. A new helper must be added here (the test fails on an unknown one).
fn required_by_helper(helper: &str) -> Option<&'static [&'static str]> {
    Some(match helper {
        "queue_directory" => &[vars::QUEUE_URL_PREFIX],
        // The key directory table (fixed hashes are optional).
        "api_keys" => &[vars::API_KEYS_TABLE],
        // The key from Secrets Manager: the secret's ARN (or the key itself, locally).
        "ws_token_secret" => &[vars::WS_TOKEN_SECRET_ARN],
        "ws_management_endpoint" => &[vars::WS_MANAGEMENT_ENDPOINT],
        // Where the router's unsubscribe links point.
        "public_base_url" => &[vars::PUBLIC_BASE_URL],
        // The shared send function: queues and the two tables every sender uses (its
        // `extra_tables` appear in main as `Table::X`).
        "serve_send_queues" => &[vars::QUEUE_URL_PREFIX, vars::NOTIFICATIONS_TABLE, vars::EVENTS_TABLE],
        // Optional variables, defaults or values checked at start: nothing required.
        "catalog" | "retry_policy" | "settings" | "ports_without_queues" | "required" | "table_names" | "millis" | "push_application_arns"
        | "connection_poster" | "handle_ws_connect" | "handle_ws_disconnect" | "unused_ws_tokens" | "metrics_namespace" | "ws_tokens" | "secret" | "secret_from_env"
        | "provider_secrets" | "compose_providers" | "unsubscribe_tokens" | "unsubscribe_links" => &[],
        // A channel's providers: optional (its AWS provider alone by default), checked at start.
        "providers" => &[],
        _ => return None,
    })
}

fn table_var(table: &str) -> Option<&'static str> {
    Some(match table {
        "Idempotency" => vars::IDEMPOTENCY_TABLE,
        "Events" => vars::EVENTS_TABLE,
        "Notifications" => vars::NOTIFICATIONS_TABLE,
        "Users" => vars::USERS_TABLE,
        "Connections" => vars::CONNECTIONS_TABLE,
        "Suppressions" => vars::SUPPRESSIONS_TABLE,
        "RateLimits" => vars::RATE_LIMITS_TABLE,
        "ApiKeys" => vars::API_KEYS_TABLE,
        "DeadLetters" => vars::DEAD_LETTERS_TABLE,
        _ => return None,
    })
}

fn words_after<'s>(source: &'s str, prefix: &str) -> BTreeSet<&'s str> {
    source
        .match_indices(prefix)
        .map(|(at, _)| {
            let rest = &source[at + prefix.len()..];
            &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
        })
        .collect()
}

fn environment_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let known: BTreeMap<&str, &str> = vars::ALL.iter().copied().collect();
    let known_values: BTreeSet<&str> = known.values().copied().collect();
    let tables: BTreeSet<String> = of_type(t, "AWS::DynamoDB::Table").into_iter().map(|(id, _)| id).collect();
    let check_names = |owner: &str, env: &BTreeMap<String, &Value>| {
        let mut problems = Vec::new();
        for (name, value) in env {
            if !(known_values.contains(name.as_str()) || name == "RUST_LOG" || name.starts_with("AWS_LAMBDA_")) {
                problems.push(format!("{owner}: sets {name}, which no code reads"));
            }
            if name.ends_with("_TABLE") && !reference(value).is_some_and(|r| tables.contains(r)) {
                problems.push(format!("{owner}: {name} does not Ref a table of this template"));
            }
        }
        problems
    };
    problems.extend(check_names("Globals", &environment(t, None)));
    for (id, f) in of_type(t, "AWS::Serverless::Function") {
        let env = environment(t, Some(f));
        problems.extend(check_names(&id, &env));
        let Some(package) = binary(f) else { continue };
        let Ok(main) = std::fs::read_to_string(root().join("functions").join(package).join("src/main.rs")) else {
            continue; // reported by the packaging check
        };
        let mut required: BTreeSet<&str> = BTreeSet::new();
        for helper in words_after(&main, "lambda::") {
            if !helper.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                continue; // a type (lambda::Table, lambda::AwsClients) or the `use` line
            }
            match required_by_helper(helper) {
                Some(names) => required.extend(names),
                None => problems.push(format!("functions/{package}: calls lambda::{helper}, unknown to this test")),
            }
        }
        for table in words_after(&main, "Table::") {
            match table_var(table) {
                Some(var) => {
                    required.insert(var);
                }
                None => problems.push(format!("functions/{package}: Table::{table}, unknown to this test")),
            }
        }
        // `lambda::required(&env, vars::X)` and `lambda::secret_from_env(&env, vars::X)`: X is required.
        for (at, _) in main.match_indices("lambda::required(").chain(main.match_indices("lambda::secret_from_env(")) {
            for name in words_after(&main[at..main[at..].find(')').map_or(main.len(), |e| at + e)], "vars::") {
                match known.get(name) {
                    Some(var) => {
                        required.insert(var);
                    }
                    None => problems.push(format!("functions/{package}: vars::{name} is not in vars::ALL")),
                }
            }
        }
        for var in required {
            if !env.contains_key(var) {
                problems.push(format!("{id}: functions/{package} needs {var}, which the template does not set"));
            }
        }
    }
    problems
}

#[test]
fn environment_variables_are_the_ones_the_code_reads() {
    let problems = environment_problems(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// Tables and outputs

/// Recipient profiles are kept until replaced: the users table has no expiry.
/// Tables whose items are kept until deleted: profiles, and API keys (revoked ones too, for the
/// record).
const TABLES_WITHOUT_TTL: &[&str] = &["UsersTable", "ApiKeysTable"];

#[test]
fn tables_are_on_demand_recoverable_protected_and_expiring() {
    let t = template();
    let mut problems = Vec::new();
    for (id, table) in of_type(&t, "AWS::DynamoDB::Table") {
        let props = get(table, "Properties");
        let p = |k: &[&str]| props.and_then(|p| path(p, k));
        if string(p(&["BillingMode"])) != Some("PAY_PER_REQUEST") {
            problems.push(format!("{id}: not PAY_PER_REQUEST"));
        }
        if p(&["PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"]).and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{id}: point-in-time recovery off"));
        }
        if p(&["DeletionProtectionEnabled"]).and_then(reference) != Some("DeletionProtection") {
            problems.push(format!("{id}: DeletionProtectionEnabled is not Ref DeletionProtection"));
        }
        let ttl = p(&["TimeToLiveSpecification"]);
        let expiring = ttl.is_some_and(|ttl| {
            string(get(ttl, "AttributeName")) == Some("expires_at") && get(ttl, "Enabled").and_then(Value::as_bool) == Some(true)
        });
        if !expiring && !TABLES_WITHOUT_TTL.contains(&id.as_str()) {
            problems.push(format!("{id}: no TTL on expires_at"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn outputs_give_the_urls_and_every_dead_letter_queue() {
    let t = template();
    let outputs = get(&t, "Outputs").and_then(Value::as_mapping).cloned().unwrap_or_default();
    let has = |k: &str| outputs.contains_key(Value::String(k.into()));
    let mut missing: Vec<String> =
        ["HttpApiUrl", "WebSocketUrl", "DashboardUrl"].iter().filter(|k| !has(k)).map(|k| k.to_string()).collect();
    for (id, q) in of_type(&t, "AWS::SQS::Queue") {
        if queue_name(q).is_some_and(|n| is_dlq(&n)) && !has(&format!("{id}Url")) {
            missing.push(format!("{id}Url"));
        }
    }
    assert!(missing.is_empty(), "missing outputs: {missing:?}");
}

// ---------------------------------------------------------------------------------------------
// Alarms and dashboard

fn alarm_dimension<'v>(alarm: &'v Value, name: &str) -> Vec<&'v Value> {
    let mut found = Vec::new();
    let mut dims: Vec<&Value> = as_list(path(alarm, &["Properties", "Dimensions"]));
    for m in as_list(path(alarm, &["Properties", "Metrics"])) {
        dims.extend(as_list(path(m, &["MetricStat", "Metric", "Dimensions"])));
    }
    for d in dims {
        if string(get(d, "Name")) == Some(name) {
            found.extend(get(d, "Value"));
        }
    }
    found
}

fn alarm_metrics(alarm: &Value) -> BTreeSet<&str> {
    let mut names: BTreeSet<&str> = string(path(alarm, &["Properties", "MetricName"])).into_iter().collect();
    for m in as_list(path(alarm, &["Properties", "Metrics"])) {
        names.extend(string(path(m, &["MetricStat", "Metric", "MetricName"])));
    }
    names
}

fn mentions_parameter(v: &Value, parameter: &str) -> bool {
    match v {
        Value::Mapping(m) => m.iter().any(|(k, v)| (k.as_str() == Some("Ref") && v.as_str() == Some(parameter)) || mentions_parameter(v, parameter)),
        Value::Sequence(s) => s.iter().any(|v| mentions_parameter(v, parameter)),
        _ => false,
    }
}

fn alarm_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let alarms = of_type(t, "AWS::CloudWatch::Alarm");
    let watching = |metric: &str, dimension: &str, target: &dyn Fn(&Value) -> bool| {
        alarms
            .iter()
            .filter(|(_, a)| alarm_metrics(a).contains(metric) && alarm_dimension(a, dimension).into_iter().any(target))
            .map(|(id, a)| (id.clone(), *a))
            .collect::<Vec<_>>()
    };
    for (id, q) in of_type(t, "AWS::SQS::Queue") {
        let is_this_queue = |v: &Value| get_att(v) == Some((id.as_str(), "QueueName"));
        if queue_name(q).is_some_and(|n| is_dlq(&n)) {
            let found = watching("ApproximateNumberOfMessagesVisible", "QueueName", &is_this_queue);
            let good = found.iter().any(|(_, a)| {
                number(path(a, &["Properties", "Threshold"])) == Some(0)
                    && string(path(a, &["Properties", "ComparisonOperator"])) == Some("GreaterThanThreshold")
            });
            if !good {
                problems.push(format!("{id}: no alarm on any message in this dead-letter queue"));
            }
        } else if watching("ApproximateAgeOfOldestMessage", "QueueName", &is_this_queue).is_empty() {
            problems.push(format!("{id}: no alarm on the age of its oldest message"));
        }
    }
    for (id, _) in of_type(t, "AWS::Serverless::Function") {
        let is_this_function = |v: &Value| reference(v) == Some(id.as_str());
        let found = watching("Errors", "FunctionName", &is_this_function);
        if !found.iter().any(|(_, a)| alarm_metrics(a).contains("Invocations")) {
            problems.push(format!("{id}: no error-rate alarm (Errors over Invocations)"));
        }
    }
    for (id, a) in &alarms {
        if !path(a, &["Properties", "AlarmActions"]).is_some_and(|v| mentions_parameter(v, "AlarmTopicArn")) {
            problems.push(format!("{id}: AlarmActions do not go to the AlarmTopicArn parameter"));
        }
    }
    problems
}

#[test]
fn alarms_cover_every_dead_letter_queue_queue_age_and_function_error_rate() {
    let problems = alarm_problems(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_dashboard_is_infra_dashboard_json_and_uses_the_metrics_the_code_emits() {
    let t = template();
    let dashboards = of_type(&t, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = string(path(dashboards[0].1, &["Properties", "DashboardBody", "Fn::Sub"])).expect("DashboardBody: Fn::Sub: |");
    let file = std::fs::read_to_string(root().join("infra/dashboard.json")).unwrap();
    let trim = |s: &str| s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_owned();
    assert_eq!(trim(body), trim(&file), "template.yaml's dashboard differs from infra/dashboard.json: run python3 infra/sync-dashboard.py");

    // Fn::Sub placeholders become plain strings, then it must be JSON.
    let mut plain = String::new();
    let mut rest = file.as_str();
    while let Some(at) = rest.find("${") {
        plain.push_str(&rest[..at]);
        plain.push('X');
        rest = &rest[at + rest[at..].find('}').expect("closed placeholder") + 1..];
    }
    plain.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&plain).expect("infra/dashboard.json is JSON");
    let emitted: BTreeSet<&str> = shared::metrics::ALL.iter().map(|m| m.name).collect();
    let mut used = BTreeSet::new();
    for widget in json["widgets"].as_array().expect("widgets") {
        for metric in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = metric.as_array().unwrap();
            if row.first().and_then(|v| v.as_str()) == Some("Notify/X") {
                used.insert(row[1].as_str().unwrap().to_owned()); // our namespace
            }
            for cell in row {
                if let Some(expression) = cell["expression"].as_str() {
                    used.extend(words_after(expression, "MetricName=\"").into_iter().map(str::to_owned));
                }
            }
        }
    }
    let unknown: Vec<&String> = used.iter().filter(|m| !emitted.contains(m.as_str())).collect();
    assert!(unknown.is_empty(), "the dashboard shows metrics no code emits: {unknown:?}");
    let unshown: Vec<&&str> = emitted.iter().filter(|m| !used.contains(**m)).collect();
    assert!(unshown.is_empty(), "metrics the dashboard does not show: {unshown:?}");
}

// ---------------------------------------------------------------------------------------------
// The HTTP API

/// Every `HttpApi` route of the template, as `METHOD /path`.
fn http_api_routes(t: &Value) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for (_, f) in of_type(t, "AWS::Serverless::Function") {
        let Some(events) = path(f, &["Properties", "Events"]).and_then(Value::as_mapping) else { continue };
        for (_, e) in events.iter().filter(|(_, e)| string(get(e, "Type")) == Some("HttpApi")) {
            let method = string(path(e, &["Properties", "Method"])).unwrap_or_default().to_uppercase();
            routes.insert(format!("{method} {}", string(path(e, &["Properties", "Path"])).unwrap_or_default()));
        }
    }
    routes
}

/// The deployed API serves exactly what its OpenAPI document describes (shared/src/http/openapi.rs):
/// every documented operation, `GET /openapi.json` among them, is routed by API Gateway, and every
/// route API Gateway has is documented.
#[test]
fn the_http_api_routes_are_the_openapi_documents_operations() {
    let doc = serde_json::to_value(shared::http::openapi::document()).unwrap();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| format!("{} {p}", m.to_uppercase())))
        .collect();
    // CORS preflights of the browser routes (`/v1/me/...`) are routed but are not operations.
    let (preflights, routed): (BTreeSet<String>, BTreeSet<String>) = http_api_routes(&template()).into_iter().partition(|r| r.starts_with("OPTIONS "));
    for preflight in &preflights {
        let path = preflight.trim_start_matches("OPTIONS ");
        assert!(path.starts_with("/v1/me/") && documented.iter().any(|op| op.ends_with(&format!(" {path}"))), "a preflight of no browser route: {preflight}");
    }
    assert!(routed.contains("GET /openapi.json"), "{routed:?}");
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(unrouted.is_empty(), "documented but not routed by the HttpApi: {unrouted:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routed by the HttpApi but not in the OpenAPI document: {undocumented:?}");
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_checks_catch_a_broken_template() {
    let bad: Value = serde_yaml_ng::from_str(
        r#"
Resources:
  LonelyQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: {Fn::Sub: "${AWS::StackName}-lonely.fifo"}
      FifoQueue: true
      VisibilityTimeout: 30
  ForgottenDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: {Fn::Sub: "${AWS::StackName}-lonely-dlq.fifo"}
      FifoQueue: true
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 30
      Environment:
        Variables:
          NOTIFY_SOMETHING_NEW: x
          NOTIFY_WS_TOKEN_SECRET_ARN: {Ref: SomeSecret}
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: {Fn::GetAtt: [LonelyQueue, Arn]}
            BatchSize: 10
      Policies:
        - AmazonSQSFullAccess
        - Statement:
            - Sid: Everything
              Effect: Allow
              Action: ["dynamodb:*"]
              Resource: "*"
"#,
    )
    .unwrap();
    let all = [
        queue_problems(&bad),
        event_source_problems(&bad),
        privilege_problems(&bad),
        secret_problems(&bad),
        environment_problems(&bad),
        alarm_problems(&bad),
        unconsumed_dead_letter_queues(&bad),
    ]
        .concat()
        .join("\n");
    for expected in [
        "LonelyQueue: no RedrivePolicy",
        "Worker.Jobs: FunctionResponseTypes lacks ReportBatchItemFailures",
        "Worker.Jobs: LonelyQueue VisibilityTimeout 30s is under 6 x",
        "Worker: a managed policy",
        "Worker/Everything: wildcard action",
        "Worker/Everything: Resource \"*\"",
        "Worker: reads NOTIFY_WS_TOKEN_SECRET_ARN (SomeSecret) without secretsmanager:GetSecretValue",
        "Worker: sets NOTIFY_SOMETHING_NEW, which no code reads",
        "LonelyQueue: no alarm on the age",
        "Worker: no error-rate alarm",
        "ForgottenDeadLetterQueue: a dead-letter queue no function consumes",
    ] {
        assert!(all.contains(expected), "expected {expected:?} among:\n{all}");
    }
}

