//! `/docs`: a self-contained HTML page (no external scripts; the daemon may have no internet)
//! that reads `/openapi.json` and lists the routes.

use axum::response::Html;

/// The page.
const PAGE: &str = include_str!("docs.html");

/// Browsable API docs (open: they show only the public OpenAPI document).
#[utoipa::path(get, path = "/docs", tag = "health",
    responses((status = 200, description = "An HTML page rendering /openapi.json", content_type = "text/html")))]
pub async fn docs() -> Html<&'static str> {
    Html(PAGE)
}
