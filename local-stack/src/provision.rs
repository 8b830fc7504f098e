//! Creates the queues and tables that `template.yaml` declares in an AWS endpoint (an emulator
//! in tests, LocalStack, or an account), reading the template itself so there is no second list
//! to drift. Other resource types (functions, APIs, alarms …) are skipped: they are `sam deploy`'s.
//!
//! Two steps: [`plan`] reads the template and resolves its intrinsics without any AWS call (so
//! it is unit-tested against `shared::topology`); [`provision`] then creates what the plan says.
//!
//! Supported intrinsics, in their long form: `Fn::Sub` (string form) over `${AWS::StackName}`,
//! `${AWS::Region}`, `${AWS::AccountId}` and template parameters; `Ref` to a parameter (its
//! `Default` or an override from [`ProvisionOptions::parameters`]) or to those pseudo parameters;
//! `Fn::GetAtt [Queue, Arn]` as a redrive target. Anything else fails with an error that names
//! the resource and the construct. Queue properties are mapped one to one onto queue attributes;
//! an unknown queue or table property is an error rather than silently dropped, except the
//! operational table settings that change no behaviour a test can see (deletion protection, which
//! provisioning never enables; point-in-time recovery; encryption; tags; streams; table class).
//! Tables are always on-demand (`PAY_PER_REQUEST`).
//!
//! Provisioning twice under one stack name is fine: an existing queue gets the template's
//! attributes, an existing table is kept as it is (its TTL setting is brought in line).

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Map, Value};
use shared::adapters::aws::{QueueDirectory, TableNames};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What [`provision`] created.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub stack_name: String,
    /// Logical queue name (`send-email-fast.fifo`, `deferred-dlq`) → URL.
    pub queues: QueueDirectory,
    pub tables: TableNames,
}

#[derive(Clone, Debug, Default)]
pub struct ProvisionOptions {
    /// Prefixes every resource name (`${AWS::StackName}`).
    pub stack_name: String,
    /// Overrides of the template's parameters (`MaxReceiveCount` …); each must be declared there.
    pub parameters: HashMap<String, String>,
}

/// `<repository>/template.yaml`.
pub fn repository_template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("template.yaml")
}

/// Creates every queue (with its redrive policy) and every table of the template.
pub async fn provision(sdk: &SdkConfig, template_path: &Path, options: &ProvisionOptions) -> anyhow::Result<Provisioned> {
    run(sdk, template_path, options, true).await
}

/// Creates the tables only; the queue directory stays empty. What a store test needs, in a
/// fraction of the calls.
pub async fn provision_tables(sdk: &SdkConfig, template_path: &Path, options: &ProvisionOptions) -> anyhow::Result<Provisioned> {
    run(sdk, template_path, options, false).await
}

/// Deletes what [`provision`] created (best effort), for test clean-up.
pub async fn delete(sdk: &SdkConfig, provisioned: &Provisioned) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for name in provisioned.queues.names() {
        if let Ok(url) = provisioned.queues.url(name) {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let t = &provisioned.tables;
    for name in [&t.idempotency, &t.events, &t.notifications, &t.users, &t.connections] {
        let _ = dynamodb.delete_table().table_name(name).send().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: the template read and resolved, no AWS call.

const QUEUE: &str = "AWS::SQS::Queue";
const TABLE: &str = "AWS::DynamoDB::Table";

/// Stands for `${AWS::AccountId}` until the account is known: it is read from the ARN of the
/// first queue created, so a queue name may not be the first place that needs it.
const ACCOUNT_ID: &str = "\u{1}AWS::AccountId\u{1}";

/// The template's queues and tables, resolved.
#[derive(Debug)]
pub struct Plan {
    pub queues: Vec<QueuePlan>,
    pub tables: Vec<TablePlan>,
}

#[derive(Debug)]
pub struct QueuePlan {
    /// The resource's logical id (`SendEmailFastQueue`).
    pub logical_id: String,
    /// The physical queue name (`<stack>-send-email-fast.fifo`).
    pub name: String,
    /// The name without the `<stack>-` prefix: the key of the queue directory.
    pub logical_name: String,
    /// Queue attributes, except the redrive policy.
    pub attributes: Vec<(QueueAttributeName, String)>,
    pub redrive: Option<Redrive>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Redrive {
    pub target: RedriveTarget,
    pub max_receive_count: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RedriveTarget {
    /// `Fn::GetAtt [LogicalId, Arn]` of a queue in the template.
    Queue(String),
    /// A literal (or `Fn::Sub`-built) ARN.
    Arn(String),
}

#[derive(Debug)]
pub struct TablePlan {
    pub logical_id: String,
    pub name: String,
    /// The name without the `<stack>-` prefix (`idempotency` …).
    pub logical_name: String,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeySchemaElement>,
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub time_to_live: Option<TimeToLiveSpecification>,
}

/// Reads `template` (YAML text) for `options.stack_name` in `region`.
pub fn plan(template: &str, options: &ProvisionOptions, region: &str) -> anyhow::Result<Plan> {
    let template: Value = serde_yaml_ng::from_str(template).context("template is not YAML")?;
    let resolver = Resolver { stack_name: &options.stack_name, region, parameters: parameters(&template, &options.parameters)? };
    let resources = template.get("Resources").and_then(Value::as_object).ok_or_else(|| anyhow!("the template has no Resources"))?;
    let mut plan = Plan { queues: Vec::new(), tables: Vec::new() };
    for (logical_id, resource) in resources {
        let properties = match resource.get("Properties") {
            None => &Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => bail!("{logical_id}: Properties is not a mapping"),
        };
        let planned = match resource.get("Type").and_then(Value::as_str) {
            Some(QUEUE) => plan_queue(&resolver, logical_id, properties).map(|q| plan.queues.push(q)),
            Some(TABLE) => plan_table(&resolver, logical_id, properties).map(|t| plan.tables.push(t)),
            _ => Ok(()), // functions, APIs … are not provisioned here
        };
        planned.with_context(|| format!("template resource {logical_id}"))?;
    }
    for q in &plan.queues {
        if let Some(Redrive { target: RedriveTarget::Queue(target), .. }) = &q.redrive
            && !plan.queues.iter().any(|t| &t.logical_id == target)
        {
            bail!("template resource {}: its redrive target {target} is not an AWS::SQS::Queue of the template", q.logical_id);
        }
    }
    Ok(plan)
}

/// Each declared parameter's value: the override, else its `Default`; checked against
/// `AllowedValues` and, for `Number`, `MinValue`/`MaxValue`.
fn parameters(template: &Value, overrides: &HashMap<String, String>) -> anyhow::Result<HashMap<String, Option<String>>> {
    let declared = template.get("Parameters").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(unknown) = overrides.keys().find(|k| !declared.contains_key(*k)) {
        bail!("parameter {unknown} is not declared in the template (declared: {:?})", declared.keys().collect::<Vec<_>>());
    }
    let mut out = HashMap::new();
    for (name, declaration) in &declared {
        let value = overrides.get(name).cloned().or_else(|| declaration.get("Default").map(plain_string));
        if let Some(v) = &value {
            if let Some(allowed) = declaration.get("AllowedValues").and_then(Value::as_array)
                && !allowed.iter().any(|a| plain_string(a) == *v)
            {
                bail!("parameter {name} = {v:?} is not one of {:?}", allowed.iter().map(plain_string).collect::<Vec<_>>());
            }
            if declaration.get("Type").and_then(Value::as_str) == Some("Number") {
                let number: f64 = v.parse().map_err(|_| anyhow!("parameter {name} = {v:?} is not a number"))?;
                let min = declaration.get("MinValue").and_then(Value::as_f64);
                let max = declaration.get("MaxValue").and_then(Value::as_f64);
                if min.is_some_and(|m| number < m) || max.is_some_and(|m| number > m) {
                    bail!("parameter {name} = {v} is outside {min:?}..={max:?}");
                }
            }
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// A YAML scalar as CloudFormation reads it: `5` and `"5"` alike.
fn plain_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Resolver<'a> {
    stack_name: &'a str,
    region: &'a str,
    parameters: HashMap<String, Option<String>>,
}

impl Resolver<'_> {
    /// A scalar property: a plain value, `Ref` or `Fn::Sub`.
    fn string(&self, v: &Value) -> anyhow::Result<String> {
        match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(plain_string(v)),
            Value::Object(m) if m.len() == 1 => {
                let (function, argument) = m.iter().next().expect("one entry");
                match function.as_str() {
                    "Ref" => self.reference(argument.as_str().ok_or_else(|| anyhow!("Ref takes a name, not {argument}"))?),
                    "Fn::Sub" => match argument {
                        Value::String(s) => self.sub(s),
                        _ => bail!("only the string form of Fn::Sub is supported, not {argument}"),
                    },
                    "Fn::GetAtt" => bail!("Fn::GetAtt {argument} is supported only as a queue's redrive target"),
                    other => bail!("the intrinsic {other} is not supported by provisioning"),
                }
            }
            other => bail!("expected a scalar, found {other}"),
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        match name {
            "AWS::StackName" => Ok(self.stack_name.to_owned()),
            "AWS::Region" => Ok(self.region.to_owned()),
            "AWS::AccountId" => Ok(ACCOUNT_ID.to_owned()),
            _ => match self.parameters.get(name) {
                Some(Some(value)) => Ok(value.clone()),
                Some(None) => bail!("parameter {name} has no Default: pass it in ProvisionOptions::parameters"),
                None if name.starts_with("AWS::") => {
                    bail!("{name} is not supported (only AWS::StackName, AWS::Region and AWS::AccountId)")
                }
                None => bail!("Ref {name}: not a parameter (provisioning resolves no reference to a resource)"),
            },
        }
    }

    fn sub(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = start + rest[start..].find('}').ok_or_else(|| anyhow!("Fn::Sub {template:?}: unclosed ${{"))?;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if name.contains('.') {
                bail!("Fn::Sub {template:?}: ${{{name}}} (a resource attribute) is not supported by provisioning");
            } else {
                out.push_str(&self.reference(name).with_context(|| format!("Fn::Sub {template:?}"))?);
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn boolean(&self, v: &Value) -> anyhow::Result<bool> {
        match self.string(v)?.as_str() {
            "true" | "True" => Ok(true),
            "false" | "False" => Ok(false),
            other => bail!("expected true or false, found {other:?}"),
        }
    }

    /// `field` of a mapping, resolved; an error if missing.
    fn field(&self, m: &Value, field: &str) -> anyhow::Result<String> {
        self.string(m.get(field).ok_or_else(|| anyhow!("{field} is missing"))?).with_context(|| field.to_owned())
    }
}

fn without_stack(name: &str, stack_name: &str) -> String {
    name.strip_prefix(stack_name).and_then(|n| n.strip_prefix('-')).unwrap_or(name).to_owned()
}

/// The queue attribute a queue property sets one to one.
fn queue_attribute(property: &str) -> Option<QueueAttributeName> {
    Some(match property {
        "FifoQueue" => QueueAttributeName::FifoQueue,
        "ContentBasedDeduplication" => QueueAttributeName::ContentBasedDeduplication,
        "DeduplicationScope" => QueueAttributeName::DeduplicationScope,
        "FifoThroughputLimit" => QueueAttributeName::FifoThroughputLimit,
        "VisibilityTimeout" => QueueAttributeName::VisibilityTimeout,
        "MessageRetentionPeriod" => QueueAttributeName::MessageRetentionPeriod,
        "DelaySeconds" => QueueAttributeName::DelaySeconds,
        "MaximumMessageSize" => QueueAttributeName::MaximumMessageSize,
        "ReceiveMessageWaitTimeSeconds" => QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        "SqsManagedSseEnabled" => QueueAttributeName::SqsManagedSseEnabled,
        "KmsMasterKeyId" => QueueAttributeName::KmsMasterKeyId,
        "KmsDataKeyReusePeriodSeconds" => QueueAttributeName::KmsDataKeyReusePeriodSeconds,
        _ => return None,
    })
}

fn plan_queue(r: &Resolver, logical_id: &str, properties: &Map<String, Value>) -> anyhow::Result<QueuePlan> {
    let name = r.string(properties.get("QueueName").ok_or_else(|| anyhow!("QueueName is missing (provisioning names every queue)"))?)?;
    let mut attributes = Vec::new();
    let mut redrive = None;
    for (property, value) in properties {
        match property.as_str() {
            "QueueName" | "Tags" => {}
            "RedrivePolicy" => {
                let policy = match value {
                    Value::String(json) => serde_json::from_str(json).context("RedrivePolicy is not JSON")?,
                    other => other.clone(),
                };
                let target = policy.get("deadLetterTargetArn").ok_or_else(|| anyhow!("RedrivePolicy: deadLetterTargetArn is missing"))?;
                let target = match target.get("Fn::GetAtt") {
                    Some(get_att) => {
                        let parts: Vec<&str> = match get_att {
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            Value::String(s) => s.splitn(2, '.').collect(),
                            _ => bail!("Fn::GetAtt takes [Resource, Attribute]"),
                        };
                        match parts.as_slice() {
                            [resource, "Arn"] => RedriveTarget::Queue((*resource).to_owned()),
                            _ => bail!("RedrivePolicy: Fn::GetAtt {get_att} is not supported (only [Queue, Arn])"),
                        }
                    }
                    None => RedriveTarget::Arn(r.string(target).context("RedrivePolicy: deadLetterTargetArn")?),
                };
                let max = r.field(&policy, "maxReceiveCount").context("RedrivePolicy")?;
                let max_receive_count = max.parse().map_err(|_| anyhow!("RedrivePolicy: maxReceiveCount {max:?} is not a count"))?;
                redrive = Some(Redrive { target, max_receive_count });
            }
            other => match queue_attribute(other) {
                Some(attribute) => attributes.push((attribute, r.string(value).with_context(|| other.to_owned())?)),
                None => bail!("the queue property {other} is not supported by provisioning (local-stack/src/provision.rs)"),
            },
        }
    }
    Ok(QueuePlan { logical_id: logical_id.to_owned(), logical_name: without_stack(&name, r.stack_name), name, attributes, redrive })
}

/// Table properties that change nothing a test or the local stack can observe.
const IGNORED_TABLE_PROPERTIES: &[&str] = &[
    "BillingMode", // always PAY_PER_REQUEST here
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "WarmThroughput",
    "DeletionProtectionEnabled", // never enabled by provisioning: the tables are throwaway
    "PointInTimeRecoverySpecification",
    "SSESpecification",
    "Tags",
    "TableClass",
    "ContributorInsightsSpecification",
    "StreamSpecification",
    "KinesisStreamSpecification",
    "ResourcePolicy",
];

fn plan_table(r: &Resolver, logical_id: &str, properties: &Map<String, Value>) -> anyhow::Result<TablePlan> {
    let name = r.string(properties.get("TableName").ok_or_else(|| anyhow!("TableName is missing (provisioning names every table)"))?)?;
    let key_schema = |v: Option<&Value>| -> anyhow::Result<Vec<KeySchemaElement>> {
        v.and_then(Value::as_array)
            .ok_or_else(|| anyhow!("KeySchema is missing"))?
            .iter()
            .map(|k| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(r.field(k, "AttributeName")?)
                    .key_type(KeyType::from(r.field(k, "KeyType")?.as_str()))
                    .build()?)
            })
            .collect()
    };
    let mut table = TablePlan {
        logical_id: logical_id.to_owned(),
        logical_name: without_stack(&name, r.stack_name),
        name,
        attribute_definitions: Vec::new(),
        key_schema: Vec::new(),
        global_secondary_indexes: Vec::new(),
        time_to_live: None,
    };
    for (property, value) in properties {
        match property.as_str() {
            "TableName" => {}
            p if IGNORED_TABLE_PROPERTIES.contains(&p) => {}
            "AttributeDefinitions" => {
                for a in value.as_array().ok_or_else(|| anyhow!("AttributeDefinitions is not a list"))? {
                    table.attribute_definitions.push(
                        AttributeDefinition::builder()
                            .attribute_name(r.field(a, "AttributeName")?)
                            .attribute_type(ScalarAttributeType::from(r.field(a, "AttributeType")?.as_str()))
                            .build()?,
                    );
                }
            }
            "KeySchema" => table.key_schema = key_schema(Some(value))?,
            "GlobalSecondaryIndexes" => {
                for g in value.as_array().ok_or_else(|| anyhow!("GlobalSecondaryIndexes is not a list"))? {
                    let p = g.get("Projection").ok_or_else(|| anyhow!("a global secondary index without Projection"))?;
                    let mut projection = Projection::builder().projection_type(ProjectionType::from(r.field(p, "ProjectionType")?.as_str()));
                    for attribute in p.get("NonKeyAttributes").and_then(Value::as_array).into_iter().flatten() {
                        projection = projection.non_key_attributes(r.string(attribute)?);
                    }
                    table.global_secondary_indexes.push(
                        GlobalSecondaryIndex::builder()
                            .index_name(r.field(g, "IndexName")?)
                            .set_key_schema(Some(key_schema(g.get("KeySchema"))?))
                            .projection(projection.build())
                            .build()?,
                    );
                }
            }
            "TimeToLiveSpecification" => {
                let enabled = r.boolean(value.get("Enabled").ok_or_else(|| anyhow!("TimeToLiveSpecification: Enabled is missing"))?)?;
                table.time_to_live = Some(
                    TimeToLiveSpecification::builder()
                        .attribute_name(r.field(value, "AttributeName").context("TimeToLiveSpecification")?)
                        .enabled(enabled)
                        .build()?,
                );
            }
            other => bail!("the table property {other} is not supported by provisioning (local-stack/src/provision.rs)"),
        }
    }
    if table.key_schema.is_empty() {
        bail!("KeySchema is missing");
    }
    Ok(table)
}

// ---------------------------------------------------------------------------------------------
// Execution.

async fn run(sdk: &SdkConfig, template_path: &Path, options: &ProvisionOptions, with_queues: bool) -> anyhow::Result<Provisioned> {
    let text = std::fs::read_to_string(template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let region = sdk.region().ok_or_else(|| anyhow!("the SDK configuration has no region (set AWS_REGION)"))?.to_string();
    let plan = plan(&text, options, &region).with_context(|| format!("reading {}", template_path.display()))?;

    let mut account_id = None;
    let queues = if with_queues { create_queues(sdk, &plan.queues, &mut account_id).await? } else { QueueDirectory::default() };

    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let mut tables = HashMap::new();
    for table in &plan.tables {
        let name = with_account(&table.name, &account_id)?;
        create_table(&dynamodb, &name, table).await.with_context(|| format!("creating table {name} ({})", table.logical_id))?;
        tables.insert(table.logical_name.clone(), name);
    }
    let mut table = |logical: &str| {
        tables.remove(logical).ok_or_else(|| anyhow!("the template declares no {logical} table (named <stack>-{logical})"))
    };
    let tables = TableNames {
        idempotency: table("idempotency")?,
        events: table("events")?,
        notifications: table("notifications")?,
        users: table("users")?,
        connections: table("connections")?,
        suppressions: table("suppressions")?,
        rate_limits: table("rate-limits")?,
        api_keys: table("api-keys")?,
        dead_letters: table("dead-letters")?,
    };
    Ok(Provisioned { stack_name: options.stack_name.clone(), queues, tables })
}

/// `value` with `${AWS::AccountId}` filled in, once the account is known.
fn with_account(value: &str, account_id: &Option<String>) -> anyhow::Result<String> {
    if !value.contains(ACCOUNT_ID) {
        return Ok(value.to_owned());
    }
    match account_id {
        Some(id) => Ok(value.replace(ACCOUNT_ID, id)),
        None => bail!("${{AWS::AccountId}} is learned from the first queue's ARN, and no queue was created before it is needed"),
    }
}

/// All queues first, then the redrive policies, so every dead-letter target exists.
async fn create_queues(sdk: &SdkConfig, plans: &[QueuePlan], account_id: &mut Option<String>) -> anyhow::Result<QueueDirectory> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut directory = QueueDirectory::default();
    let mut created: HashMap<&str, (String, String)> = HashMap::new(); // logical id → (url, arn)
    let mut order: Vec<&QueuePlan> = plans.iter().collect();
    order.sort_by_key(|q| q.name.contains(ACCOUNT_ID)); // those that need no account id first
    for q in order {
        let name = with_account(&q.name, account_id)?;
        let mut attributes = HashMap::new();
        for (attribute, value) in &q.attributes {
            attributes.insert(attribute.clone(), with_account(value, account_id)?);
        }
        let url = create_queue(&sqs, &name, attributes).await.with_context(|| format!("creating queue {name} ({})", q.logical_id))?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .with_context(|| format!("reading the ARN of {name}"))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| anyhow!("{name} has no QueueArn"))?;
        if account_id.is_none() {
            // arn:aws:sqs:<region>:<account>:<name>
            *account_id = arn.split(':').nth(4).filter(|a| !a.is_empty()).map(str::to_owned);
        }
        directory.insert(with_account(&q.logical_name, account_id)?, url.clone());
        created.insert(&q.logical_id, (url, arn));
    }
    for q in plans {
        let Some(redrive) = &q.redrive else { continue };
        let target = match &redrive.target {
            RedriveTarget::Queue(logical_id) => created[logical_id.as_str()].1.clone(), // checked by `plan`
            RedriveTarget::Arn(arn) => with_account(arn, account_id)?,
        };
        let policy = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": redrive.max_receive_count }).to_string();
        let url = &created[q.logical_id.as_str()].0;
        sqs.set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::RedrivePolicy, policy)
            .send()
            .await
            .with_context(|| format!("setting the redrive policy of {}", q.logical_id))?;
    }
    Ok(directory)
}

/// Creates the queue, or brings an existing one of that name to these attributes.
async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, mut attributes: HashMap<QueueAttributeName, String>) -> anyhow::Result<String> {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    match sqs.create_queue().queue_name(name).set_attributes(Some(attributes.clone())).send().await {
        Ok(out) => out.queue_url.ok_or_else(|| anyhow!("CreateQueue answered no URL")),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_name_exists()) || e.code() == Some("QueueAlreadyExists") => {
            // Provisioned before, with other attributes (the template changed since).
            let url = sqs.get_queue_url().queue_name(name).send().await?.queue_url.ok_or_else(|| anyhow!("GetQueueUrl answered no URL"))?;
            attributes.remove(&QueueAttributeName::FifoQueue); // fixed at creation
            sqs.set_queue_attributes().queue_url(&url).set_attributes(Some(attributes)).send().await?;
            Ok(url)
        }
        Err(e) => bail!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)),
    }
}

async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str, t: &TablePlan) -> anyhow::Result<()> {
    let created = dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(t.attribute_definitions.clone()))
        .set_key_schema(Some(t.key_schema.clone()))
        .set_global_secondary_indexes((!t.global_secondary_indexes.is_empty()).then(|| t.global_secondary_indexes.clone()))
        .deletion_protection_enabled(false)
        .send()
        .await;
    let active = match created {
        Ok(out) => out.table_description.and_then(|d| d.table_status) == Some(TableStatus::Active),
        // Provisioned before: kept as it is.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => false,
        Err(e) => bail!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)),
    };
    if !active {
        // AWS creates tables asynchronously; TTL can be set only on an active table.
        dynamodb.wait_until_table_exists().table_name(name).wait(Duration::from_secs(300)).await.context("waiting for the table")?;
    }
    if let Some(wanted) = &t.time_to_live {
        let current = dynamodb.describe_time_to_live().table_name(name).send().await.context("reading its TTL")?.time_to_live_description;
        let status = current.as_ref().and_then(|d| d.time_to_live_status.clone());
        let attribute = current.as_ref().and_then(|d| d.attribute_name.clone());
        let on = matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        let in_line = if wanted.enabled { on && attribute.as_deref() == Some(wanted.attribute_name.as_str()) } else { !on };
        if !in_line {
            dynamodb.update_time_to_live().table_name(name).time_to_live_specification(wanted.clone()).send().await.context("setting its TTL")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::topology::{TopologySettings, all_queues};

    fn options(parameters: &[(&str, &str)]) -> ProvisionOptions {
        ProvisionOptions {
            stack_name: "st".into(),
            parameters: parameters.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn repository_plan(parameters: &[(&str, &str)]) -> Plan {
        let text = std::fs::read_to_string(repository_template()).expect("template.yaml");
        plan(&text, &options(parameters), "eu-west-1").expect("template.yaml plans")
    }

    fn attribute<'a>(q: &'a QueuePlan, name: &QueueAttributeName) -> Option<&'a str> {
        q.attributes.iter().find(|(a, _)| a == name).map(|(_, v)| v.as_str())
    }

    /// template.yaml and `shared::topology` name the same queues, wired the same way.
    #[test]
    fn the_template_declares_the_topology() {
        let plan = repository_plan(&[]);
        let settings = TopologySettings::default();
        let mut planned: Vec<&str> = plan.queues.iter().map(|q| q.logical_name.as_str()).collect();
        let mut expected: Vec<String> = all_queues(&settings).into_iter().map(|q| q.name).collect();
        planned.sort_unstable();
        expected.sort_unstable();
        assert_eq!(planned, expected);
        for spec in all_queues(&settings) {
            let q = plan.queues.iter().find(|q| q.logical_name == spec.name).expect("planned");
            assert_eq!(q.name, format!("st-{}", spec.name));
            assert_eq!(attribute(q, &QueueAttributeName::FifoQueue) == Some("true"), spec.fifo, "{}: FifoQueue", spec.name);
            match (&spec.dead_letter, &q.redrive) {
                (None, None) => {}
                (Some(dl), Some(Redrive { target: RedriveTarget::Queue(target), max_receive_count })) => {
                    let target = plan.queues.iter().find(|t| &t.logical_id == target).expect("target planned");
                    assert_eq!(target.logical_name, dl.queue, "{}: dead-letter queue", spec.name);
                    assert_eq!(*max_receive_count, dl.max_receive_count, "{}: MaxReceiveCount default", spec.name);
                }
                other => panic!("{}: redrive differs: {other:?}", spec.name),
            }
        }
        let mut tables: Vec<&str> = plan.tables.iter().map(|t| t.logical_name.as_str()).collect();
        tables.sort_unstable();
        assert_eq!(tables, ["api-keys", "connections", "dead-letters", "events", "idempotency", "notifications", "rate-limits", "suppressions", "users"]);
    }

    #[test]
    fn parameters_take_overrides_and_are_checked() {
        let plan = repository_plan(&[("MaxReceiveCount", "3")]);
        assert!(plan.queues.iter().filter_map(|q| q.redrive.as_ref()).all(|r| r.max_receive_count == 3));
        let text = std::fs::read_to_string(repository_template()).expect("template.yaml");
        for (bad, says) in [
            (("NoSuchParameter", "1"), "not declared"),
            (("MaxReceiveCount", "0"), "outside"),
            (("MaxReceiveCount", "many"), "not a number"),
            (("DeletionProtection", "maybe"), "not one of"),
        ] {
            let error = format!("{:#}", plan_err(&text, &options(&[bad])));
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    fn plan_err(text: &str, options: &ProvisionOptions) -> anyhow::Error {
        plan(text, options, "eu-west-1").expect_err("planning fails")
    }

    #[test]
    fn intrinsics_resolve_or_fail_clearly() {
        let template = r#"
Parameters:
  Suffix: { Type: String, Default: x }
  NoDefault: { Type: String }
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: { CodeUri: whatever, Events: { Q: { Type: SQS } } }
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: { "Fn::Sub": "${AWS::StackName}-${AWS::Region}-${Suffix}-${!Literal}" }
  Main:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: { "Fn::Sub": "${AWS::StackName}-main-${AWS::AccountId}" }
      VisibilityTimeout: 30
      RedrivePolicy:
        deadLetterTargetArn: { "Fn::GetAtt": Dlq.Arn }
        maxReceiveCount: "4"
"#;
        let plan = plan(template, &options(&[]), "eu-west-1").expect("plans");
        assert!(plan.tables.is_empty(), "the function is skipped");
        let dlq = plan.queues.iter().find(|q| q.logical_id == "Dlq").expect("Dlq");
        assert_eq!(dlq.name, "st-eu-west-1-x-${Literal}");
        assert_eq!(dlq.logical_name, "eu-west-1-x-${Literal}");
        let main = plan.queues.iter().find(|q| q.logical_id == "Main").expect("Main");
        assert_eq!(main.redrive, Some(Redrive { target: RedriveTarget::Queue("Dlq".into()), max_receive_count: 4 }));
        assert_eq!(with_account(&main.name, &Some("123".into())).unwrap(), "st-main-123");
        assert!(with_account(&main.name, &None).is_err());
        assert_eq!(attribute(main, &QueueAttributeName::VisibilityTimeout), Some("30"));

        for (name_expression, says) in [
            (r#"{ "Fn::Sub": "${Dlq.Arn}" }"#, "resource attribute"),
            (r#"{ "Fn::Sub": "${AWS::Partition}" }"#, "not supported"),
            (r#"{ "Fn::Sub": "${Nope}" }"#, "not a parameter"),
            (r#"{ "Ref": NoDefault }"#, "no Default"),
            (r#"{ "Fn::Join": ["-", [a, b]] }"#, "Fn::Join"),
            (r#"{ "Fn::Sub": ["${A}", { A: x }] }"#, "string form"),
        ] {
            let broken = template.replace(r#"{ "Fn::Sub": "${AWS::StackName}-main-${AWS::AccountId}" }"#, name_expression);
            let error = format!("{:#}", plan_err(&broken, &options(&[])));
            assert!(error.contains(says) && error.contains("Main"), "{name_expression}: {error}");
        }
        let unknown_property = template.replace("VisibilityTimeout: 30", "RedriveAllowPolicy: {}");
        assert!(format!("{:#}", plan_err(&unknown_property, &options(&[]))).contains("RedriveAllowPolicy"));
        let missing_target = template.replace("Dlq.Arn", "Gone.Arn");
        assert!(format!("{:#}", plan_err(&missing_target, &options(&[]))).contains("Gone"));
    }
}
