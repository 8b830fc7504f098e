//! The recipient's own routes: one-click unsubscribe (public, authorized by the signed link
//! alone) and erasure (`DELETE /v1/users/{user_id}`, behind the API key). Both are served by the
//! api function next to [`super::api_routes`].

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Problem;
use crate::auth::ApiKeys;
use crate::auth::unsubscribe::{Unsubscribe, UnsubscribeTokenError};
use crate::domain::FieldError;
use crate::handlers::erasure::{self, ErasureDeps};
use crate::handlers::unsubscribe::{self, UnsubscribeDeps, UnsubscribeError};

/// The unsubscribe routes, documented.
pub(crate) fn unsubscribe_router() -> OpenApiRouter<Arc<UnsubscribeDeps>> {
    OpenApiRouter::new().routes(routes!(get_unsubscribe, post_unsubscribe))
}

/// The erasure route, documented.
pub(crate) fn erasure_router() -> OpenApiRouter<Arc<ErasureDeps>> {
    OpenApiRouter::new().routes(routes!(delete_user))
}

/// `GET` and `POST /v1/unsubscribe/{token}`, outside the API key: the link is the authorization.
pub fn unsubscribe_routes(deps: Arc<UnsubscribeDeps>) -> Router {
    let (router, _) = unsubscribe_router().split_for_parts();
    router.with_state(deps)
}

/// `DELETE /v1/users/{user_id}`, behind the API key.
pub fn erasure_routes(deps: Arc<ErasureDeps>, keys: Arc<ApiKeys>) -> Router {
    let (router, _) = erasure_router().split_for_parts();
    router.with_state(deps).layer(middleware::from_fn_with_state(keys, super::require_api_key))
}

/// `DELETE /v1/users/{user_id}`: erasure.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}", tag = "recipients", operation_id = "erase_user",
    summary = "Erase a user: profile, preferences, connections, suppressions and the content of their notifications",
    params(("user_id" = String, Path, description = "The recipient, as the producer names them", example = "u-42")),
    responses(
        (status = 200, description = "What was erased", body = crate::handlers::erasure::Erasure, content_type = "application/json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::Invalid),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
async fn delete_user(State(deps): State<Arc<ErasureDeps>>, axum::extract::Extension(tenant): axum::extract::Extension<crate::domain::Tenant>, super::PathParams(user_id): super::PathParams<String>) -> Response {
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
#[utoipa::path(
    get, path = "/v1/unsubscribe/{token}", tag = "recipients", operation_id = "unsubscribe_page", security(()),
    summary = "The confirmation page of a one-click unsubscribe link (changes nothing)",
    params(("token" = String, Path, description = "The signed token of the email's List-Unsubscribe link")),
    responses(
        (status = 200, description = "A page with the unsubscribe button", body = String, content_type = "text/html"),
        (status = 400, description = "Not a valid or an expired link: a page, or a problem when JSON is asked for", body = String, content_type = "text/html"),
        (status = 503, description = "The settings could not be read", body = String, content_type = "text/html"),
    )
)]
async fn get_unsubscribe(State(deps): State<Arc<UnsubscribeDeps>>, super::PathParams(token): super::PathParams<String>, headers: HeaderMap) -> Response {
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
#[utoipa::path(
    post, path = "/v1/unsubscribe/{token}", tag = "recipients", operation_id = "unsubscribe", security(()),
    summary = "RFC 8058 one-click unsubscribe: opts the user out of the link's category by email",
    params(("token" = String, Path, description = "The signed token of the email's List-Unsubscribe link")),
    responses(
        (status = 200, description = "Unsubscribed (idempotent)", body = String, content_type = "text/html"),
        (status = 400, description = "Not a valid or an expired link: a page, or a problem when JSON is asked for", body = String, content_type = "text/html"),
        (status = 503, description = "The settings could not be changed; try again", body = String, content_type = "text/html"),
    )
)]
async fn post_unsubscribe(State(deps): State<Arc<UnsubscribeDeps>>, super::PathParams(token): super::PathParams<String>, headers: HeaderMap) -> Response {
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
