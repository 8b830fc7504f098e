//! Secrets (tokens, signing keys) are read from AWS Secrets Manager once, at cold start: a
//! function's environment names the secret (`NOTIFY_…_SECRET_ARN`), never holds it, and neither
//! the template's parameters nor any log or answer ever carries its value.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The call failed (no such secret, no permission, network): its error code only.
    #[error("cannot read secret {id}: {code}")]
    Unreadable { id: String, code: String },
    /// The secret holds no string (a binary secret, or an empty one).
    #[error("secret {id} holds no text")]
    Empty { id: String },
}

/// The text of secret `id` (an ARN or a name), trimmed.
pub async fn read_secret(client: &Client, id: &str) -> Result<String, SecretError> {
    let answer = client.get_secret_value().secret_id(id).send().await.map_err(|e| SecretError::Unreadable {
        id: id.to_owned(),
        code: e.code().unwrap_or("no answer").to_owned(),
    })?;
    let value = answer.secret_string().map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(SecretError::Empty { id: id.to_owned() });
    }
    Ok(value.to_owned())
}
