//! Webhooks, signed per [Standard Webhooks](https://www.standardwebhooks.com): `WebhookSender`
//! POSTs a notification as JSON to the recipient's `webhook_url`, with the headers
//! `webhook-id` (the notification id: the same on every retry, so receivers can drop
//! duplicates), `webhook-timestamp` (unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`, see [`WebhookSigner`]).
//!
//! # The body
//!
//! The router puts the event as JSON in the message's [`WEBHOOK_PAYLOAD_PART`] (`event_id`,
//! `event_type`, `occurred_at`, `payload`); the sender wraps it in the envelope Standard Webhooks
//! recommends: `{"type": <event type>, "timestamp": <occurred_at, else now (RFC 3339)>,
//! "data": <that JSON>}`. The exact bytes signed are the bytes sent.
//!
//! # Outcomes
//!
//! Any 2xx is a delivery (receipt provider `webhook`, id = the `webhook-id`); a 3xx fails
//! permanently (redirects are never followed); 410 Gone means the endpoint is gone: unreachable
//! (skipped); 429 slows down as `Retry-After` asks; 408 and 5xx and no answer are retried;
//! other 4xx fail permanently.
//!
//! # Server-side request forgery
//!
//! A webhook URL is chosen by whoever writes the profile, so it must not reach into our own
//! network: [`TargetPolicy::aws`] allows `https` only, and only public unicast addresses —
//! never loopback, private, link-local (169.254.169.254 is the instance metadata service),
//! CGNAT, unique local, multicast, … (see [`non_public_reason`]).
//!
//! The check happens where the connection is made, so a DNS answer cannot change between the
//! check and the call (DNS rebinding): the sender's client has its own resolver
//! ([`reqwest::dns::Resolve`]) that looks the host up once, refuses the whole host if any of its
//! addresses is not allowed, and hands exactly the checked addresses to the connector. This pins
//! every connection to checked addresses like a per-call `ClientBuilder::resolve(host, addr)`
//! would, without building a client (and its TLS configuration) per call, and keeps connection
//! reuse. A host written as an IP literal is never resolved, so [`TargetPolicy::check_url`]
//! checks literals before the call. Proxies from the environment are ignored (a proxy would
//! resolve the host itself, unchecked).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{status_error, transport_error};
use crate::catalog::WEBHOOK_PAYLOAD_PART;
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

/// The provider name recorded on the notifications delivered by webhook.
pub const PROVIDER: &str = "webhook";
/// The `User-Agent` of every webhook call.
pub const USER_AGENT: &str = "notify-webhooks/1";
/// The prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest signing key accepted (Standard Webhooks: 24 to 64 bytes).
pub const MIN_SECRET_BYTES: usize = 24;
/// How far a `webhook-timestamp` may be from the verifier's clock (either way).
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256 (RFC 2104) and signatures
// ---------------------------------------------------------------------------------------------

/// HMAC-SHA256 (RFC 2104, SHA-256's 64-byte block) of the concatenation of `parts`.
fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_sha256_parts(key, &[data])
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a string is not a usable webhook secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SecretError {
    #[error("a webhook secret is `whsec_` followed by base64 (asymmetric `whpk_`/`whsk_` keys are not supported)")]
    MissingPrefix,
    #[error("the webhook secret after `whsec_` is not base64")]
    NotBase64,
    #[error("the webhook secret has {0} bytes; at least 24 are needed")]
    TooShort(usize),
}

/// Why a signed request does not verify.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the {0} header is missing or not text")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not unix seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 5 minutes away from now")]
    OutsideTolerance,
    #[error("no v1 signature matches")]
    NoMatchingSignature,
}

/// Signs (and verifies) webhook requests with one symmetric secret, `whsec_<base64 key>`.
#[derive(Clone)]
pub struct WebhookSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSigner").field("key", &"<redacted>").finish()
    }
}

impl WebhookSigner {
    /// From a `whsec_<base64>` secret whose key has at least [`MIN_SECRET_BYTES`] bytes
    /// (padding optional).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.trim().strip_prefix(SECRET_PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| SecretError::NotBase64)?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Self { key })
    }

    /// From a secret as Secrets Manager holds it: the `whsec_<base64>` form, or a plain random
    /// string of at least [`MIN_SECRET_BYTES`] characters (what the template generates), whose
    /// bytes are the key — receivers then use `whsec_` + base64 of it ([`Self::whsec`]).
    pub fn from_stored(secret: &str) -> Result<Self, SecretError> {
        let secret = secret.trim();
        if secret.starts_with(SECRET_PREFIX) {
            return Self::new(secret);
        }
        Self::new(&format!("{SECRET_PREFIX}{}", STANDARD.encode(secret.as_bytes())))
    }

    /// The secret in the `whsec_<base64>` form a receiver's Standard Webhooks library takes.
    pub fn whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// A new random secret (32 bytes), in the `whsec_` form [`WebhookSigner::new`] reads.
    pub fn generate_secret() -> String {
        use rand::RngCore as _;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let timestamp = timestamp.to_string();
        hmac_sha256_parts(&self.key, &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
    }

    /// The `webhook-signature` value: `v1,<base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(msg_id, timestamp, body)))
    }

    /// Checks a received request as a receiver would: the three `webhook-*` headers, a
    /// timestamp within [`TIMESTAMP_TOLERANCE`] of now, and one `v1` signature (of the
    /// space-separated list) matching `body`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        self.verify_at(headers, body, jiff::Timestamp::now().as_second())
    }

    /// [`WebhookSigner::verify`] with the verifier's clock at `now` (unix seconds).
    pub fn verify_at(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), VerifyError> {
        let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(VerifyError::MissingHeader(name));
        let msg_id = header(HEADER_ID)?;
        let timestamp: i64 = header(HEADER_TIMESTAMP)?.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
        let signatures = header(HEADER_SIGNATURE)?;
        if now.abs_diff(timestamp) > TIMESTAMP_TOLERANCE.as_secs() {
            return Err(VerifyError::OutsideTolerance);
        }
        let expected = self.mac(msg_id, timestamp, body);
        let matches = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|candidate| constant_time_eq(&candidate, &expected));
        if matches { Ok(()) } else { Err(VerifyError::NoMatchingSignature) }
    }
}

// ---------------------------------------------------------------------------------------------
// Target policy (SSRF guard)
// ---------------------------------------------------------------------------------------------

/// What a webhook URL may point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Plain `http://` targets (else `https://` only).
    pub allow_http: bool,
    /// Non-public addresses: loopback, private, link-local, … (else public unicast only).
    pub allow_private: bool,
}

impl TargetPolicy {
    /// On AWS: `https` to public addresses only.
    pub const fn aws() -> Self {
        Self { allow_http: false, allow_private: false }
    }

    /// On a laptop (local stack, tests): plain `http` and loopback (any address) allowed.
    pub const fn local() -> Self {
        Self { allow_http: true, allow_private: true }
    }

    /// Refuses an address this policy does not allow.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), TargetRefused> {
        match non_public_reason(ip) {
            Some(reason) if !self.allow_private => Err(TargetRefused(format!("the target address {ip} is {reason}; refused"))),
            _ => Ok(()),
        }
    }

    /// Parses `url` and refuses what can be refused without resolving it: a scheme other than
    /// `https` (or `http` when allowed), and a host written as a refused IP address. Hosts
    /// given by name are checked when resolved, by the sender's resolver.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, TargetRefused> {
        let parsed = reqwest::Url::parse(url).map_err(|_| TargetRefused("the target is not a valid URL".into()))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(TargetRefused("only https targets are allowed".into())),
            _ => return Err(TargetRefused("the target is not an http(s) URL".into())),
        }
        let host = parsed.host_str().ok_or_else(|| TargetRefused("the target URL has no host".into()))?;
        // The URL parser writes every IP spelling (decimal, hex, short forms) as the address, and
        // IPv6 in brackets. A host given by name is checked when resolved.
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            self.check_ip(ip)?;
        }
        Ok(parsed)
    }
}

/// A target a [`TargetPolicy`] refuses, and why (never the URL: it may hold a token).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct TargetRefused(pub String);

/// Why `ip` is not a public unicast address a webhook may reach, or `None` when it is one.
/// IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by that address.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    Some(match ip.octets() {
        [0, 0, 0, 0] => "unspecified",
        // Connecting to 0.x.x.x reaches this host on Linux.
        [0, ..] => "a 'this network' address (0.0.0.0/8)",
        [127, ..] => "a loopback address",
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => "a private address",
        [169, 254, ..] => "a link-local address (169.254.0.0/16, the instance metadata service's)",
        [100, 64..=127, ..] => "a shared (CGNAT) address (100.64.0.0/10)",
        [192, 0, 0, _] => "an IETF protocol assignment (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [198, 18..=19, ..] => "a benchmarking address (198.18.0.0/15)",
        [224..=239, ..] => "a multicast address",
        [255, 255, 255, 255] => "the broadcast address",
        [240..=255, ..] => "a reserved address (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match s {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "a loopback address",
        // ::a.b.c.d (deprecated IPv4-compatible), never a real destination.
        [0, 0, 0, 0, 0, 0, _, _] => "an IPv4-compatible address (::/96)",
        // NAT64: the gateway connects to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return non_public_v4(embedded_v4(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "a local-use NAT64 address (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "a discard-only address (100::/64)",
        [0x2001, 0, ..] => "a Teredo address (2001::/32)",
        [0x2001, 0xdb8, ..] => "a documentation address (2001:db8::/32)",
        // 6to4: the relay connects to the embedded IPv4 address.
        [0x2002, hi, lo, ..] => return non_public_v4(embedded_v4(hi, lo)),
        // Includes fd00:ec2::254, the instance metadata service over IPv6.
        [0xfc00..=0xfdff, ..] => "a unique local address (fc00::/7)",
        [0xfe80..=0xfebf, ..] => "a link-local address (fe80::/10)",
        [0xfec0..=0xfeff, ..] => "a site-local address (fec0::/10)",
        [0xff00..=0xffff, ..] => "a multicast address",
        _ => return None,
    })
}

/// The resolver of the webhook client: resolves once, refuses the host when any of its
/// addresses is refused, and hands the connector exactly the addresses it checked.
struct GuardedResolver {
    policy: TargetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.allow_private
                && let Some((ip, reason)) = addrs.iter().find_map(|a| non_public_reason(a.ip()).map(|r| (a.ip(), r)))
            {
                let refused = TargetRefused(format!("the target resolves to {ip}, {reason}; refused"));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver's refusal, when that is why a call failed.
fn refusal(e: &reqwest::Error) -> Option<&TargetRefused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<TargetRefused>() {
            return Some(refused);
        }
        source = error.source();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The sender
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct WebhookSender {
    client: reqwest::Client,
    signer: WebhookSigner,
    policy: TargetPolicy,
}

impl WebhookSender {
    /// `policy`: [`TargetPolicy::aws`] on AWS, [`TargetPolicy::local`] on a laptop; `timeout`:
    /// per call, connect included ([`super::client::DEFAULT_TIMEOUT`]). The client never
    /// follows redirects and ignores proxy settings.
    pub fn new(signer: WebhookSigner, policy: TargetPolicy, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(USER_AGENT)
            .no_proxy()
            .dns_resolver(GuardedResolver { policy })
            .build()
            // Building fails only when the TLS backend cannot initialise, at cold start.
            .expect("the webhook HTTP client builds");
        Self { client, signer, policy }
    }

    /// Signs and POSTs `payload` to `url` with `webhook-id: msg_id`. Errors never name the URL
    /// (webhook URLs often carry a token in their path or query).
    pub async fn post(&self, url: &str, msg_id: &str, payload: &Value) -> Result<ProviderReceipt, SendError> {
        let refused = |r: &TargetRefused| SendError::Permanent(format!("webhook: {r}"));
        let target = self.policy.check_url(url).map_err(|r| refused(&r))?;
        let id = HeaderValue::from_str(msg_id).map_err(|_| SendError::Permanent("webhook: the message id is not a header value".into()))?;
        let body = serde_json::to_vec(payload).map_err(|_| SendError::Permanent("webhook: the payload is not serialisable".into()))?;
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = self.signer.sign(msg_id, timestamp, &body);
        let response = self
            .client
            .post(target)
            .header(HEADER_ID, id)
            .header(HEADER_TIMESTAMP, timestamp)
            .header(HEADER_SIGNATURE, signature)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| match refusal(&e) {
                Some(r) => refused(r),
                None => transport_error(&e, "webhook"),
            })?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(ProviderReceipt::new(PROVIDER, msg_id)),
            300..=399 => Err(SendError::Permanent(format!("webhook: HTTP {}; redirects are not followed", status.as_u16()))),
            410 => Err(SendError::Unreachable("webhook: the endpoint is gone (HTTP 410)".into())),
            _ => Err(status_error(status, response.headers(), "webhook")),
        }
    }
}

/// The body sent for a delivery: the Standard Webhooks envelope around the event JSON the router
/// put in the [`WEBHOOK_PAYLOAD_PART`]. A missing or non-JSON part fails permanently.
pub fn envelope(d: &Delivery<'_>) -> Result<Value, SendError> {
    let part = d
        .message
        .parts
        .get(WEBHOOK_PAYLOAD_PART)
        .ok_or_else(|| SendError::Permanent(format!("webhook: the message has no {WEBHOOK_PAYLOAD_PART} part")))?;
    let data: Value = serde_json::from_str(part)
        .map_err(|_| SendError::Permanent(format!("webhook: the {WEBHOOK_PAYLOAD_PART} part is not JSON")))?;
    let timestamp = match data.get("occurred_at").and_then(Value::as_str) {
        Some(at) => at.to_owned(),
        None => jiff::Timestamp::now().to_string(),
    };
    Ok(json!({"type": d.event_type, "timestamp": timestamp, "data": data}))
}

#[async_trait]
impl ChannelSender for WebhookSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Webhook { url } = d.address else {
            return Err(SendError::Permanent("not a webhook address".into()));
        };
        let body = envelope(&d)?;
        self.post(url, d.notification_id.as_str(), &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::http::test_fixture::DeliveryFixture;
    use crate::domain::Channel;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// Standard Webhooks' own example secret (24 bytes).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signer() -> WebhookSigner {
        WebhookSigner::new(SECRET).unwrap()
    }

    fn sender(policy: TargetPolicy, timeout: Duration) -> WebhookSender {
        WebhookSender::new(signer(), policy, timeout)
    }

    fn local() -> WebhookSender {
        sender(TargetPolicy::local(), Duration::from_secs(5))
    }

    async fn server_answering(template: ResponseTemplate, expected_calls: u64) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path("/hooks/t0k3n")).respond_with(template).expect(expected_calls).mount(&server).await;
        server
    }

    fn hook_url(server: &MockServer) -> String {
        format!("{}/hooks/t0k3n", server.uri())
    }

    // --- HMAC and signatures -------------------------------------------------------------

    #[test]
    fn hmac_matches_rfc_4231() {
        let hex = |b: [u8; 32]| hex::encode(b);
        // Test case 1.
        assert_eq!(hex(hmac_sha256(&[0x0b; 20], b"Hi There")), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        // Test case 2.
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks specification and its libraries.
        let signature = signer().sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn reads_only_whsec_secrets_of_enough_bytes() {
        assert!(WebhookSigner::new(SECRET).is_ok());
        assert!(WebhookSigner::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert_eq!(WebhookSigner::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(), SecretError::MissingPrefix);
        assert_eq!(WebhookSigner::new("whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(), SecretError::MissingPrefix);
        assert_eq!(WebhookSigner::new("whsec_not base64!").unwrap_err(), SecretError::NotBase64);
        assert_eq!(WebhookSigner::new("whsec_dGVzdA==").unwrap_err(), SecretError::TooShort(4));
        assert_eq!(WebhookSigner::new("whsec_dGVzdA").unwrap_err(), SecretError::TooShort(4), "padding is optional");
        assert_eq!(WebhookSigner::new("whsec_").unwrap_err(), SecretError::TooShort(0));
        let generated = WebhookSigner::generate_secret();
        assert!(generated.starts_with(SECRET_PREFIX) && WebhookSigner::new(&generated).is_ok(), "{generated}");
        assert_ne!(generated, WebhookSigner::generate_secret());
        assert!(!format!("{:?}", signer()).contains("MfKQ"));
    }

    fn signed_headers(signer: &WebhookSigner, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, HeaderValue::from_str(id).unwrap());
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(&timestamp.to_string()).unwrap());
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(&signer.sign(id, timestamp, body)).unwrap());
        headers
    }

    #[test]
    fn verifies_what_it_signs_and_nothing_else() {
        let signer = signer();
        let now = 1_700_000_000;
        let headers = signed_headers(&signer, "n-1", now, b"{}");
        assert_eq!(signer.verify_at(&headers, b"{}", now), Ok(()));
        assert_eq!(signer.verify_at(&headers, b"{}", now + 300), Ok(()));
        assert_eq!(signer.verify_at(&headers, b"{} ", now), Err(VerifyError::NoMatchingSignature));
        assert_eq!(signer.verify_at(&headers, b"{}", now + 301), Err(VerifyError::OutsideTolerance));
        assert_eq!(signer.verify_at(&headers, b"{}", now - 301), Err(VerifyError::OutsideTolerance));
        let other = WebhookSigner::new(&WebhookSigner::generate_secret()).unwrap();
        assert_eq!(other.verify_at(&headers, b"{}", now), Err(VerifyError::NoMatchingSignature));

        // Several signatures (key rotation): one match is enough; other versions are ignored.
        let mut rotated = headers.clone();
        let list = format!("v1a,xyz v1,AAAA {}", headers[HEADER_SIGNATURE].to_str().unwrap());
        rotated.insert(HEADER_SIGNATURE, HeaderValue::from_str(&list).unwrap());
        assert_eq!(signer.verify_at(&rotated, b"{}", now), Ok(()));

        // The id and timestamp are signed too.
        let mut moved = headers.clone();
        moved.insert(HEADER_ID, HeaderValue::from_static("n-2"));
        assert_eq!(signer.verify_at(&moved, b"{}", now), Err(VerifyError::NoMatchingSignature));
        let mut moved = headers.clone();
        moved.insert(HEADER_TIMESTAMP, HeaderValue::from_str(&(now + 1).to_string()).unwrap());
        assert_eq!(signer.verify_at(&moved, b"{}", now), Err(VerifyError::NoMatchingSignature));
        moved.insert(HEADER_TIMESTAMP, HeaderValue::from_static("soon"));
        assert_eq!(signer.verify_at(&moved, b"{}", now), Err(VerifyError::BadTimestamp));
        let mut missing = headers;
        missing.remove(HEADER_SIGNATURE);
        assert_eq!(signer.verify_at(&missing, b"{}", now), Err(VerifyError::MissingHeader(HEADER_SIGNATURE)));
    }

    // --- Address classification ------------------------------------------------------------

    #[test]
    fn classifies_every_non_public_range() {
        let cases: &[(&str, Option<&str>)] = &[
            // IPv4: public, with the neighbours of every refused range.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("a 'this network' address (0.0.0.0/8)")),
            ("0.255.255.255", Some("a 'this network' address (0.0.0.0/8)")),
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("10.0.0.0", Some("a private address")),
            ("10.255.255.255", Some("a private address")),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.64.0.0", Some("a shared (CGNAT) address (100.64.0.0/10)")),
            ("100.127.255.255", Some("a shared (CGNAT) address (100.64.0.0/10)")),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("127.0.0.1", Some("a loopback address")),
            ("127.255.255.254", Some("a loopback address")),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.254.0.0", Some("a link-local address (169.254.0.0/16, the instance metadata service's)")),
            ("169.254.169.254", Some("a link-local address (169.254.0.0/16, the instance metadata service's)")),
            ("169.254.255.255", Some("a link-local address (169.254.0.0/16, the instance metadata service's)")),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", Some("a private address")),
            ("172.31.255.255", Some("a private address")),
            ("172.32.0.0", None),
            ("192.0.0.8", Some("an IETF protocol assignment (192.0.0.0/24)")),
            ("192.0.1.1", None),
            ("192.0.2.1", Some("a documentation address")),
            ("198.51.100.7", Some("a documentation address")),
            ("203.0.113.9", Some("a documentation address")),
            ("192.167.255.255", None),
            ("192.168.0.0", Some("a private address")),
            ("192.168.255.255", Some("a private address")),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.18.0.0", Some("a benchmarking address (198.18.0.0/15)")),
            ("198.19.255.255", Some("a benchmarking address (198.18.0.0/15)")),
            ("198.20.0.0", None),
            ("223.255.255.255", None),
            ("224.0.0.1", Some("a multicast address")),
            ("239.255.255.255", Some("a multicast address")),
            ("240.0.0.1", Some("a reserved address (240.0.0.0/4)")),
            ("255.255.255.254", Some("a reserved address (240.0.0.0/4)")),
            ("255.255.255.255", Some("the broadcast address")),
            // IPv6.
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
            ("::", Some("unspecified")),
            ("::1", Some("a loopback address")),
            ("::2", Some("an IPv4-compatible address (::/96)")),
            ("::a9fe:a9fe", Some("an IPv4-compatible address (::/96)")),
            ("fc00::1", Some("a unique local address (fc00::/7)")),
            ("fd00:ec2::254", Some("a unique local address (fc00::/7)")),
            ("fdff:ffff::1", Some("a unique local address (fc00::/7)")),
            ("fbff::1", None),
            ("fe80::1", Some("a link-local address (fe80::/10)")),
            ("febf::ffff", Some("a link-local address (fe80::/10)")),
            ("fec0::1", Some("a site-local address (fec0::/10)")),
            ("ff02::1", Some("a multicast address")),
            ("ff05::2", Some("a multicast address")),
            ("100::1", Some("a discard-only address (100::/64)")),
            ("2001::1", Some("a Teredo address (2001::/32)")),
            ("2001:db8::1", Some("a documentation address (2001:db8::/32)")),
            ("64:ff9b:1::1", Some("a local-use NAT64 address (64:ff9b:1::/48)")),
            // IPv6 forms of IPv4 addresses: judged by the IPv4 address.
            ("::ffff:127.0.0.1", Some("a loopback address")),
            ("::ffff:10.1.2.3", Some("a private address")),
            ("::ffff:172.16.0.1", Some("a private address")),
            ("::ffff:192.168.1.1", Some("a private address")),
            ("::ffff:169.254.169.254", Some("a link-local address (169.254.0.0/16, the instance metadata service's)")),
            ("::ffff:100.64.0.1", Some("a shared (CGNAT) address (100.64.0.0/10)")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:224.0.0.1", Some("a multicast address")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::a9fe:a9fe", Some("a link-local address (169.254.0.0/16, the instance metadata service's)")),
            ("64:ff9b::7f00:1", Some("a loopback address")),
            ("64:ff9b::808:808", None),
            ("2002:a9fe:a9fe::1", Some("a link-local address (169.254.0.0/16, the instance metadata service's)")),
            ("2002:0a00:0001::1", Some("a private address")),
            ("2002:0808:0808::1", None),
        ];
        for (ip, expected) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public_reason(ip), *expected, "{ip}");
            assert_eq!(TargetPolicy::aws().check_ip(ip).is_ok(), expected.is_none(), "{ip}");
            assert!(TargetPolicy::local().check_ip(ip).is_ok(), "{ip}");
        }
    }

    #[test]
    fn checks_schemes_and_literal_hosts_before_any_call() {
        let aws = TargetPolicy::aws();
        assert!(aws.check_url("https://hooks.example.com/x?token=1").is_ok());
        assert!(aws.check_url("https://8.8.8.8/").is_ok());
        assert_eq!(aws.check_url("http://hooks.example.com/").unwrap_err().0, "only https targets are allowed");
        assert_eq!(aws.check_url("ftp://hooks.example.com/").unwrap_err().0, "the target is not an http(s) URL");
        assert_eq!(aws.check_url("not a url").unwrap_err().0, "the target is not a valid URL");
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:169.254.169.254]/",
            "https://[fd00:ec2::254]/",
            "https://127.0.0.1:8443/",
            "https://2130706433/",    // 127.0.0.1 in decimal
            "https://0x7f.0.0.1/",    // and in hex
            "https://0/",             // 0.0.0.0
            "https://[::]/",
            "https://10.0.0.1/",
        ] {
            let refused = aws.check_url(url).unwrap_err();
            assert!(refused.0.ends_with("; refused"), "{url}: {refused}");
            assert!(!refused.0.contains("https"), "the URL is never quoted: {refused}");
        }
        let local = TargetPolicy::local();
        assert!(local.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(local.check_url("http://localhost/hook").is_ok());
        assert!(local.check_url("file:///etc/passwd").is_err());
    }

    // --- The sender, against a local fake ------------------------------------------------------

    #[tokio::test]
    async fn posts_signed_json_that_verifies() {
        let server = server_answering(ResponseTemplate::new(204), 1).await;
        let payload = json!({"type": "order.completed", "data": {"order_id": "A-17", "note": "ü & <b>"}});
        let receipt = local().post(&hook_url(&server), "n-evt-1-webhook", &payload).await.unwrap();
        assert_eq!(receipt, ProviderReceipt::new("webhook", "n-evt-1-webhook"));

        let requests = server.received_requests().await.unwrap();
        let request = &requests[0];
        assert_eq!(request.headers[HEADER_ID], "n-evt-1-webhook");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.headers["user-agent"], USER_AGENT);
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), payload);
        let sent_at: i64 = request.headers[HEADER_TIMESTAMP].to_str().unwrap().parse().unwrap();
        assert!(jiff::Timestamp::now().as_second().abs_diff(sent_at) <= 5);
        assert!(request.headers[HEADER_SIGNATURE].to_str().unwrap().starts_with("v1,"));
        assert_eq!(signer().verify(&request.headers, &request.body), Ok(()));
        let stranger = WebhookSigner::new(&WebhookSigner::generate_secret()).unwrap();
        assert_eq!(stranger.verify(&request.headers, &request.body), Err(VerifyError::NoMatchingSignature));
    }

    #[tokio::test]
    async fn any_2xx_is_a_delivery_whatever_its_body() {
        for template in [
            ResponseTemplate::new(200).set_body_string("<html>thanks</html>"),
            ResponseTemplate::new(202).set_body_json(json!({"unexpected": true})),
        ] {
            let server = server_answering(template, 1).await;
            assert_eq!(local().post(&hook_url(&server), "n-1", &json!({})).await, Ok(ProviderReceipt::new("webhook", "n-1")));
        }
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let elsewhere = MockServer::start().await;
        Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(200)).expect(0).mount(&elsewhere).await;
        let location = format!("{}/internal", elsewhere.uri());
        let server = server_answering(ResponseTemplate::new(302).insert_header("location", location.as_str()), 1).await;
        let result = local().post(&hook_url(&server), "n-1", &json!({})).await;
        assert_eq!(result, Err(SendError::Permanent("webhook: HTTP 302; redirects are not followed".into())));
        assert!(elsewhere.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn statuses_map_to_what_retrying_can_do() {
        let cases = [
            (ResponseTemplate::new(410), Err(SendError::Unreachable("webhook: the endpoint is gone (HTTP 410)".into()))),
            (ResponseTemplate::new(400), Err(SendError::Permanent("webhook: HTTP 400 Bad Request".into()))),
            (ResponseTemplate::new(404), Err(SendError::Permanent("webhook: HTTP 404 Not Found".into()))),
            (
                ResponseTemplate::new(429).insert_header("retry-after", "30"),
                Err(SendError::Throttled { retry_after: Some(Duration::from_secs(30)) }),
            ),
            (ResponseTemplate::new(500), Err(SendError::Transient("webhook: HTTP 500 Internal Server Error".into()))),
            (ResponseTemplate::new(503), Err(SendError::Transient("webhook: HTTP 503 Service Unavailable".into()))),
        ];
        for (template, expected) in cases {
            let server = server_answering(template, 1).await;
            assert_eq!(local().post(&hook_url(&server), "n-1", &json!({})).await, expected);
        }
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let server = server_answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)), 1).await;
        let result = sender(TargetPolicy::local(), Duration::from_millis(200)).post(&hook_url(&server), "n-1", &json!({})).await;
        assert_eq!(result, Err(SendError::Transient("webhook: timed out".into())));
    }

    #[tokio::test]
    async fn the_aws_policy_refuses_internal_targets_without_a_request() {
        let server = server_answering(ResponseTemplate::new(200), 0).await;
        let port = server.address().port();
        let aws = sender(TargetPolicy::aws(), Duration::from_secs(5));
        let cases = [
            (format!("http://127.0.0.1:{port}/hooks/t0k3n"), "webhook: only https targets are allowed".to_owned()),
            (format!("https://127.0.0.1:{port}/hooks/t0k3n"), "webhook: the target address 127.0.0.1 is a loopback address; refused".to_owned()),
            (
                "https://169.254.169.254/latest/meta-data/iam/security-credentials/".to_owned(),
                "webhook: the target address 169.254.169.254 is a link-local address (169.254.0.0/16, the instance metadata service's); refused".to_owned(),
            ),
        ];
        for (url, why) in cases {
            assert_eq!(aws.post(&url, "n-1", &json!({})).await, Err(SendError::Permanent(why)), "{url}");
        }
        // A name that resolves to loopback: refused by the resolver, before connecting.
        let result = aws.post(&format!("https://localhost:{port}/hooks/t0k3n"), "n-1", &json!({})).await;
        let Err(SendError::Permanent(why)) = result else { panic!("{result:?}") };
        assert!(why.starts_with("webhook: the target resolves to ") && why.ends_with("a loopback address; refused"), "{why}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_local_policy_reaches_a_name_that_resolves_to_loopback() {
        let server = server_answering(ResponseTemplate::new(200), 1).await;
        let url = format!("http://localhost:{}/hooks/t0k3n", server.address().port());
        assert_eq!(local().post(&url, "n-1", &json!({})).await, Ok(ProviderReceipt::new("webhook", "n-1")));
    }

    // --- As a channel sender ----------------------------------------------------------------

    #[tokio::test]
    async fn sends_the_event_in_the_standard_envelope_with_the_notification_id() {
        let server = server_answering(ResponseTemplate::new(200), 1).await;
        let event = json!({"event_id": "evt-1", "event_type": "order.completed", "occurred_at": "2026-01-02T03:04:05Z", "payload": {"order_id": "A-17"}});
        let fixture = DeliveryFixture::new(Channel::Webhook, Address::Webhook { url: hook_url(&server) }, &[(WEBHOOK_PAYLOAD_PART, &event.to_string())]);
        let receipt = local().send(fixture.delivery()).await.unwrap();
        assert_eq!(receipt, ProviderReceipt::new("webhook", fixture.id.as_str()));
        let request = &server.received_requests().await.unwrap()[0];
        assert_eq!(request.headers[HEADER_ID], fixture.id.as_str());
        assert_eq!(
            serde_json::from_slice::<Value>(&request.body).unwrap(),
            json!({"type": "order.completed", "timestamp": "2026-01-02T03:04:05Z", "data": event})
        );
        assert_eq!(signer().verify(&request.headers, &request.body), Ok(()));
    }

    #[tokio::test]
    async fn a_missing_or_broken_payload_or_another_address_fails_without_a_call() {
        let server = server_answering(ResponseTemplate::new(200), 0).await;
        let address = Address::Webhook { url: hook_url(&server) };
        let sender = local();
        let missing = DeliveryFixture::new(Channel::Webhook, address.clone(), &[]);
        assert_eq!(sender.send(missing.delivery()).await, Err(SendError::Permanent("webhook: the message has no payload part".into())));
        let broken = DeliveryFixture::new(Channel::Webhook, address, &[(WEBHOOK_PAYLOAD_PART, "{not json")]);
        assert_eq!(sender.send(broken.delivery()).await, Err(SendError::Permanent("webhook: the payload part is not JSON".into())));
        let other = DeliveryFixture::new(Channel::Webhook, Address::Connections, &[(WEBHOOK_PAYLOAD_PART, "{}")]);
        assert_eq!(sender.send(other.delivery()).await, Err(SendError::Permanent("not a webhook address".into())));
    }
}
