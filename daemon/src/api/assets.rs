//! The dashboard's files, bundled at build time (`daemon/build.rs` runs
//! `dashboard/build.mjs`: the page, its script with ECharts, its styles) and embedded in
//! the binary, so the page needs nothing from outside at run time. Served without a token:
//! they hold no data; the page asks for its token-checked data itself.

use axum::{
    http::header,
    response::{Html, IntoResponse, Response},
};

const INDEX: &str = include_str!(concat!(env!("OUT_DIR"), "/dashboard/index.html"));
const APP_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dashboard/app.js"));
const APP_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dashboard/app.css"));

/// `GET /`: the page.
pub(super) async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// `GET /app.js`.
pub(super) async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

/// `GET /app.css`.
pub(super) async fn app_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_holds_the_page_its_script_and_echarts() {
        assert!(INDEX.contains(r#"<script src="/app.js">"#));
        assert!(INDEX.contains(r#"href="/app.css""#));
        // The page loads only the daemon's own files: nothing from a CDN.
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        let js = String::from_utf8_lossy(APP_JS);
        // The stream's endpoint and ECharts' own code are in the one script.
        assert!(js.contains("/ws?"), "the page's code");
        assert!(js.contains("echarts"), "ECharts bundled");
        assert!(String::from_utf8_lossy(APP_CSS).contains("--critical"));
    }
}
