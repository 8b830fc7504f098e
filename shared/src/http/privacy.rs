//! The recipient's own routes: one-click unsubscribe (public, authorized by the signed link
//! alone) and erasure (`DELETE /v1/users/{user_id}`, behind the API key). Both are served by the
//! api function next to [`super::api_routes`].

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use std::sync::Arc;

use super::Problem;
use crate::auth::ApiKeys;
use crate::auth::unsubscribe::{Unsubscribe, UnsubscribeTokenError};
use crate::domain::FieldError;
use crate::handlers::erasure::{self, ErasureDeps};
use crate::handlers::unsubscribe::{self, UnsubscribeDeps, UnsubscribeError};

/// `GET` and `POST /v1/unsubscribe/{token}`, outside the API key: the link is the authorization.
pub fn unsubscribe_routes(deps: Arc<UnsubscribeDeps>) -> Router {
    Router::new().route("/v1/unsubscribe/{token}", get(get_unsubscribe).post(post_unsubscribe)).with_state(deps)
}

/// `DELETE /v1/users/{user_id}`, behind the API key.
pub fn erasure_routes(deps: Arc<ErasureDeps>, keys: Arc<ApiKeys>) -> Router {
    Router::new()
        .route("/v1/users/{user_id}", delete(delete_user))
        .with_state(deps)
        .layer(middleware::from_fn_with_state(keys, super::require_api_key))
}

async fn delete_user(State(deps): State<Arc<ErasureDeps>>, axum::extract::Extension(tenant): axum::extract::Extension<crate::domain::Tenant>, Path(user_id): Path<String>) -> Response {
    match erasure::erase_user(&deps, &tenant, &user_id).await {
        Ok(erased) => super::ok_json(&erased),
        Err(e) => super::query_problem(e, "user"),
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// A small self-contained page: no scripts, no external resources, never cached, never indexed,
/// and no `Referer` carrying the token anywhere.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title}</title>\n</head>\n\
         <body style=\"font-family: Arial, Helvetica, sans-serif; max-width: 480px; margin: 48px auto; padding: 0 16px; color: #1f2933;\">\n\
         <h1 style=\"font-size: 22px;\">{title}</h1>\n{body}\n</body>\n</html>\n",
        title = escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    response
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("json"))
}

/// A link that does not work: a page for people, a problem for programs that ask for JSON.
fn refused(e: UnsubscribeError, headers: &HeaderMap) -> Response {
    match e {
        UnsubscribeError::Token(why) => {
            let message = match why {
                UnsubscribeTokenError::Expired => "this unsubscribe link has expired",
                UnsubscribeTokenError::Invalid => "this is not a valid unsubscribe link",
            };
            if wants_json(headers) {
                let problem = Problem::new(StatusCode::BAD_REQUEST, "invalid-unsubscribe-link", "Invalid Unsubscribe Link", message)
                    .with_errors(vec![FieldError::new("/token", message)]);
                return problem.into_response();
            }
            let body = format!(
                "<p>Sorry, {message}.</p>\n<p>Use the unsubscribe link of a more recent email, or change your notification settings in the app.</p>"
            );
            page(StatusCode::BAD_REQUEST, "Link not valid", &body)
        }
        UnsubscribeError::Store(e) => {
            tracing::error!(error = %e, "store error");
            if wants_json(headers) {
                return Problem::unavailable().with_retry_after(std::time::Duration::from_secs(1)).into_response();
            }
            page(StatusCode::SERVICE_UNAVAILABLE, "Please try again", "<p>We could not update your settings just now. Please try again in a moment.</p>")
        }
    }
}

/// `GET`: says what the link does and offers the button; changes nothing (mail scanners and
/// link previews fetch it).
async fn get_unsubscribe(State(deps): State<Arc<UnsubscribeDeps>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    match unsubscribe::inspect(&deps, &token) {
        Ok(Unsubscribe { category, .. }) => {
            let body = format!(
                "<p>Stop receiving <strong>{category}</strong> emails?</p>\n\
                 <form method=\"post\">\n<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
                 <button type=\"submit\" style=\"background: #2563eb; color: #ffffff; border: 0; padding: 10px 16px; border-radius: 4px;\">Unsubscribe</button>\n</form>",
                category = escape(&category)
            );
            page(StatusCode::OK, "Unsubscribe", &body)
        }
        Err(e) => refused(e, &headers),
    }
}

/// `POST` (RFC 8058 one-click: the body is `List-Unsubscribe=One-Click`, but any body, or none,
/// is accepted): opts out, idempotently, and answers with a short page.
async fn post_unsubscribe(State(deps): State<Arc<UnsubscribeDeps>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    match unsubscribe::unsubscribe(&deps, &token).await {
        Ok(Unsubscribe { category, .. }) => {
            let body = format!("<p>You will no longer receive <strong>{}</strong> emails.</p>", escape(&category));
            page(StatusCode::OK, "You are unsubscribed", &body)
        }
        Err(e) => refused(e, &headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
