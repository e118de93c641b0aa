//! The answers Bridle gives in the upstream's place: `403` for a denied
//! request, `400` for one that could be read two ways, `502` when the
//! upstream cannot be reached or fails verification. All are JSON the agent
//! (and a person reading its log) can act on, plus an `x-bridle-reason`
//! header for clients that hide bodies.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};

use super::ProxyBody;

/// The header carrying the reason on every response Bridle makes itself.
pub(crate) const REASON_HEADER: &str = "x-bridle-reason";

/// `403 {error, reason, policy}` for a request policy denied.
pub(crate) fn forbidden(reason: &str, policy: Option<&str>) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": "forbidden by Bridle policy", "reason": reason, "policy": policy });
    json(StatusCode::FORBIDDEN, reason, &body)
}

/// `400 {error, reason}`: a request Bridle will not forward because it
/// could be read two ways (Bridle's and the upstream's).
pub(crate) fn bad_request(reason: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": "bad request", "reason": reason });
    json(StatusCode::BAD_REQUEST, reason, &body)
}

/// `502 {error, reason}`: the upstream failed (unreachable, or its
/// certificate did not verify). Never a silent downgrade.
pub(crate) fn bad_gateway(reason: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": "upstream failed", "reason": reason });
    json(StatusCode::BAD_GATEWAY, reason, &body)
}

fn json(status: StatusCode, reason: &str, body: &serde_json::Value) -> Response<ProxyBody> {
    let text = body.to_string();
    let mut response = Response::new(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REASON_HEADER, header_safe(reason));
    response
}

/// A header value from free text: visible ASCII only, bounded.
fn header_safe(reason: &str) -> HeaderValue {
    let text: String =
        reason.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(512).collect();
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("denied"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forbidden_carries_reason_and_policy_in_json_and_header() {
        let response = forbidden("admin pages are off limits\n", Some("no-admin"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[REASON_HEADER], "admin pages are off limits?");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["reason"], "admin pages are off limits\n");
        assert_eq!(json["policy"], "no-admin");
        assert_eq!(json["error"], "forbidden by Bridle policy");
    }
}
