//! The live web view at `/`: one embedded page (no asset fetched from
//! anywhere, enforced by its Content-Security-Policy) that reads
//! `/api/v1/view` every poll and shows the top destinations, attacks with
//! their fingerprints, mitigations per router with the rule as sent, BGP
//! sessions and exporters with their loss. Read-only.

use axum::{
    http::header,
    response::{Html, IntoResponse},
};

const PAGE: &str = include_str!("view.html");

/// Inline script and style only; data from this listener only.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(PAGE),
    )
}
