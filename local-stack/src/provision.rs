//! Creates the queues and tables that `template.yaml` declares in an AWS endpoint (an emulator
//! in tests, LocalStack, or an account), reading the template itself so there is no second list
//! to drift. Other resource types (functions, APIs, alarms) are left to `sam deploy`.

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use shared::adapters::aws::{QueueDirectory, TableNames};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Provisioned {
    pub stack_name: String,
    /// Logical queue name (`send-email-fast.fifo`) → URL.
    pub queues: QueueDirectory,
    pub tables: TableNames,
    queue_urls: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ProvisionOptions {
    pub stack_name: String,
    /// Overrides of the template's parameters (`MaxReceiveCount` …).
    pub parameters: HashMap<String, String>,
}

pub fn repository_template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("template.yaml")
}

struct Resolver<'a> {
    stack_name: &'a str,
    region: String,
    account_id: &'a str,
    parameters: HashMap<String, String>,
    queue_arns: HashMap<String, String>,
}

impl Resolver<'_> {
    /// A scalar property, resolving `Fn::Sub`, `Ref` (parameters and pseudo parameters) and
    /// `Fn::GetAtt [Queue, Arn]`.
    fn scalar(&self, v: &Value) -> anyhow::Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().ok_or_else(|| anyhow!("empty intrinsic"))?;
                match k.as_str() {
                    "Ref" => self.reference(arg.as_str().ok_or_else(|| anyhow!("Ref takes a name"))?),
                    "Fn::Sub" => self.sub(arg.as_str().ok_or_else(|| anyhow!("only the string form of Fn::Sub is supported"))?),
                    "Fn::GetAtt" => {
                        let parts: Vec<&str> = match arg {
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            Value::String(s) => s.split('.').collect(),
                            _ => bail!("Fn::GetAtt takes [Resource, Attribute]"),
                        };
                        match parts.as_slice() {
                            [res, "Arn"] => self.queue_arns.get(*res).cloned().ok_or_else(|| anyhow!("Fn::GetAtt {res}.Arn: not a queue created here")),
                            _ => bail!("unsupported Fn::GetAtt {parts:?}"),
                        }
                    }
                    other => bail!("unsupported intrinsic {other}"),
                }
            }
            other => bail!("expected a scalar, found {other}"),
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        match name {
            "AWS::StackName" => Ok(self.stack_name.to_owned()),
            "AWS::Region" => Ok(self.region.clone()),
            "AWS::AccountId" => Ok(self.account_id.to_owned()),
            _ => self.parameters.get(name).cloned().ok_or_else(|| anyhow!("Ref {name}: no such parameter")),
        }
    }

    fn sub(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| anyhow!("unclosed ${{ in {template:?}"))? + start;
            out.push_str(&self.reference(&rest[start + 2..end])?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn properties(resource: &Value) -> &serde_json::Map<String, Value> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    resource.get("Properties").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

fn strip_stack<'a>(name: &'a str, stack_name: &str) -> &'a str {
    name.strip_prefix(stack_name).and_then(|n| n.strip_prefix('-')).unwrap_or(name)
}

pub async fn provision(sdk: &SdkConfig, template_path: &Path, options: &ProvisionOptions) -> anyhow::Result<Provisioned> {
    let text = std::fs::read_to_string(template_path).with_context(|| format!("reading {}", template_path.display()))?;
    let template: Value = serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", template_path.display()))?;
    let mut parameters: HashMap<String, String> = HashMap::new();
    if let Some(params) = template.get("Parameters").and_then(Value::as_object) {
        for (name, p) in params {
            if let Some(d) = p.get("Default") {
                parameters.insert(name.clone(), match d {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        }
    }
    parameters.extend(options.parameters.clone());
    let resources = template.get("Resources").and_then(Value::as_object).ok_or_else(|| anyhow!("template has no Resources"))?;
    let mut r = Resolver {
        stack_name: &options.stack_name,
        region: sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into()),
        account_id: "123456789012",
        parameters,
        queue_arns: HashMap::new(),
    };

    // Queues first (without redrive), so every dead-letter target exists when policies are set.
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut directory = QueueDirectory::default();
    let mut queue_urls = Vec::new();
    let mut redrives = Vec::new();
    for (logical_id, resource) in resources.iter().filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::SQS::Queue")) {
        let props = properties(resource);
        let name = r.scalar(props.get("QueueName").ok_or_else(|| anyhow!("{logical_id} has no QueueName"))?)?;
        let mut create = sqs.create_queue().queue_name(&name);
        for (prop, attr) in [
            ("FifoQueue", QueueAttributeName::FifoQueue),
            ("ContentBasedDeduplication", QueueAttributeName::ContentBasedDeduplication),
            ("DeduplicationScope", QueueAttributeName::DeduplicationScope),
            ("FifoThroughputLimit", QueueAttributeName::FifoThroughputLimit),
            ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
            ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod),
            ("DelaySeconds", QueueAttributeName::DelaySeconds),
            ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
            ("SqsManagedSseEnabled", QueueAttributeName::SqsManagedSseEnabled),
        ] {
            if let Some(v) = props.get(prop) {
                create = create.attributes(attr, r.scalar(v)?);
            }
        }
        let url = create.send().await.with_context(|| format!("creating queue {name}"))?.queue_url.unwrap_or_default();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| anyhow!("{name} has no ARN"))?;
        r.queue_arns.insert(logical_id.clone(), arn);
        directory.insert(strip_stack(&name, &options.stack_name), url.clone());
        queue_urls.push(url.clone());
        if let Some(policy) = props.get("RedrivePolicy") {
            redrives.push((url, policy.clone()));
        }
    }
    for (url, policy) in redrives {
        let target = r.scalar(policy.get("deadLetterTargetArn").ok_or_else(|| anyhow!("RedrivePolicy without deadLetterTargetArn"))?)?;
        let max: u32 = r.scalar(policy.get("maxReceiveCount").ok_or_else(|| anyhow!("RedrivePolicy without maxReceiveCount"))?)?.parse()?;
        let json = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": max }).to_string();
        sqs.set_queue_attributes().queue_url(&url).attributes(QueueAttributeName::RedrivePolicy, json).send().await?;
    }

    // Tables.
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let mut tables: HashMap<String, String> = HashMap::new();
    for (logical_id, resource) in resources.iter().filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::DynamoDB::Table")) {
        let props = properties(resource);
        let name = r.scalar(props.get("TableName").ok_or_else(|| anyhow!("{logical_id} has no TableName"))?)?;
        let key_schema = |v: Option<&Value>| -> anyhow::Result<Vec<KeySchemaElement>> {
            v.and_then(Value::as_array)
                .ok_or_else(|| anyhow!("{logical_id}: KeySchema missing"))?
                .iter()
                .map(|k| {
                    Ok(KeySchemaElement::builder()
                        .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                        .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                        .build()?)
                })
                .collect()
        };
        let mut create = dynamodb.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
        for a in props.get("AttributeDefinitions").and_then(Value::as_array).into_iter().flatten() {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                    .attribute_type(ScalarAttributeType::from(a["AttributeType"].as_str().unwrap_or_default()))
                    .build()?,
            );
        }
        create = create.set_key_schema(Some(key_schema(props.get("KeySchema"))?));
        for g in props.get("GlobalSecondaryIndexes").and_then(Value::as_array).into_iter().flatten() {
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(g["Projection"]["ProjectionType"].as_str().unwrap_or("ALL")))
                .build();
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(g["IndexName"].as_str().unwrap_or_default())
                    .set_key_schema(Some(key_schema(g.get("KeySchema"))?))
                    .projection(projection)
                    .build()?,
            );
        }
        create.send().await.with_context(|| format!("creating table {name}"))?;
        if let Some(ttl) = props.get("TimeToLiveSpecification") {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(ttl["AttributeName"].as_str().unwrap_or_default())
                .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                .build()?;
            dynamodb.update_time_to_live().table_name(&name).time_to_live_specification(spec).send().await?;
        }
        tables.insert(strip_stack(&name, &options.stack_name).to_owned(), name);
    }
    let table = |k: &str| tables.get(k).cloned().ok_or_else(|| anyhow!("template.yaml declares no {k} table"));
    let tables = TableNames {
        idempotency: table("idempotency")?,
        events: table("events")?,
        notifications: table("notifications")?,
        users: table("users")?,
        connections: table("connections")?,
    };
    Ok(Provisioned { stack_name: options.stack_name.clone(), queues: directory, tables, queue_urls })
}

/// Deletes what `provision` created (best effort), for test clean-up.
pub async fn delete(sdk: &SdkConfig, provisioned: &Provisioned) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for url in &provisioned.queue_urls {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let t = &provisioned.tables;
    for name in [&t.idempotency, &t.events, &t.notifications, &t.users, &t.connections] {
        let _ = dynamodb.delete_table().table_name(name).send().await;
    }
}
