//! PagerDuty's REST rate limit: a fixed window per token. Every authenticated answer carries
//! `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset`; past the limit, 429 (code 2020).

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::Token;
use super::errors::pd_error;
use super::state::{Shared, Window};

pub(super) async fn window(
    State(s): State<Arc<Shared>>,
    Extension(Token(token)): Extension<Token>,
    req: Request,
    next: Next,
) -> Response {
    let limit = s.config().rate_limit;
    let (remaining, reset) = {
        let mut w = s.world.lock().unwrap();
        let now = Instant::now();
        let fresh = Window { start: now, admitted: 0, arrived: 0 };
        let entry = w.windows.entry(token.clone()).or_insert(fresh);
        if now.duration_since(entry.start) >= limit.window {
            *entry = fresh;
        }
        entry.arrived += 1;
        let (arrived, admitted, start) = (entry.arrived, entry.admitted, entry.start);
        let peak = w.peaks.entry(token.clone()).or_default();
        *peak = (*peak).max(arrived);
        let reset = limit.window.saturating_sub(now.duration_since(start)).as_secs_f64().ceil() as u64;
        if admitted >= limit.requests {
            let mut r = rate_limited();
            set_rate_headers(&mut r, limit.requests, 0, reset.max(1));
            return r;
        }
        let entry = w.windows.get_mut(&token).expect("the token's window");
        entry.admitted += 1;
        (limit.requests - entry.admitted, reset.max(1))
    };
    let mut resp = next.run(req).await;
    set_rate_headers(&mut resp, limit.requests, remaining, reset);
    resp
}

pub(super) fn rate_limited() -> Response {
    pd_error(StatusCode::TOO_MANY_REQUESTS, 2020, "Rate Limit Exceeded", &[])
}

pub(super) fn set_rate_headers(r: &mut Response, limit: u32, remaining: u32, reset: u64) {
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
}
