//! The operator's HTTP endpoint (axum): `GET /metrics` (OpenMetrics text from
//! [`Metrics::render_prometheus`]) and `GET /healthz` (in a cluster, `503` while the NATS link
//! is down, so a load balancer sends new members to a relay that reaches the others).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Binds the listener (separately from serving, so bind errors reach the caller).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(health))
        .with_state(metrics);
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "metrics endpoint stopped");
    }
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render_prometheus(),
    )
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.cluster_link_up() {
        None => (StatusCode::OK, "ok\n"),
        Some(true) => (StatusCode::OK, "ok (cluster link up)\n"),
        Some(false) => (StatusCode::SERVICE_UNAVAILABLE, "cluster link down\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_and_health_and_says_when_the_cluster_is_down() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.joined();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics)));
        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let scrape = get(addr, "/metrics").await;
        assert!(scrape.contains("vcall_relay_joins_total 1\n"), "{scrape}");
        assert!(scrape.contains("openmetrics-text"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        metrics.cluster_enabled();
        let down = get(addr, "/healthz").await;
        assert!(down.starts_with("HTTP/1.1 503"), "{down}");
        assert!(down.ends_with("cluster link down\n"));
        metrics.set_cluster_connected(true);
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        server.abort();
    }
}
