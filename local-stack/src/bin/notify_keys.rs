//! `notify-keys`: manage the API keys of every tenant in a deployment's key directory table
//! (`<stack>-api-keys`), without redeploying. A new key is printed once and stored only as its
//! SHA-256; a revoked key stops working within a minute (the functions' cache).
//!
//! ```text
//! cargo run -p local-stack --bin notify-keys -- --stack notify create --tenant acme --label prod
//! cargo run -p local-stack --bin notify-keys -- --stack notify list [--tenant acme]
//! cargo run -p local-stack --bin notify-keys -- --stack notify revoke <key-id>
//! cargo run -p local-stack --bin notify-keys -- --stack notify sender acme --email-from 'Acme <no-reply@acme.example>' --sms-sender-id ACME
//! ```
//! AWS credentials and region come from the usual places (profile, environment); `--endpoint-url`
//! points it at an emulator.

use clap::{Parser, Subcommand};
use shared::adapters::aws::{DynamoStore, TableNames};
use shared::auth::key_admin;
use shared::domain::Tenant;

#[derive(Parser)]
#[command(name = "notify-keys", about = "Create, list and revoke tenants' API keys; set a tenant's sender defaults.")]
struct Args {
    /// The stack whose key directory to manage (its table is `<stack>-api-keys`).
    #[arg(long, env = "NOTIFY_STACK", conflicts_with = "table")]
    stack: Option<String>,
    /// The key directory table itself.
    #[arg(long, env = "NOTIFY_API_KEYS_TABLE")]
    table: Option<String>,
    /// Another DynamoDB endpoint (an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a key for a tenant and prints it (the only time it is shown).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        label: Option<String>,
    },
    /// Lists keys (never the keys themselves: their ids, tenants, labels and dates).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revokes a key by its id.
    Revoke { key_id: String },
    /// Sets a tenant's sender defaults (kept where not given) and prints them.
    Sender {
        tenant: String,
        #[arg(long)]
        email_from: Option<String>,
        #[arg(long)]
        sms_sender_id: Option<String>,
    },
}

fn tenant(raw: &str) -> anyhow::Result<Tenant> {
    Tenant::parse(raw).map_err(anyhow::Error::msg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let table = match (&args.table, &args.stack) {
        (Some(table), _) => table.clone(),
        (None, Some(stack)) => format!("{stack}-api-keys"),
        (None, None) => anyhow::bail!("name the key directory: --stack <stack name> or --table <table name>"),
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    let directory = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TableNames { api_keys: table, ..TableNames::default() });
    let now = jiff::Timestamp::now();
    match args.command {
        Command::Create { tenant: name, label } => {
            let created = key_admin::create_key(&directory, &tenant(&name)?, label.as_deref(), now).await?;
            println!("{}", serde_json::json!({"key": created.key, "key_id": created.stored.key_id, "tenant": created.stored.tenant}));
            eprintln!("Keep the key now: only its hash is stored.");
        }
        Command::List { tenant: name } => {
            let tenant = name.as_deref().map(tenant).transpose()?;
            for key in key_admin::list_keys(&directory, tenant.as_ref()).await? {
                println!("{}", serde_json::json!({
                    "key_id": key.key_id, "tenant": key.tenant, "label": key.label,
                    "created_at": key.created_at, "revoked_at": key.revoked_at,
                }));
            }
        }
        Command::Revoke { key_id } => match key_admin::revoke_key(&directory, &key_id, now).await? {
            Some(key) => println!("{}", serde_json::json!({"key_id": key.key_id, "tenant": key.tenant, "revoked_at": key.revoked_at})),
            None => anyhow::bail!("no key with id {key_id}"),
        },
        Command::Sender { tenant: name, email_from, sms_sender_id } => {
            let settings = key_admin::set_sender_defaults(&directory, &tenant(&name)?, email_from, sms_sender_id).await?;
            println!("{}", serde_json::to_string(&settings)?);
        }
    }
    Ok(())
}
