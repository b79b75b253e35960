//! The one HTTP start-up both simulators share: bind, serve a router until dropped, and the request
//! pieces their handlers read the same way (the body read once, path parameters as sent).

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::Uri;
use axum::http::request::Parts;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Bodies above this are read as empty, as the simulators always did.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Binds `127.0.0.1:{port}` (0 = any free port).
pub(crate) async fn bind(port: u16, what: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("bind {what}: {e}"));
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Serves `router` on an already bound listener until the returned sender is dropped.
pub(crate) fn spawn_server(listener: TcpListener, router: Router) -> oneshot::Sender<()> {
    // Both APIs ignore slashes around the path (`/incidents/` is `/incidents`); axum's router does
    // not, so the path is trimmed before routing. The outer router keeps the path as sent in
    // `OriginalUri`, for the request logs.
    let trimmed = tower::ServiceBuilder::new().map_request(trim_slashes).service(router);
    let app = Router::new().fallback_service(trimmed);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

fn trim_slashes(mut req: Request) -> Request {
    let path = req.uri().path();
    let trimmed = format!("/{}", path.trim_matches('/'));
    if trimmed != path {
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// The request body, read once by the outermost layer (which logs it) and kept for the handlers.
#[derive(Clone, Default)]
pub(crate) struct RawBody(pub Bytes);

/// Reads the body into a [`RawBody`] extension (empty if unreadable or too large).
pub(crate) async fn read_body(req: Request) -> (Request, Bytes) {
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    parts.extensions.insert(RawBody(bytes.clone()));
    (Request::from_parts(parts, Body::empty()), bytes)
}

impl<S: Send + Sync> FromRequestParts<S> for RawBody {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<RawBody>().cloned().unwrap_or_default())
    }
}

/// Path parameters as sent, still percent-encoded: the simulators have always compared ids and
/// external-id values in their encoded form (axum's `Path` and `RawPathParams` decode them).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// The parameter `{name}` of the matched route ("" if the route has none).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let template = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
        let params = template
            .split('/')
            .zip(parts.uri.path().split('/'))
            .filter_map(|(t, v)| Some((t.strip_prefix('{')?.strip_suffix('}')?.to_string(), v.to_string())))
            .collect();
        Ok(Params(params))
    }
}
